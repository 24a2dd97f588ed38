"""Growing a lesion from a rater's click (``CMBDetectionLib.lesions.growing``), on small synthetic SWI patches."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from CMBDetectionLib.errors import NoLesionHere
from CMBDetectionLib.imageio.volumes import index_to_ras
from CMBDetectionLib.lesions.growing import MAX_RADIUS_MM, grow_lesion

SPACING = (0.5, 0.5, 1.0)


def swi_patch(radius_mm: float = 2.0, vein: bool = False, seed: int = 0) -> tuple[sitk.Image, np.ndarray]:
    """Noisy bright tissue with a dark ball of ``radius_mm`` at the centre (and optionally a dark vein through it)."""
    rng = np.random.default_rng(seed)
    shape = (40, 80, 80)
    k, j, i = np.indices(shape)
    centre = np.array(shape) // 2
    distance = np.sqrt(((i - centre[2]) * SPACING[0]) ** 2 + ((j - centre[1]) * SPACING[1]) ** 2 + ((k - centre[0]) * SPACING[2]) ** 2)
    truth = distance <= radius_mm
    array = 200 + rng.normal(0, 8, shape)
    array[truth] = 30 + rng.normal(0, 5, truth.sum())
    if vein:
        array[:, centre[1] - 1 : centre[1] + 2, :] = 60  # a dark tube along i through the lesion
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(SPACING)
    image.SetOrigin((12.0, -30.0, 4.0))
    image.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    return image, truth


def centre_ras(image):
    return index_to_ras(image, np.array(image.GetSize()) // 2)


@pytest.mark.parametrize("radius_mm", [1.5, 3.0])
def test_a_click_near_a_dark_blob_recovers_it(radius_mm):
    image, truth = swi_patch(radius_mm)
    off_centre = centre_ras(image) + np.array([0.8, -0.6, 0.0])
    lesion, mask = grow_lesion(image, off_centre, label=7)
    dice = 2 * (mask.astype(bool) & truth).sum() / (mask.sum() + truth.sum())
    assert dice > 0.85
    assert lesion.label == 7 and lesion.n_voxels == mask.sum()
    np.testing.assert_allclose(lesion.centre_ras, centre_ras(image), atol=0.5)
    assert lesion.diameter_mm == pytest.approx(2 * radius_mm, abs=1.5)
    assert np.isnan(lesion.mean_probability)


def test_a_vein_through_the_lesion_does_not_leak_beyond_the_ball():
    image, _ = swi_patch(2.0, vein=True)
    lesion, _ = grow_lesion(image, centre_ras(image), label=1)
    assert lesion.diameter_mm <= 2 * MAX_RADIUS_MM + 1.0


def test_a_click_on_plain_tissue_is_refused():
    image, _ = swi_patch(2.0)
    with pytest.raises(NoLesionHere, match="dark"):
        grow_lesion(image, centre_ras(image) + np.array([0.0, 12.0, 0.0]), label=1)


def test_a_click_outside_the_volume_is_refused():
    image, _ = swi_patch(2.0)
    with pytest.raises(NoLesionHere, match="outside"):
        grow_lesion(image, centre_ras(image) + np.array([0.0, 0.0, 100.0]), label=1)
