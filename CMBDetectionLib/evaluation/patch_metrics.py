"""Patch-level metrics of a candidate classifier, as Afzal et al. 2022 report them (next to lesion-level ones).

Each stage-one candidate is one patch, labelled CMB when its centre lies within ``MATCH_DISTANCE_MM`` of a
ground-truth CMB; the classifier's score at ``threshold`` decides. Accuracy, sensitivity, specificity and the
false-positive rate count *patches*, so they depend on how many easy negatives stage one proposes and they ignore
the CMBs that stage one never proposed. Lesion sensitivity (``metrics.lesion_metrics``) is patch sensitivity
times the candidate sensitivity, and false positives per subject are the FPR times the negative candidates per
subject: a 1 % FPR at 150 candidates is still 1.5 false positives per subject.

>>> m = patch_metrics(np.array([1, 1, 0, 0, 0]), np.array([0.9, 0.2, 0.6, 0.1, 0.0]))
>>> (m["tp"], m["fn"], m["fp"], m["tn"]), round(m["accuracy"], 2), round(m["fpr"], 3)
((1, 1, 1, 2), 0.6, 0.333)
"""

from __future__ import annotations

import numpy as np

from CMBDetectionLib.evaluation.metrics import _ratio


def patch_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, sensitivity, specificity, false-positive rate and precision of ``scores >= threshold`` against
    ``labels > 0`` (one entry per patch), with the four counts; NaN where a ratio has no denominator."""
    truth, pred = np.asarray(labels) > 0, np.asarray(scores) >= threshold
    if truth.shape != pred.shape:
        raise ValueError(f"{truth.shape} labels and {pred.shape} scores differ; give one score per patch.")
    tp, tn = int(np.sum(truth & pred)), int(np.sum(~truth & ~pred))
    fp, fn = int(np.sum(~truth & pred)), int(np.sum(truth & ~pred))
    return {"accuracy": _ratio(tp + tn, truth.size), "sensitivity": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp), "fpr": _ratio(fp, fp + tn), "precision": _ratio(tp, tp + fp),
            "tp": tp, "tn": tn, "fp": fp, "fn": fn}


def format_patch_metrics(metrics: dict[str, float]) -> str:
    """One line of the paper's four figures and the counts.

    >>> format_patch_metrics(patch_metrics(np.array([1, 0]), np.array([0.9, 0.1])))
    'accuracy 1.000, sensitivity 1.000, specificity 1.000, FPR 0.000 (TP 1, FN 0, FP 0, TN 1)'
    """
    return (f"accuracy {metrics['accuracy']:.3f}, sensitivity {metrics['sensitivity']:.3f}, "
            f"specificity {metrics['specificity']:.3f}, FPR {metrics['fpr']:.3f} "
            f"(TP {metrics['tp']}, FN {metrics['fn']}, FP {metrics['fp']}, TN {metrics['tn']})")
