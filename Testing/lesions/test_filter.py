"""The UNet's 3D false-positive filter: candidates, features, the classifier file, its training and its use."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from repo_paths import REPO_ROOT
from synthetic_cmb import synthetic_subject, write_dataset

from CMBDetectionLib.cli.train import main as train_main
from CMBDetectionLib.errors import ModelError
from CMBDetectionLib.lesions.boosted_trees import BoostedTrees, from_sklearn
from CMBDetectionLib.lesions.features import FEATURE_NAMES, candidate_features
from CMBDetectionLib.lesions.filter import (
    FILTER_FILE,
    LesionFilter,
    fit_lesion_filter,
    has_lesion_filter,
    lesion_probability,
    load_lesion_filter,
)
from CMBDetectionLib.lesions.peak_candidates import FULL_MEMBERSHIP, find_peak_candidates
from CMBDetectionLib.model_store import load_card, sha256_of, write_card
from CMBDetectionLib.pipeline import detect
from CMBDetectionLib.training.lesion_filter import FILTER_THRESHOLDS, candidate_targets

SHIPPED = REPO_ROOT / "models" / "unet"
SPACING_KJI = (2.0, 0.9, 0.9)


def _column(table: np.ndarray, name: str) -> np.ndarray:
    return table[:, FEATURE_NAMES.index(name)]


def test_candidates_keep_faint_peaks_apart_from_confident_ones():
    p = np.zeros((7, 40, 40), np.float32)
    p[3, 5:10, 5:10] = 0.6  # a confident response: its 0.5 outline
    p[3, 7, 7] = 0.95
    p[3, 30, 30], p[3, 30, 31] = 0.03, 0.02  # a faint dot: a candidate of its own, down to half its peak
    p[3, 20, 20] = 0.003  # below the floor: no candidate
    labels, peaks = find_peak_candidates(p)
    assert labels.max() == 2 and len(peaks) == 2
    big, faint = labels[3, 7, 7], labels[3, 30, 30]
    assert {int(big), int(faint)} == {1, 2}
    assert np.array_equal(labels == big, p >= FULL_MEMBERSHIP)
    assert (labels == faint).sum() == 2 and labels[3, 20, 20] == 0
    assert [tuple(peaks[big - 1]), tuple(peaks[faint - 1])] == [(3, 7, 7), (3, 30, 30)]


def test_no_candidates_below_the_floor():
    labels, peaks = find_peak_candidates(np.full((4, 16, 16), 0.001, np.float32))
    assert labels.shape == (4, 16, 16) and not labels.any() and peaks.shape == (0, 3)


def test_candidates_split_a_microbleed_from_the_vein_response_beside_it():
    p = np.zeros((5, 30, 30), np.float32)
    p[2, 10, 5:25] = 0.2  # a vein's trail
    p[2, 10, 12] = 0.9  # a microbleed on it
    p[2, 10, 20] = 0.3  # and a second, weaker peak further along the vein
    labels, _ = find_peak_candidates(p)
    assert labels.max() == 2
    assert labels[2, 10, 12] != labels[2, 10, 20]
    assert (labels == labels[2, 10, 12]).sum() == 1  # only the voxel at or above 0.5 / half its peak


def _sphere_and_tube() -> tuple[np.ndarray, np.ndarray]:
    """A dark sphere (radius 2 mm) and a dark vein along j, in tissue of intensity 100, plus both candidates."""
    k, j, i = np.indices((20, 60, 60)) * np.array(SPACING_KJI)[:, None, None, None]
    image = np.full(k.shape, 100.0, np.float32)
    image[(k - 18) ** 2 + (j - 18) ** 2 + (i - 18) ** 2 <= 4] = 15
    image[((k - 18) ** 2 + (i - 36) ** 2 <= 1.2) & (j > 2)] = 20
    labels = np.zeros(image.shape, np.int32)
    labels[9, 20, 20], labels[9, 30, 40] = 1, 2
    return image, labels


def test_features_tell_a_sphere_from_a_vein():
    image, labels = _sphere_and_tube()
    table = candidate_features(image, np.where(labels > 0, 0.7, 0).astype(np.float32), labels, SPACING_KJI)
    assert table.shape == (2, len(FEATURE_NAMES)) and np.isfinite(table).all()
    sphere, vein = table
    assert _column(table, "contrast")[0] == pytest.approx(0.85, abs=0.01)
    assert _column(table, "dark_leaves_crop").tolist() == [0.0, 1.0]
    assert _column(table, "dark_reach_mm")[1] > 9 > 3 > _column(table, "dark_reach_mm")[0]
    assert _column(table, "dark_elongation")[1] > _column(table, "dark_elongation")[0] + 1
    assert _column(table, "peak_logit")[0] == pytest.approx(np.log(0.7 / 0.3))


def test_outline_growth_is_larger_on_a_vein_than_on_a_microbleed():
    image, _ = _sphere_and_tube()
    labels = np.zeros(image.shape, np.int32)
    labels[image == 15] = 1  # the whole sphere: its half-loss outline is itself
    vein = image == 20
    vein[:, :28] = vein[:, 33:] = False
    labels[vein] = 2  # 5 voxels of the vein along j: the outline runs on one voxel each way
    growth = _column(candidate_features(image, (labels > 0).astype(np.float32) * 0.7, labels, SPACING_KJI),
                     "outline_log_growth")
    assert growth[0] == pytest.approx(0.0, abs=0.01)
    assert growth[1] == pytest.approx(np.log(7 / 5), abs=0.01)


def _filter(threshold: float = 0.5) -> LesionFilter:
    """One stump: dark structures reaching beyond 5 mm are veins (log-odds -3), the rest CMBs (+3)."""
    reach = FEATURE_NAMES.index("dark_reach_mm")
    stump = BoostedTrees(0.0, np.array([0]), np.array([reach, 0, 0]), np.array([5.0, 0, 0]),
                         np.array([1, 1, 2]), np.array([2, 1, 2]), np.array([0.0, 3.0, -3.0]), depth=1)
    return LesionFilter(FEATURE_NAMES, stump, threshold)


def test_lesion_probability_carries_each_candidate_score_on_its_voxels():
    image, labels = _sphere_and_tube()
    probability = np.where(labels > 0, 0.7, 0).astype(np.float32)
    reference = sitk.GetImageFromArray(image)
    reference.SetSpacing(SPACING_KJI[::-1])
    lesion_map = lesion_probability(reference, probability, _filter())
    assert lesion_map.shape == image.shape and lesion_map.dtype == np.float32
    assert lesion_map[9, 20, 20] > 0.9 > 0.1 > lesion_map[9, 30, 40]  # the sphere kept, the vein rejected
    assert np.count_nonzero(lesion_map) == 2


def test_filter_file_round_trip_and_clear_errors(tmp_path):
    original = _filter(0.3)
    original.save(tmp_path)
    loaded = load_lesion_filter(tmp_path)
    assert loaded.threshold == 0.3 and np.array_equal(loaded.trees.threshold, original.trees.threshold)
    rows = np.random.default_rng(0).normal(5, 3, (20, len(FEATURE_NAMES)))
    assert np.allclose(loaded.score(rows), original.score(rows))
    with pytest.raises(ModelError, match="no lesion filter"):
        load_lesion_filter(tmp_path / "elsewhere")
    data = json.loads((tmp_path / FILTER_FILE).read_text())
    (tmp_path / FILTER_FILE).write_text(json.dumps({**data, "feature_names": ["contrast"]}))
    with pytest.raises(ModelError, match="but this version computes"):
        load_lesion_filter(tmp_path)
    (tmp_path / FILTER_FILE).write_text(json.dumps({**data, "kind": "standardised logistic regression"}))
    with pytest.raises(ModelError, match="this version reads"):
        load_lesion_filter(tmp_path)
    broken = {**data["trees"], "left": [1, 7, 2]}  # a child outside the node table
    (tmp_path / FILTER_FILE).write_text(json.dumps({**data, "trees": broken}))
    with pytest.raises(ModelError, match="outside the node table"):
        load_lesion_filter(tmp_path)
    (tmp_path / FILTER_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="not a usable lesion filter"):
        load_lesion_filter(tmp_path)


def test_fit_separates_classes_and_refuses_one_class():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, len(FEATURE_NAMES)))
    y = (x[:, 3] - x[:, 7] > 0.5).astype(int)
    fitted = fit_lesion_filter(x, y)
    assert np.mean((fitted.score(x) >= 0.5) == y) > 0.95
    with pytest.raises(ValueError, match="only one class"):
        fit_lesion_filter(x, np.zeros(len(x), int))


def test_flattened_trees_score_exactly_as_scikit_learn():
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 5))
    y = (x[:, 0] * x[:, 1] + rng.normal(0, 0.3, 400) > 0.2).astype(int)  # an interaction, not a line
    model = GradientBoostingClassifier(n_estimators=40, max_depth=3, subsample=0.8, random_state=0).fit(x, y)
    trees = from_sklearn(model)
    assert trees.depth == 3 and len(trees.roots) == 40
    assert np.allclose(trees.decision(x), model.decision_function(x), atol=1e-9)
    assert trees.split_counts(5)[:2].sum() > trees.split_counts(5)[2:].sum()  # it splits on the features that matter


def test_candidate_targets_mark_candidates_touching_a_cmb():
    labels = np.zeros((3, 10, 10), np.int32)
    labels[1, 1:3, 1:3], labels[1, 6, 6], labels[2, 8, 8] = 1, 2, 3
    truth = np.zeros(labels.shape, bool)
    truth[1, 2, 2:5] = True
    assert candidate_targets(labels, truth).tolist() == [1, 0, 0]


def test_a_stale_filter_file_is_ignored(tmp_path):
    _filter().save(tmp_path)
    write_card(tmp_path, {"name": "x"}, [])
    assert not has_lesion_filter(tmp_path)  # on disk but not in the card: left over from an earlier UNet
    write_card(tmp_path, {"name": "x"}, [FILTER_FILE])
    assert has_lesion_filter(tmp_path)


@pytest.fixture(scope="module")
def unet_copy(tmp_path_factory) -> Path:
    """The shipped UNet without its filter (a model folder the filter training may write into)."""
    folder = tmp_path_factory.mktemp("unet")
    card = load_card(SHIPPED)
    for name in card["files"]:
        if name != FILTER_FILE:
            shutil.copy(SHIPPED / name, folder / name)
    write_card(folder, {k: v for k, v in card.items() if k not in ("files", "lesion_filter")},
               [n for n in card["files"] if n != FILTER_FILE])
    return folder


def test_cmb_train_lesion_filter_fits_chooses_a_threshold_and_records_it(unet_copy, tmp_path):
    data = write_dataset(tmp_path / "fresh", 5, seed0=70, shape_kji=(10, 96, 96), n_cmbs=3, n_distractors=6)
    heldout = write_dataset(tmp_path / "heldout", 1, seed0=90, shape_kji=(10, 96, 96), n_cmbs=3, n_distractors=6)
    assert train_main([str(data), "-o", str(unet_copy), "--method", "lesion-filter", "--eval-dir", str(heldout), "-q"]) == 0
    card = load_card(unet_copy)
    record = card["lesion_filter"]
    assert card["files"][FILTER_FILE] == sha256_of(unet_copy / FILTER_FILE)
    assert record["threshold"] in FILTER_THRESHOLDS
    assert record["training_data"]["n_fit_subjects"] == 4 and record["validation"]["n_subjects"] == 1
    assert record["training_data"]["n_true_candidates"] >= 1
    assert record["held_out"]["n_subjects"] == 1
    assert record["confidence_shift"]["copies_per_subject"] == 2 and record["confidence_shift"]["candidate_floor"] == 0.005
    assert set(record["validation_by_threshold"]) == {str(t) for t in FILTER_THRESHOLDS}
    assert load_lesion_filter(unet_copy).threshold == record["threshold"]


def test_cmb_train_lesion_filter_needs_a_unet_first(tmp_path, capsys):
    data = write_dataset(tmp_path / "fresh", 3, shape_kji=(8, 64, 64))
    assert train_main([str(data), "-o", str(tmp_path / "empty"), "--method", "lesion-filter", "-q"]) != 0
    assert "no trained model here" in capsys.readouterr().err


@pytest.mark.skipif(not has_lesion_filter(SHIPPED), reason="the shipped UNet has no lesion filter")
def test_detect_uses_the_shipped_filter_unless_told_not_to():
    image, _, _ = synthetic_subject(5, shape_kji=(10, 96, 96))
    filtered = detect(image, device="cpu", mars=False, redraw_outlines=False)  # scores cover the detector's voxels
    plain = detect(image, device="cpu", mars=False, use_lesion_filter=False, redraw_outlines=False)
    assert filtered.provenance["lesion_filter"] and not plain.provenance["lesion_filter"]
    assert filtered.provenance["threshold"] == load_lesion_filter(SHIPPED).threshold
    assert plain.provenance["threshold"] == load_card(SHIPPED)["metrics"]["threshold"]
    assert filtered.probability.shape == plain.probability.shape and filtered.probability.max() <= 1
    assert (filtered.probability[filtered.label_map > 0] >= filtered.provenance["threshold"]).all()
    for lesion in filtered.lesions:  # scores are constant per candidate; touching candidates make one lesion
        scores = np.unique(filtered.probability[filtered.label_map == lesion.label])
        assert len(scores) <= 3 and lesion.max_probability == pytest.approx(scores.max(), abs=1e-4)
