"""Lesion extraction: 6-connected 3D components, centres, sizes and probabilities on the image geometry."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from CMBDetectionLib.imageio.volumes import index_to_ras
from CMBDetectionLib.lesions.extraction import extract_lesions


@pytest.fixture
def image():
    img = sitk.Image(20, 16, 10, sitk.sitkFloat32)  # i, j, k
    img.SetSpacing((0.5, 0.8, 2.0))
    img.SetOrigin((-5.0, 3.0, 10.0))
    img.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    return img


def test_cmb_across_slices_is_one_lesion_and_diagonals_are_not_joined(image):
    prob = np.zeros((10, 16, 20), np.float32)
    prob[2:5, 4:6, 4:6] = 0.9  # 3 slices x 2 x 2: one lesion
    prob[7, 10, 10] = 0.8
    prob[8, 11, 11] = 0.7  # touches the previous voxel only diagonally: separate under 6-connectivity
    labels, lesions = extract_lesions(prob, image, 0.5)
    assert len(lesions) == 3
    first = lesions[0]
    assert first.n_voxels == 12
    assert first.centre_ijk == (4.5, 4.5, 3.0)
    np.testing.assert_allclose(first.centre_ras, index_to_ras(image, (4.5, 4.5, 3.0)), atol=1e-3)
    assert first.volume_mm3 == pytest.approx(12 * 0.5 * 0.8 * 2.0)
    assert first.diameter_mm == pytest.approx(3 * 2.0)  # largest extent: 3 slices of 2 mm
    assert first.mean_probability == pytest.approx(0.9) and first.max_probability == pytest.approx(0.9)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert all(np.count_nonzero(labels == lesion.label) == lesion.n_voxels for lesion in lesions)


def test_threshold_is_applied_and_checked(image):
    prob = np.zeros((10, 16, 20), np.float32)
    prob[5, 5, 5] = 0.4
    assert extract_lesions(prob, image, 0.5)[1] == []
    assert len(extract_lesions(prob, image, 0.3)[1]) == 1
    with pytest.raises(ValueError, match="threshold"):
        extract_lesions(prob, image, 1.5)
    with pytest.raises(ValueError, match="shape"):
        extract_lesions(prob[:5], image, 0.5)
