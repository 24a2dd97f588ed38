"""Voxel metrics of the CMB segmentation papers and VALDO 2021 Task 2 lesion-level metrics.

Voxel level (Ali et al. 2023): Dice, Jaccard, SVD (= 1 - Dice, the paper's eq. 17), accuracy, sensitivity,
specificity, precision, false-positive rate and, given a probability map, AUC-ROC and binary cross-entropy.

Lesion level (VALDO 2021 Task 2, checked against the challenge's code, WhereIsValdo/valdo-eval-2021,
``evaluation_comparison/pairwise_measures.py``). Where the two differ we follow VALDO, except for the matching:

- **Lesions** are 6-connected components, and centres of mass are compared in mm. We follow the paper here:
  the official script's defaults use 26-connectivity and measure the distance in voxels.
- **Matching**: a predicted lesion matches a ground-truth lesion when their centres lie less than 5 mm apart.
  Matching is one-to-one, closest pairs first over the whole subject (:func:`match_lesions`). This is where
  we differ from the official code. There each prediction picks its nearest reference, and the closest
  prediction per reference wins. So two predictions at the same distance both count as true positives (a
  double count), and a prediction whose nearest reference was taken stays a false positive, even when
  another reference within 5 mm is free.
- **F1** = 2TP / (2TP + FP + FN). It is undefined (NaN) for a subject without CMBs, so that subject is left
  out of F1 means and medians (:func:`summarise` skips NaN). It still counts through ``fp`` and
  ``abs_count_difference``. When CMBs exist but nothing is predicted, F1 is 0.
- **Mean Dice per true-positive lesion** (``matched_dice``, VALDO's ``mean_diceover``): for each matched
  reference lesion, the Dice between it and the union of every prediction assigned to it. That is its match
  plus every unmatched prediction whose nearest reference within 5 mm it is (:func:`assigned_predictions`),
  so a lesion split into pieces is scored whole. Averaged over matched references. It is 0 when the subject
  has CMBs but none is matched, and NaN without CMBs.

Also reported: sensitivity, precision, false positives and the absolute count difference.

>>> gt = np.zeros((3, 4, 4), np.uint8); gt[1, 1:3, 1:3] = 1
>>> round(voxel_metrics(gt, gt)["dice"], 3)
1.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial.distance import cdist

from CMBDetectionLib.lesions.extraction import component_centres_mm, label_components

MATCH_DISTANCE_MM = 5.0
_EPS = 1e-7


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


def voxel_metrics(gt: np.ndarray, pred: np.ndarray, probability: np.ndarray | None = None) -> dict[str, float]:
    """Voxel-wise metrics of binary ``pred`` against binary ``gt`` (same shape); AUC/BCE need ``probability``."""
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape.")
    g, p = gt > 0, pred > 0
    tp = int(np.count_nonzero(g & p))
    fp = int(np.count_nonzero(~g & p))
    fn = int(np.count_nonzero(g & ~p))
    tn = g.size - tp - fp - fn
    dice = _ratio(2 * tp, 2 * tp + fp + fn) if (tp + fp + fn) else 1.0
    out = {
        "dice": dice,
        "jaccard": _ratio(tp, tp + fp + fn) if (tp + fp + fn) else 1.0,
        "svd": 1.0 - dice,
        "accuracy": _ratio(tp + tn, g.size),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "fpr": _ratio(fp, fp + tn),
        "auc_roc": math.nan,
        "bce": math.nan,
    }
    if probability is not None:
        out.update(probability_metrics(g, probability))
    return out


def probability_metrics(gt: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """AUC-ROC (NaN unless both classes occur) and mean binary cross-entropy of ``probability``."""
    from sklearn.metrics import roc_auc_score

    y = (gt > 0).ravel()
    q = np.clip(probability.astype(np.float64).ravel(), _EPS, 1.0 - _EPS)
    bce = float(-np.mean(np.where(y, np.log(q), np.log1p(-q))))
    auc = float(roc_auc_score(y, q)) if 0 < y.sum() < y.size else math.nan
    return {"auc_roc": auc, "bce": bce}


def match_lesions(gt_centres: np.ndarray, pred_centres: np.ndarray, max_mm: float = MATCH_DISTANCE_MM) -> list[tuple[int, int]]:
    """One-to-one (gt index, pred index) pairs closer than ``max_mm``, closest first (greedy)."""
    if len(gt_centres) == 0 or len(pred_centres) == 0:
        return []
    distance = cdist(gt_centres, pred_centres)
    candidates = sorted(zip(*np.nonzero(distance < max_mm)), key=lambda gp: distance[gp])
    used_gt, used_pred, pairs = set(), set(), []
    for g, p in candidates:
        if g not in used_gt and p not in used_pred:
            used_gt.add(g)
            used_pred.add(p)
            pairs.append((int(g), int(p)))
    return pairs


def assigned_predictions(
    gt_centres: np.ndarray, pred_centres: np.ndarray, pairs: list[tuple[int, int]], max_mm: float = MATCH_DISTANCE_MM
) -> dict[int, list[int]]:
    """Matched gt index -> the predictions assigned to it: its match, plus every unmatched prediction whose
    nearest gt lesion (closer than ``max_mm``) it is, as VALDO assigns predictions.

    >>> gt = np.array([[0.0, 0, 0], [0, 0, 20]]); pred = np.array([[0.0, 0, 1], [0, 0, -2], [0, 0, 9]])
    >>> assigned_predictions(gt, pred, match_lesions(gt, pred))
    {0: [0, 1]}
    """
    assigned = {g: [p] for g, p in pairs}
    matched = {p for _, p in pairs}
    if not pairs:
        return assigned
    distance = cdist(gt_centres, pred_centres)
    for p in sorted(set(range(len(pred_centres))) - matched):
        nearest = int(np.argmin(distance[:, p]))
        if distance[nearest, p] < max_mm and nearest in assigned:
            assigned[nearest].append(p)
    return assigned


def _group_dice(gt_labels: np.ndarray, g: int, gt_boxes: list, pred_labels: np.ndarray, preds: list[int], pred_boxes: list) -> float:
    """Dice of gt component ``g + 1`` and the union of predicted components ``p + 1``, inside their joint box."""
    boxes = [gt_boxes[g]] + [pred_boxes[p] for p in preds]
    box = tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(gt_labels.ndim))
    predicted = np.isin(pred_labels[box], [p + 1 for p in preds])
    return voxel_metrics(gt_labels[box] == g + 1, predicted)["dice"]


def lesion_metrics(gt: np.ndarray, pred: np.ndarray, spacing_kji: Iterable[float], max_mm: float = MATCH_DISTANCE_MM) -> dict[str, float]:
    """VALDO Task 2 lesion metrics for one subject (see the module docstring); ``spacing_kji`` in mm along the
    array axes."""
    spacing = np.asarray(tuple(spacing_kji), dtype=float)
    gt_labels, n_gt = label_components(gt)
    pred_labels, n_pred = label_components(pred)
    gt_centres = component_centres_mm(gt_labels, n_gt, spacing)
    pred_centres = component_centres_mm(pred_labels, n_pred, spacing)
    pairs = match_lesions(gt_centres, pred_centres, max_mm)
    tp = len(pairs)
    sensitivity, precision = _ratio(tp, n_gt), _ratio(tp, n_pred)
    gt_boxes, pred_boxes = ndimage.find_objects(gt_labels), ndimage.find_objects(pred_labels)
    dices = [_group_dice(gt_labels, g, gt_boxes, pred_labels, preds, pred_boxes)
             for g, preds in assigned_predictions(gt_centres, pred_centres, pairs, max_mm).items()]
    return {
        "n_gt": n_gt,
        "n_pred": n_pred,
        "tp": tp,
        "fp": n_pred - tp,
        "fn": n_gt - tp,
        "lesion_sensitivity": sensitivity,
        "lesion_precision": precision,
        "lesion_f1": _ratio(2 * tp, n_gt + n_pred) if n_gt else math.nan,
        "abs_count_difference": abs(n_pred - n_gt),
        "matched_dice": float(np.mean(dices)) if dices else (0.0 if n_gt else math.nan),
    }


def subject_metrics(
    gt: np.ndarray, pred: np.ndarray, spacing_kji: Iterable[float], probability: np.ndarray | None = None
) -> dict[str, float]:
    """Voxel and lesion metrics of one subject in one flat dict."""
    return {**voxel_metrics(gt, pred, probability), **lesion_metrics(gt, pred, spacing_kji)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and median of every numeric column over subjects, ignoring NaN (``{"mean": {...}, "median": {...}}``)."""
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)] if rows else []
    summary: dict[str, dict[str, float]] = {"mean": {}, "median": {}}
    for key in keys:
        values = np.array([row[key] for row in rows], dtype=float)
        finite = values[np.isfinite(values)]
        summary["mean"][key] = float(finite.mean()) if finite.size else math.nan
        summary["median"][key] = float(np.median(finite)) if finite.size else math.nan
    return summary


