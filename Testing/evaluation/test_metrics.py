"""Voxel and VALDO lesion metrics against values computed by hand on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from CMBDetectionLib.evaluation.metrics import lesion_metrics, match_lesions, summarise, voxel_metrics


def test_voxel_metrics_by_hand():
    gt = np.zeros((1, 4, 5), np.uint8)
    gt[0, 0, :4] = 1  # 4 positives
    pred = np.zeros_like(gt)
    pred[0, 0, 2:5] = 1  # tp 2 (cols 2,3), fp 1 (col 4), fn 2, tn 20 - 5 = 15
    m = voxel_metrics(gt, pred)
    assert m["dice"] == pytest.approx(4 / 7)
    assert m["jaccard"] == pytest.approx(2 / 5)
    assert m["svd"] == pytest.approx(1 - 4 / 7)
    assert m["accuracy"] == pytest.approx(17 / 20)
    assert m["sensitivity"] == pytest.approx(2 / 4)
    assert m["specificity"] == pytest.approx(15 / 16)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["fpr"] == pytest.approx(1 / 16)
    assert math.isnan(m["auc_roc"])


def test_probability_metrics_by_hand():
    gt = np.array([0, 0, 1, 1])
    prob = np.array([0.1, 0.6, 0.4, 0.9])
    m = voxel_metrics(gt, prob > 0.5, prob)
    assert m["auc_roc"] == pytest.approx(0.75)  # 3 of the 4 (positive, negative) pairs ranked right
    expected_bce = -np.mean(np.log([0.9, 0.4, 0.4, 0.9]))
    assert m["bce"] == pytest.approx(expected_bce)


def test_matching_is_one_to_one_closest_first_under_5mm():
    gt = np.array([[0.0, 0, 0], [0, 0, 6]])
    pred = np.array([[0.0, 0, 3], [0, 0, 1], [0, 0, 20]])
    # gt0-pred1 (1 mm) first; then gt1-pred0 (3 mm); pred2 unmatched.
    assert sorted(match_lesions(gt, pred)) == [(0, 1), (1, 0)]
    assert match_lesions(gt[:1], np.array([[0.0, 0, 5.0]])) == []  # exactly 5 mm is not < 5 mm


def test_lesion_metrics_use_spacing_in_mm():
    gt = np.zeros((10, 20, 20), np.uint8)
    gt[2, 5, 5] = 1
    gt[7, 15, 15] = 1
    pred = np.zeros_like(gt)
    pred[3, 5, 5] = 1  # one slice away from the first GT lesion
    pred[7, 2, 15] = 1  # far from everything: a false positive
    near = lesion_metrics(gt, pred, (3.0, 1.0, 1.0))  # 3 mm slices: match
    assert (near["tp"], near["fp"], near["fn"]) == (1, 1, 1)
    assert near["lesion_sensitivity"] == 0.5 and near["lesion_precision"] == 0.5
    assert near["lesion_f1"] == pytest.approx(0.5)
    assert near["abs_count_difference"] == 0
    assert near["matched_dice"] == 0.0  # matched by distance, no voxel overlap
    far = lesion_metrics(gt, pred, (6.0, 1.0, 1.0))  # 6 mm slices: too far
    assert far["tp"] == 0 and far["fp"] == 2


def test_subject_without_cmbs_counts_false_positives_and_has_no_f1_or_dice():
    gt = np.zeros((4, 8, 8), np.uint8)
    pred = np.zeros_like(gt)
    pred[1, 1, 1] = pred[3, 6, 6] = 1
    m = lesion_metrics(gt, pred, (1, 1, 1))
    assert m["fp"] == 2 and m["abs_count_difference"] == 2 and math.isnan(m["lesion_sensitivity"])
    assert math.isnan(m["lesion_f1"]) and math.isnan(m["matched_dice"])  # VALDO: undefined without CMBs
    assert math.isnan(lesion_metrics(gt, np.zeros_like(gt), (1, 1, 1))["lesion_f1"])


def test_f1_means_leave_out_subjects_without_cmbs():
    gt, pred = np.zeros((4, 12, 12), np.uint8), np.zeros((4, 12, 12), np.uint8)
    gt[1, 2, 2] = pred[1, 2, 2] = 1  # one CMB, found: F1 1
    empty = np.zeros_like(gt)
    rows = [lesion_metrics(gt, pred, (1, 1, 1)), lesion_metrics(empty, pred, (1, 1, 1))]
    summary = summarise(rows)
    assert summary["mean"]["lesion_f1"] == 1.0 and summary["mean"]["fp"] == 0.5


def test_cmbs_without_any_match_score_f1_and_dice_zero():
    gt = np.zeros((4, 20, 20), np.uint8)
    gt[1, 2, 2] = 1
    nothing = lesion_metrics(gt, np.zeros_like(gt), (1, 1, 1))
    assert nothing["lesion_f1"] == 0.0 and nothing["matched_dice"] == 0.0
    far = np.zeros_like(gt)
    far[1, 15, 15] = 1
    assert lesion_metrics(gt, far, (1, 1, 1))["matched_dice"] == 0.0


def test_dice_counts_every_prediction_assigned_to_a_lesion():
    gt = np.zeros((3, 20, 20), np.uint8)
    gt[1, 5:9, 5:9] = 1  # one 4x4 lesion, predicted as two separate halves
    pred = np.zeros_like(gt)
    pred[1, 5:9, 5:7] = pred[1, 5:9, 8:9] = 1  # left half and right quarter: 12 of its 16 voxels
    m = lesion_metrics(gt, pred, (1, 1, 1))
    assert (m["tp"], m["fp"]) == (1, 1)  # the second piece is still a false positive in the counts
    assert m["matched_dice"] == pytest.approx(2 * 12 / (16 + 12))  # but the Dice scores both pieces together


def test_equidistant_predictions_are_not_double_counted():
    gt = np.zeros((3, 20, 20), np.uint8)
    gt[1, 10, 10] = 1
    pred = np.zeros_like(gt)
    pred[1, 10, 8] = pred[1, 10, 12] = 1  # both 2 mm away: the official code makes both true positives
    m = lesion_metrics(gt, pred, (1, 1, 1))
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 0)


def test_a_prediction_takes_the_free_lesion_when_its_nearest_is_taken():
    gt = np.array([[0.0, 0, 0], [0, 0, 4]])
    pred = np.array([[0.0, 0, 0.5], [0, 0, 1.5]])  # both nearest to gt 0; pred 1 is 2.5 mm from gt 1
    assert sorted(match_lesions(gt, pred)) == [(0, 0), (1, 1)]  # the official code leaves pred 1 a false positive


def test_summary_mean_and_median_ignore_nan():
    rows = [{"subject": "a", "x": 1.0}, {"subject": "b", "x": 2.0}, {"subject": "c", "x": float("nan")}, {"subject": "d", "x": 6.0}]
    summary = summarise(rows)
    assert summary["mean"]["x"] == pytest.approx(3.0) and summary["median"]["x"] == pytest.approx(2.0)
