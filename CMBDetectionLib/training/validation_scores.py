"""Score a model on labelled subjects at several thresholds: one map per subject, one metrics row per threshold.

Both trainers choose their operating threshold this way: the UNet on its voxel probabilities
(:mod:`training.unet`), the 3D false-positive filter on its lesion scores (:mod:`training.lesion_filter`).

>>> rows = evaluate_maps(pairs, lambda image: predict_probability(image), (0.5, 0.9))   # doctest: +SKIP
>>> rows[0.9][0]["lesion_sensitivity"]                                                # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.evaluation.metrics import probability_metrics, subject_metrics
from CMBDetectionLib.training.data import TrainingPair, read_labelled


def evaluate_maps(
    pairs: Iterable[TrainingPair],
    map_of: Callable[[sitk.Image], np.ndarray],
    thresholds: Iterable[float],
    *,
    probability_scores: bool = False,
    lesion_mask: Callable[[sitk.Image, np.ndarray, float], np.ndarray] | None = None,
    progress: Callable[[], None] = lambda: None,
) -> dict[float, list[dict[str, Any]]]:
    """Voxel + lesion metrics of ``map >= threshold`` against each pair's mask, per threshold, one row per
    subject; the map (``map_of(image)``, on the image's grid) is computed once per subject. With
    ``probability_scores`` the rows also hold the threshold-free AUC-ROC and cross-entropy of the map.
    ``lesion_mask(image, map, threshold)``, when given, replaces the plain threshold (the pipeline's lesion stage)."""
    thresholds = tuple(thresholds)
    rows: dict[float, list[dict[str, Any]]] = {t: [] for t in thresholds}
    for pair in pairs:
        image, truth = read_labelled(pair)
        score_map = map_of(image)
        scores = probability_metrics(truth, score_map) if probability_scores else {}
        for threshold in thresholds:
            mask = score_map >= threshold if lesion_mask is None else lesion_mask(image, score_map, threshold)
            metrics = subject_metrics(truth, mask, image.GetSpacing()[::-1])
            rows[threshold].append({"subject": pair.name, **metrics, **scores})
        progress()
    return rows
