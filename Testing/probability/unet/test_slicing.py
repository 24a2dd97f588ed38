"""Preprocessing: scanner-independent normalisation, aspect-keeping 256x256 slices, exact mapping back."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from synthetic_cmb import synthetic_subject

from CMBDetectionLib.probability.unet.slicing import SliceGrid, from_axial, normalise_intensity, orientation_of, to_axial


def test_normalisation_ignores_scanner_scaling():
    image, _, _ = synthetic_subject(0)
    array = sitk.GetArrayFromImage(image)
    a, b = normalise_intensity(array), normalise_intensity(array * 7.5 + 300.0)
    np.testing.assert_allclose(a, b, atol=1e-4)
    head = array > 200
    assert np.median(a[head]) == pytest.approx(0.5, abs=0.2)
    assert a[~head].max() == 0.0


@pytest.mark.parametrize("shape, spacing", [((200, 180), (1.0, 1.0)), ((160, 230), (1.2, 0.9)), ((256, 256), (0.8, 0.8))])
def test_label_round_trip_lands_on_the_same_voxels(shape, spacing):
    labels = np.random.default_rng(1).integers(0, 5, size=(3, *shape)).astype(np.uint8)
    grid = SliceGrid.for_slices(shape, spacing)
    model_slices = grid.to_model(labels, order=0)
    assert model_slices.shape == (3, 256, 256)
    np.testing.assert_array_equal(grid.to_native(model_slices, order=0), labels)


def test_model_grid_keeps_aspect_ratio_and_pads():
    grid = SliceGrid.for_slices((100, 200), (1.0, 1.0))  # 100 x 200 mm: 128 x 256 model pixels plus padding
    model_slices = grid.to_model(np.ones((1, 100, 200), np.float32))
    rows = np.flatnonzero(model_slices[0].max(axis=1) > 0.5)
    cols = np.flatnonzero(model_slices[0].max(axis=0) > 0.5)
    assert len(cols) == 256 and abs(len(rows) - 128) <= 2  # edge pixels may extend half a native pixel
    assert rows[0] == pytest.approx(64, abs=1.5)


def test_downsampled_512_slices_map_back_closely():
    rng = np.random.default_rng(2)
    labels = np.zeros((1, 512, 512), np.uint8)
    for r, c in rng.integers(40, 470, size=(10, 2)):
        labels[0, r - 4 : r + 4, c - 4 : c + 4] = 1
    grid = SliceGrid.for_slices((512, 512), (0.5, 0.5))
    back = grid.to_native(grid.to_model(labels.astype(np.float32)), order=1) > 0.5
    dice = 2 * (back & (labels > 0)).sum() / (back.sum() + labels.sum())
    assert dice > 0.9


def test_axial_reorientation_is_exact_and_invertible():
    image, _, _ = synthetic_subject(3, direction=(0, 0, 1, -1, 0, 0, 0, -1, 0))  # a sagittal-stored volume
    axial = to_axial(image)
    assert orientation_of(axial) == "LPS"
    assert axial.GetSize()[2] != image.GetSize()[2] or axial.GetDirection() != image.GetDirection()
    back = from_axial(axial, orientation_of(image))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-9)
