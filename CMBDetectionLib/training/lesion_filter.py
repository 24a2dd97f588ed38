"""Train a method's 3D false-positive filter (:mod:`lesion_filter`) and record it in that model's card.

The filter scores the UNet's candidates (its probability peaks) or the two-stage method's (stage one's regions
with the ResNet50's probability): :mod:`filter_candidates`. It must learn from the model's behaviour on subjects
it never trained on (on its own training data a network is overconfident), so give it fresh labelled volumes.
They are split by subject (80:20, seeded): the boosted trees are fitted on the candidates of the first part
(each subject also as a less confident network would score it: :mod:`confidence_shift`);
the operating threshold is chosen from :data:`FILTER_THRESHOLDS` on the second by :data:`metrics.THRESHOLD_RULE`
(the best Dice among thresholds reaching sensitivity 0.90 within 1 false positive per subject), scored with the
VALDO metrics on whole volumes as ``detect()`` reports them (outlines redrawn, vein segments dropped:
:func:`pipeline.outlined_lesions`).
An optional separate held-out folder is scored at that threshold. ``lesion_filter.json`` goes into the
model folder, and its checksum, data, split and metrics into the card.

>>> card = train_lesion_filter("fresh_phantoms/", "models/unet", eval_dir="heldout/")   # doctest: +SKIP
>>> card = train_lesion_filter("fresh_phantoms/", "models/resnet50", method="two-stage")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy.special import logit

from CMBDetectionLib.evaluation.metrics import THRESHOLD_RULE, choose_threshold, metric_block
from CMBDetectionLib.lesions.features import FEATURE_NAMES
from CMBDetectionLib.lesions.filter import (
    BOOSTING,
    FILTER_FILE,
    LesionFilter,
    fit_lesion_filter,
)
from CMBDetectionLib.model_store import load_card, model_dir, write_card
from CMBDetectionLib.pipeline import outlined_lesions
from CMBDetectionLib.probability.registry import method_entry
from CMBDetectionLib.training.confidence_shift import COPIES_BY_METHOD, SCORE_FEATURES, SHIFT, confidence_shifted
from CMBDetectionLib.training.data import TrainingPair, find_pairs, split_subjects
from CMBDetectionLib.training.filter_candidates import CandidateSource, candidate_source
from CMBDetectionLib.training.validation_scores import evaluate_maps

#: what the filter scores, per method (recorded in the card)
CANDIDATES = {"unet": "UNet candidates",
              "two-stage": "stage-one candidates scored by the ResNet50 (its probability as peak and mean)"}
#: operating thresholds on the lesion score scored on the validation subjects
FILTER_THRESHOLDS = (0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def candidate_targets(labels: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1 for each candidate (labels 1..n) overlapping a ground-truth CMB, else 0.

    >>> labels = np.array([[0, 1, 1, 0, 2]]); truth = np.array([[0, 0, 1, 0, 0]], bool)
    >>> candidate_targets(labels, truth).tolist()
    [1, 0]
    """
    targets = np.zeros(int(labels.max()), np.int64)
    hit = np.unique(labels[truth])
    targets[hit[hit > 0] - 1] = 1
    return targets


def score_subjects(
    pairs: Iterable[TrainingPair], lesion_filter: LesionFilter, source: CandidateSource, thresholds: Iterable[float],
    progress: Callable[[], None] = lambda: None,
) -> dict[float, list[dict[str, Any]]]:
    """Voxel + lesion metrics of method + filter on whole volumes, one row per subject for each threshold, with
    the lesions ``detect()`` reports (outlines redrawn, vein segments dropped)."""

    def lesion_map(image: sitk.Image) -> np.ndarray:
        return source.lesion_map(image, lesion_filter)

    def lesion_mask(image: sitk.Image, score_map: np.ndarray, threshold: float) -> np.ndarray:
        return outlined_lesions(image, score_map, threshold)[0] > 0

    return evaluate_maps(pairs, lesion_map, thresholds, lesion_mask=lesion_mask, progress=progress)