#: the summary figures a model card keeps
CARD_METRICS = (
    "dice", "sensitivity", "precision", "auc_roc", "lesion_sensitivity", "lesion_precision", "lesion_f1",
    "fp", "abs_count_difference", "matched_dice",
)


def metric_block(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Subject count and the mean and median of :data:`CARD_METRICS`, rounded, NaN as None (for JSON)."""
    summary = summarise(rows)
    clean = lambda v: None if isinstance(v, float) and math.isnan(v) else round(v, 4)  # noqa: E731
    return {
        "n_subjects": len(rows),
        "mean": {k: clean(summary["mean"][k]) for k in CARD_METRICS if k in summary["mean"]},
        "median": {k: clean(summary["median"][k]) for k in CARD_METRICS if k in summary["median"]},
    }


#: the field's operating point (a reader reviews every detection): false positives per subject allowed on validation
MAX_FP_PER_SUBJECT = 1.0
#: the project's lesion sensitivity target: beyond it, thresholds compete on Dice, not on more sensitivity
TARGET_SENSITIVITY = 0.90
THRESHOLD_RULE = (f"among thresholds with at most {MAX_FP_PER_SUBJECT:g} false positive per subject and lesion "
                  f"sensitivity at least {TARGET_SENSITIVITY:g} (means on validation), the one with the best mean Dice; "
                  "when none reaches that sensitivity, the most sensitive within the false-positive budget; the best "
                  "mean lesion F1 when none is within it")


def choose_threshold(
    rows: dict[float, list[dict[str, Any]]], max_fp: float = MAX_FP_PER_SUBJECT,
    min_sensitivity: float = TARGET_SENSITIVITY,
) -> float:
    """The operating threshold by :data:`THRESHOLD_RULE` from per-subject rows of each candidate threshold
    (the higher threshold on ties).

    >>> rows = {0.3: [{"lesion_sensitivity": 0.9, "fp": 3, "lesion_f1": 0.5, "dice": 0.5}],
    ...         0.5: [{"lesion_sensitivity": 0.8, "fp": 1, "lesion_f1": 0.7, "dice": 0.7}],
    ...         0.7: [{"lesion_sensitivity": 0.6, "fp": 0, "lesion_f1": 0.75, "dice": 0.8}]}
    >>> choose_threshold(rows), choose_threshold(rows, max_fp=0.5), choose_threshold(rows, min_sensitivity=0.6)
    (0.5, 0.7, 0.7)
    """
    means = {t: summarise(r)["mean"] for t, r in rows.items()}
    score = lambda t, key: -1.0 if math.isnan(means[t].get(key, math.nan)) else means[t][key]  # noqa: E731
    within = [t for t in means if means[t].get("fp", math.inf) <= max_fp]
    on_target = [t for t in within if score(t, "lesion_sensitivity") >= min_sensitivity]
    if on_target:  # more sensitivity than the target costs outline quality and reader time: take the best Dice
        return max(on_target, key=lambda t: (score(t, "dice"), t))
    if within:
        return max(within, key=lambda t: (score(t, "lesion_sensitivity"), t))
    return max(means, key=lambda t: (score(t, "lesion_f1"), t))
