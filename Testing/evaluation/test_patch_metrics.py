"""Patch-level metrics (Afzal et al. 2022): the paper's definitions on counted patches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from CMBDetectionLib.evaluation.patch_metrics import format_patch_metrics, patch_metrics


def test_patch_metrics_follow_the_paper_definitions():
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.1, 0.3, 0.0])
    m = patch_metrics(labels, scores)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 4)
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(0.8)
    assert m["accuracy"] == pytest.approx(6 / 8) and m["fpr"] == pytest.approx(0.2)
    assert m["fpr"] == pytest.approx(1 - m["specificity"])
    assert patch_metrics(labels, scores, threshold=0.75)["fp"] == 0


def test_undefined_ratios_are_nan_and_mismatched_inputs_are_refused():
    m = patch_metrics(np.zeros(3), np.array([0.1, 0.6, 0.2]))
    assert math.isnan(m["sensitivity"]) and m["fpr"] == pytest.approx(1 / 3)
    assert "FPR 0.333" in format_patch_metrics(m)
    with pytest.raises(ValueError, match="one score per patch"):
        patch_metrics(np.zeros(3), np.zeros(4))
