"""Skull removal of the two-stage method: Dice against the phantom's brain mask, and robustness."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from CMBDetectionLib.evaluation.metrics import voxel_metrics
from CMBDetectionLib.phantoms.generator import generate_subject
from CMBDetectionLib.probability.two_stage.brain_mask import brain_mask, brain_mask_array

PHANTOM = dict(size=256, spacing=0.9, slice_thickness=2.0, n_slices=48)  # the real grid, a thinner slab


@pytest.fixture(scope="module")
def subject():
    return generate_subject(301, **PHANTOM)  # 4 CMBs of 3.9-5.7 mm


@pytest.fixture(scope="module")
def mask(subject):
    return brain_mask(subject.image)


def test_brain_mask_matches_the_phantom_brain(subject, mask):
    truth = sitk.GetArrayFromImage(subject.brain_mask)
    scores = voxel_metrics(truth, mask)
    assert mask.dtype == np.uint8 and mask.shape == truth.shape
    assert scores["dice"] >= 0.9, scores
    assert scores["sensitivity"] >= 0.95  # CMBs must not be cut away with the skull


def test_mask_keeps_every_microbleed_and_drops_skull_and_scalp(subject, mask):
    cmbs = sitk.GetArrayFromImage(subject.cmb_mask) > 0
    assert cmbs.any() and mask[cmbs].all()
    truth = sitk.GetArrayFromImage(subject.brain_mask) > 0
    outside_mm = ndimage.distance_transform_edt(~truth, sampling=subject.image.GetSpacing()[::-1])
    # skull and scalp start a few mm outside the brain: almost none of the mask may lie there
    assert mask[outside_mm > 4.0].sum() < 0.01 * mask.sum()


def test_mask_does_not_depend_on_intensity_scale(subject, mask):
    scaled = sitk.Cast(subject.image, sitk.sitkFloat32) * 3.7 + 100.0
    assert voxel_metrics(mask, brain_mask(scaled))["dice"] > 0.99


def test_volume_without_a_head_is_a_clear_error():
    array = np.zeros((10, 40, 40), np.float32)
    array[4:7, 18:22, 18:22] = 100.0  # a small bright object: nothing lies deep inside a head
    with pytest.raises(ValueError, match="no brain found"):
        brain_mask_array(array, (2.0, 1.0, 1.0))


def test_bias_field_does_not_cut_the_dark_side_of_the_brain(subject):
    """A left-right bias (0.4x to 1.6x) pushed the dark side below a global Otsu threshold of the head."""
    array = sitk.GetArrayFromImage(subject.image).astype(np.float32)
    ramp = np.linspace(0.4, 1.6, array.shape[2], dtype=np.float32)[None, None, :]
    biased = sitk.GetImageFromArray(array * ramp)
    biased.CopyInformation(subject.image)
    truth = sitk.GetArrayFromImage(subject.brain_mask)
    assert voxel_metrics(truth, brain_mask(biased))["dice"] >= 0.9


def test_grey_matter_darker_than_white_keeps_the_cortex(subject):
    """Where grey matter is darker than white, a plain Otsu split of the head fell between the two."""
    array = sitk.GetArrayFromImage(subject.image).astype(np.float32)
    truth = sitk.GetArrayFromImage(subject.brain_mask) > 0
    edge = truth & (ndimage.distance_transform_edt(truth, sampling=subject.image.GetSpacing()[::-1]) < 4.0)
    level = np.median(array[truth])
    array[edge] = 0.65 * level  # a dark cortical ribbon, as with inverted grey/white contrast
    darkened = sitk.GetImageFromArray(array)
    darkened.CopyInformation(subject.image)
    mask = brain_mask(darkened)
    assert mask[edge].mean() >= 0.95  # a plain Otsu split kept 0.83 of it
