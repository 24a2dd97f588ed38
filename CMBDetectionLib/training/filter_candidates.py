"""Candidates of one labelled subject, as each method finds them, for fitting the 3D false-positive filter.

The filter (:mod:`lesions.filter`) scores candidates on the same 3D features (:mod:`lesions.features`) for both
methods; what differs is where the candidates come from:

- UNet: every peak of its probability map (:func:`lesions.filter.candidate_table`), on the volume's grid;
- two-stage: stage one's k-means regions with the ResNet50's patch probability as their score, in the axial
  orientation the method works in (the features then see the slice axis first, as for the UNet).

Each source also gives the filtered map ``detect()`` thresholds, so the operating threshold is chosen on what
users get.

>>> source = candidate_source("two-stage", "models/resnet50", "auto")   # doctest: +SKIP
>>> truth, labels, features = source.table(pair)                          # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.lesions.filter import LesionFilter, candidate_table, lesion_probability
from CMBDetectionLib.lesions.peak_candidates import PEAK_FLOOR
from CMBDetectionLib.training.data import TrainingPair, read_labelled


class CandidateSource(Protocol):
    #: the lowest score (probability) a candidate can have, None when every candidate is scored whatever its score
    score_floor: float | None

    def table(self, pair: TrainingPair) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ground truth, candidate labels 1..n, feature rows), the arrays on one grid."""
        ...

    def lesion_map(self, image: sitk.Image, lesion_filter: LesionFilter) -> np.ndarray:
        """The filter's lesion score map of ``image`` (on its grid), as ``detect()`` thresholds it."""
        ...


@dataclass(frozen=True)
class UNetCandidates:
    backend: Any
    score_floor: float | None = PEAK_FLOOR

    def _probability(self, image: sitk.Image) -> np.ndarray:
        from CMBDetectionLib.probability.unet.inference import predict_probability

        return predict_probability(image, backend=self.backend)

    def table(self, pair: TrainingPair) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image, truth = read_labelled(pair)
        return truth, *candidate_table(image, self._probability(image))

    def lesion_map(self, image: sitk.Image, lesion_filter: LesionFilter) -> np.ndarray:
        return lesion_probability(image, self._probability(image), lesion_filter)


@dataclass(frozen=True)
class TwoStageCandidates:
    runner: Any
    card: dict[str, Any]
    folder: Path
    score_floor: float | None = None

    def table(self, pair: TrainingPair) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from CMBDetectionLib.probability.two_stage.method import (
            StageSettings,
            candidate_table,
            classifier_map,
            classify_patches,
            stage_one,
        )
        from CMBDetectionLib.training.two_stage import load_axial

        axial, truth = load_axial(pair)
        first = stage_one(axial, StageSettings.from_card(self.card))
        probability = classifier_map(first, classify_patches(self.runner, first.patches))
        return truth > 0, first.labels, candidate_table(axial, first, probability)

    def lesion_map(self, image: sitk.Image, lesion_filter: LesionFilter) -> np.ndarray:
        from CMBDetectionLib.probability.two_stage.method import predict_probability

        return predict_probability(image, backend=self.runner, model_dir=self.folder, lesion_filter=lesion_filter)


def candidate_source(method: str, folder: str | os.PathLike, backend: str = "auto") -> CandidateSource:
    """The candidate source of ``method`` ('unet' or 'two-stage') with the model in ``folder``."""
    if method == "two-stage":
        from CMBDetectionLib.probability.two_stage.method import load_model

        runner, card = load_model(folder, backend)
        return TwoStageCandidates(runner, card, Path(folder))
    from CMBDetectionLib.probability.backends.choice import make_backend

    return UNetCandidates(make_backend(backend, folder))
