"""Stage one of the two-stage method: local contrast, k-means dark cluster, regions at depth, ranking and cap."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from CMBDetectionLib.evaluation.metrics import lesion_metrics
from CMBDetectionLib.phantoms.generator import generate_subject
from CMBDetectionLib.probability.two_stage.kmeans_candidates import (
    MAX_CANDIDATES,
    MAX_ELONGATION,
    dark_cluster,
    find_kmeans_candidates,
)
from CMBDetectionLib.probability.unet.slicing import to_axial

PHANTOM = dict(size=256, spacing=0.9, slice_thickness=2.0, n_slices=48)
SPACING = (2.0, 0.9, 0.9)
SHAPE = (20, 80, 80)
BLOB = (slice(9, 11), slice(20, 25), slice(20, 25))  # 4 x 4.5 x 4.5 mm
VESSEL = (slice(9, 10), slice(50, 52), slice(10, 70))  # 2 x 1.8 x 54 mm tube
NUCLEUS = (slice(4, 16), slice(55, 75), slice(55, 75))  # 24 x 18 x 18 mm


@pytest.fixture(scope="module")
def phantom_candidates():
    """A phantom with CMBs, its candidates found inside the phantom's own brain mask (stage one alone)."""
    subject = generate_subject(301, **PHANTOM)  # 4 CMBs of 3.9-5.7 mm
    image, brain = to_axial(sitk.Cast(subject.image, sitk.sitkFloat32)), to_axial(subject.brain_mask)
    gt = sitk.GetArrayFromImage(to_axial(subject.cmb_mask))
    spacing = tuple(image.GetSpacing()[::-1])
    labels, found = find_kmeans_candidates(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(brain), spacing)
    return gt, labels, found, spacing


def test_candidates_recall_the_phantom_microbleeds(phantom_candidates):
    gt, labels, found, spacing = phantom_candidates
    scores = lesion_metrics(gt, labels > 0, spacing)
    assert scores["n_gt"] >= 2
    assert scores["lesion_sensitivity"] >= 0.75, scores
    assert len(found) <= MAX_CANDIDATES


def test_candidates_are_numbered_in_rank_order_within_the_limits(phantom_candidates):
    _, labels, found, _ = phantom_candidates
    assert [c.label for c in found] == list(range(1, len(found) + 1)) == list(np.unique(labels[labels > 0]))
    assert all(2.0 <= c.diameter_mm <= 10.0 and c.elongation <= MAX_ELONGATION for c in found)
    assert all(a.level >= b.level for a, b in zip(found, found[1:], strict=False))
    for c in found:
        assert (labels[tuple(c.voxels.T)] == c.label).all()  # regions do not overlap


def _volume(*dark: tuple[tuple[slice, ...], float], noise: float = 2.0, seed: int = 0) -> np.ndarray:
    """Tissue at 500 with dark structures at the given fractions of it (their local contrast)."""
    volume = np.full(SHAPE, 500.0)
    for box, fraction in dark:
        volume[box] = 500.0 * fraction
    return (volume + np.random.default_rng(seed).normal(0, noise, SHAPE)).astype(np.float32)


def _find(volume: np.ndarray, **kwargs) -> tuple[np.ndarray, list]:
    return find_kmeans_candidates(volume, np.ones(SHAPE, np.uint8), SPACING, **kwargs)


def test_round_blob_is_kept_and_vessel_and_large_nucleus_are_dropped():
    labels, found = _find(_volume((BLOB, 0.3), (VESSEL, 0.3), (NUCLEUS, 0.3)))
    assert len(found) == 1 and labels[BLOB].all() and found[0].level == 0.5
    assert 4.0 < found[0].diameter_mm < 6.0 and found[0].elongation < 1.5


def test_blob_touching_a_paler_vessel_is_cut_from_it_at_a_deeper_level():
    touching = (slice(9, 10), slice(22, 24), slice(25, 70))  # vessel running out of the blob
    labels, found = _find(_volume((touching, 0.55), (BLOB, 0.3)))
    assert len(found) == 1 and labels[BLOB].all() and not labels[9, 22, 40]
    assert found[0].level < 0.5  # at half depth the blob and the vessel are one long region


def test_candidates_do_not_depend_on_gain_or_bias():
    volume = _volume((BLOB, 0.5), (VESSEL, 0.3))
    bias = np.linspace(0.4, 2.5, SHAPE[2], dtype=np.float32)  # a 6x bias field across the field of view
    plain, biased = _find(volume)[1], _find(volume * bias * 7.0)[1]
    assert len(plain) == len(biased) == 1
    assert np.allclose(plain[0].centre_kji, biased[0].centre_kji, atol=0.5)


def test_faint_blob_keeps_its_size():
    graded = _volume((BLOB, 0.75))
    graded[10, 22, 22] = 0.55 * 500.0  # only its darkest voxel is far below the tissue
    _, found = _find(graded)
    assert len(found) == 1 and found[0].diameter_mm > 2.0


def test_single_dark_voxel_is_below_the_minimum_diameter():
    speck = _volume(((slice(9, 10), slice(20, 21), slice(20, 21)), 0.2), (BLOB, 0.6))
    _, found = _find(speck)
    assert len(found) == 1 and found[0].centre_kji == pytest.approx((9.5, 22.0, 22.0), abs=0.3)


def test_cap_keeps_the_best_ranked_candidates():
    two = _volume((BLOB, 0.3), ((slice(9, 11), slice(40, 45), slice(60, 65)), 0.3))
    _, everything = _find(two, max_candidates=None)
    _, capped = _find(two, max_candidates=1)
    assert len(everything) == 2 and len(capped) == 1 and capped[0].centre_kji == everything[0].centre_kji


def test_dark_cluster_holds_the_darkest_structure():
    rng = np.random.default_rng(0)
    volume = 500.0 + rng.normal(0, 5, SHAPE)
    volume[NUCLEUS] = 300.0 + rng.normal(0, 5, volume[NUCLEUS].shape)  # iron-rich nucleus: darker than tissue
    volume[BLOB] = np.linspace(40.0, 120.0, volume[BLOB].size).reshape(volume[BLOB].shape)  # graded CMB
    dark = dark_cluster(volume.astype(np.float32), np.ones(SHAPE, np.uint8))
    assert dark[BLOB].all() and not dark[NUCLEUS].any() and not dark[:, :, :5].any()


def test_empty_brain_mask_is_a_clear_error():
    with pytest.raises(ValueError, match="k-means needs"):
        find_kmeans_candidates(np.zeros((4, 8, 8), np.float32), np.zeros((4, 8, 8), np.uint8), SPACING)