def fit_on_subjects(pairs: list[TrainingPair], source: CandidateSource, progress: Callable[[], None] = lambda: None,
                    *, shift_copies: int, seed: int = 0) -> tuple[LesionFilter, dict[str, int]]:
    """The filter fitted on every candidate of ``pairs`` and on ``shift_copies`` confidence-shifted copies of
    each subject (:mod:`confidence_shift`; 0: none); threshold still the default. Also the candidate counts."""
    tables = []
    for pair in pairs:
        truth, labels, table = source.table(pair)
        tables.append((table, candidate_targets(labels, truth)))
        progress()
    all_targets = np.concatenate([targets for _, targets in tables])
    counts = {"n_candidates": int(len(all_targets)), "n_true_candidates": int(all_targets.sum())}
    floor = None if source.score_floor is None else float(logit(source.score_floor))
    features, targets = confidence_shifted(tables, copies=shift_copies, rng=np.random.default_rng(seed),
                                           floor_logit=floor)
    return fit_lesion_filter(features, targets), counts


def validate_and_save(
    folder: Path, fitted: LesionFilter, validation: list[TrainingPair], held_out: list[TrainingPair],
    source: CandidateSource,
    progress: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Choose the operating threshold on ``validation``, save the filter with it into ``folder``, score
    ``held_out`` at it; returns the card's metric entries."""
    by_threshold = score_subjects(validation, fitted, source, FILTER_THRESHOLDS, progress)
    threshold = choose_threshold(by_threshold)
    lesion_filter = dataclasses.replace(fitted, threshold=threshold)
    lesion_filter.save(folder)
    metrics = {
        "threshold": threshold,
        "threshold_selection": THRESHOLD_RULE,
        "validation": metric_block(by_threshold[threshold]),
        "validation_by_threshold": {str(t): metric_block(r)["mean"] for t, r in by_threshold.items()},
    }
    if held_out:
        rows = score_subjects(held_out, lesion_filter, source, (threshold,), progress)[threshold]
        metrics["held_out"] = metric_block(rows)
    return metrics


def record_in_card(folder: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Write the filter's ``record`` and its file's checksum into the model's card; returns the new card."""
    card = load_card(folder)
    files = [name for name in card.get("files", {}) if name != FILTER_FILE] + [FILTER_FILE]
    write_card(folder, {k: v for k, v in card.items() if k != "files"} | {"lesion_filter": record}, files)
    return load_card(folder)


def train_lesion_filter(
    data_dir: str | os.PathLike,
    model_folder: str | os.PathLike | None = None,
    *,
    method: str = "unet",
    val_fraction: float = 0.2,
    seed: int = 0,
    eval_dir: str | os.PathLike | None = None,
    backend: str = "auto",
    shift_copies: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Fit, choose the threshold, save ``lesion_filter.json`` into the folder of ``method``'s model ('unet' or
    'two-stage') and return the updated card. ``shift_copies``: confidence-shifted copies of each training
    subject (:mod:`confidence_shift`; 0 fits on the candidates as they are; None: the method's default)."""
    folder = model_dir(method_entry(method).model_folder, model_folder)
    load_card(folder)  # fails early, and clearly, without a model
    pairs = find_pairs(data_dir)
    train, validation = split_subjects(pairs, val_fraction, seed)
    if len(train) < 2 or not validation:
        raise ValueError(f"{data_dir}: {len(pairs)} subjects; the filter needs at least 3 (2 to fit, 1 to validate).")
    held_out = find_pairs(eval_dir) if eval_dir else []
    source = candidate_source(method, folder, backend)
    total, done = len(train) + len(validation) + len(held_out), [0]

    def advance() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0] / total)

    if shift_copies is None:
        shift_copies = COPIES_BY_METHOD[method]
    fitted, counts = fit_on_subjects(train, source, advance, shift_copies=shift_copies, seed=seed)
    metrics = validate_and_save(folder, fitted, validation, held_out, source, advance)
    splits = fitted.trees.split_counts(len(FEATURE_NAMES))
    if held_out:
        metrics["held_out"] = {"source": str(eval_dir), **metrics["held_out"]}
    return record_in_card(folder, {
        "file": FILTER_FILE,
        "method": f"3D false-positive reduction: gradient-boosted trees on lesion_features of {CANDIDATES[method]}",
        "boosting": BOOSTING,
        "confidence_shift": {"features": list(SCORE_FEATURES), "copies_per_subject": shift_copies,
                             "logit_shift": [SHIFT["low"], SHIFT["high"]], "seed": seed,
                             "candidate_floor": source.score_floor},
        "splits_per_feature": dict(zip(FEATURE_NAMES, splits.tolist())),
        "training_data": {"source": str(data_dir), "n_fit_subjects": len(train), "n_validation_subjects": len(validation),
                          **counts, "split": f"seeded by subject (seed {seed}, validation fraction {val_fraction})",
                          "validation_subjects": [p.name for p in validation]},
        **metrics,
    })
