"""Stage one of the two-stage method: k-means dark-cluster candidates and the size/shape filter."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from CMBDetectionLib.candidates import MAX_ELONGATION, dark_cluster, filter_components, find_candidates
from CMBDetectionLib.metrics import lesion_metrics
from CMBDetectionLib.phantom import generate_subject
from CMBDetectionLib.preprocessing import to_axial

PHANTOM = dict(size=256, spacing=0.9, slice_thickness=2.0, n_slices=48)
SPACING = (2.0, 0.9, 0.9)


@pytest.fixture(scope="module")
def phantom_candidates():
    """A phantom with CMBs, its candidates found inside the phantom's own brain mask (stage one alone)."""
    subject = generate_subject(311, **PHANTOM)
    image, brain = to_axial(sitk.Cast(subject.image, sitk.sitkFloat32)), to_axial(subject.brain_mask)
    gt = sitk.GetArrayFromImage(to_axial(subject.cmb_mask))
    spacing = tuple(image.GetSpacing()[::-1])
    labels, found = find_candidates(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(brain), spacing)
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


def _volume_with(*shapes: tuple[slice, ...]) -> np.ndarray:
    rng = np.random.default_rng(0)
    volume = 500.0 + rng.normal(0, 5, (20, 80, 80))
    for box in shapes:
        volume[box] = 50.0 + rng.normal(0, 5, volume[box].shape)
    return volume.astype(np.float32)


def test_round_blob_is_kept_and_vessel_and_large_nucleus_are_dropped():
    blob = (slice(9, 11), slice(20, 25), slice(20, 25))  # 4 x 4.5 x 4.5 mm
    vessel = (slice(9, 10), slice(50, 52), slice(10, 70))  # 2 x 1.8 x 54 mm tube
    nucleus = (slice(4, 16), slice(55, 75), slice(55, 75))  # 24 x 18 x 18 mm
    volume = _volume_with(blob, vessel, nucleus)
    brain = np.ones(volume.shape, np.uint8)
    dark, core = dark_cluster(volume, brain)
    assert dark[blob].all() and dark[vessel].all()
    labels, found = filter_components(dark, SPACING, core=core)
    assert len(found) == 1 and labels[blob].all()
    assert 4.0 < found[0].diameter_mm < 6.0 and found[0].elongation < 1.5


def test_tiny_speck_is_below_the_minimum_diameter():
    speck = (slice(9, 10), slice(20, 21), slice(20, 21))
    volume = _volume_with(speck, (slice(2, 4), slice(60, 64), slice(60, 64)))
    _, found = filter_components(volume < 100, SPACING)
    assert len(found) == 1 and found[0].centre_kji == pytest.approx((2.5, 61.5, 61.5))


def test_empty_brain_mask_is_a_clear_error():
    with pytest.raises(ValueError, match="k-means needs"):
        find_candidates(np.zeros((4, 8, 8), np.float32), np.zeros((4, 8, 8), np.uint8), SPACING)
