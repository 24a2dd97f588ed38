"""Stage one of the two-stage method: k-means dark-cluster candidates and the size/shape filter."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from CMBDetectionLib.evaluation.metrics import lesion_metrics
from CMBDetectionLib.phantoms.generator import generate_subject
from CMBDetectionLib.probability.two_stage.kmeans_candidates import (
    MAX_ELONGATION,
    dark_cluster,
    filter_components,
    find_kmeans_candidates,
)
from CMBDetectionLib.probability.unet.slicing import to_axial

PHANTOM = dict(size=256, spacing=0.9, slice_thickness=2.0, n_slices=48)
SPACING = (2.0, 0.9, 0.9)


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
    assert len(found) < 400  # k-means + shape filter keep far fewer components than the dark cluster holds


def test_candidates_obey_the_size_and_shape_limits(phantom_candidates):
    _, labels, found, _ = phantom_candidates
    assert [c.label for c in found] == list(range(1, len(found) + 1)) == list(np.unique(labels[labels > 0]))
    assert all(2.0 <= c.diameter_mm <= 10.0 and c.elongation <= MAX_ELONGATION for c in found)
    for c in found[:20]:
        assert labels[tuple(np.rint(c.centre_kji).astype(int))] in (0, c.label)


def _box_mask(*boxes: tuple[slice, ...]) -> np.ndarray:
    mask = np.zeros((20, 80, 80), bool)
    for box in boxes:
        mask[box] = True
    return mask


BLOB = (slice(9, 11), slice(20, 25), slice(20, 25))  # 4 x 4.5 x 4.5 mm
VESSEL = (slice(9, 10), slice(50, 52), slice(10, 70))  # 2 x 1.8 x 54 mm tube
NUCLEUS = (slice(4, 16), slice(55, 75), slice(55, 75))  # 24 x 18 x 18 mm


def test_round_blob_is_kept_and_vessel_and_large_nucleus_are_dropped():
    labels, found = filter_components(_box_mask(BLOB, VESSEL, NUCLEUS), SPACING)
    assert len(found) == 1 and labels[BLOB].all() and labels.sum() == labels[BLOB].sum()
    assert 4.0 < found[0].diameter_mm < 6.0 and found[0].elongation < 1.5


def test_blob_touching_a_vessel_is_recovered_from_the_dark_core():
    touching = (slice(9, 10), slice(22, 24), slice(25, 70))  # vessel running out of the blob
    merged = _box_mask(BLOB, touching)
    _, without_core = filter_components(merged, SPACING)
    labels, found = filter_components(merged, SPACING, core=_box_mask(BLOB))
    assert without_core == [] and len(found) == 1 and labels[BLOB].all()
    _, none = filter_components(_box_mask(BLOB), SPACING, core=_box_mask())
    assert none == []  # no very dark voxel: not a candidate


def test_dark_cluster_and_core_hold_the_darkest_structure():
    rng = np.random.default_rng(0)
    volume = 500.0 + rng.normal(0, 5, (20, 80, 80))
    volume[NUCLEUS] = 300.0 + rng.normal(0, 5, volume[NUCLEUS].shape)  # iron-rich nucleus: darker than tissue
    volume[BLOB] = np.linspace(40.0, 120.0, volume[BLOB].size).reshape(volume[BLOB].shape)  # graded CMB
    dark, core = dark_cluster(volume.astype(np.float32), np.ones(volume.shape, np.uint8))
    assert dark[BLOB].all() and core[BLOB].any() and not core[NUCLEUS].any() and not dark[:, :, :5].any()


def test_tiny_speck_is_below_the_minimum_diameter():
    speck = (slice(9, 10), slice(20, 21), slice(20, 21))
    _, found = filter_components(_box_mask(speck, (slice(2, 4), slice(60, 64), slice(60, 64))), SPACING)
    assert len(found) == 1 and found[0].centre_kji == pytest.approx((2.5, 61.5, 61.5))


def test_empty_brain_mask_is_a_clear_error():
    with pytest.raises(ValueError, match="k-means needs"):
        find_kmeans_candidates(np.zeros((4, 8, 8), np.float32), np.zeros((4, 8, 8), np.uint8), SPACING)
