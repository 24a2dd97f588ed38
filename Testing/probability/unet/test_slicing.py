"""Preprocessing: scanner-independent normalisation, 256x256 slices at a fixed pixel size, exact mapping back."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from synthetic_cmb import synthetic_subject

from CMBDetectionLib.probability.unet.slicing import (
    DEFAULT_PIXEL_MM,
    SliceGrid,
    from_axial,
    normalise_intensity,
    orientation_of,
    to_axial,
)


def test_normalisation_ignores_scanner_scaling():
    image, _, _ = synthetic_subject(0)
    array = sitk.GetArrayFromImage(image)
    a, b = normalise_intensity(array), normalise_intensity(array * 7.5 + 300.0)
    np.testing.assert_allclose(a, b, atol=1e-4)
    head = array > 200
    assert np.median(a[head]) == pytest.approx(0.5, abs=0.2)
    assert a[~head].max() == 0.0


# Native pixels at least as large as the model's 0.9 mm: nearest-neighbour up and back is lossless.
@pytest.mark.parametrize("shape, spacing", [((200, 180), (1.0, 1.0)), ((160, 230), (1.2, 0.9)), ((150, 150), (1.5, 1.5))])
def test_label_round_trip_lands_on_the_same_voxels(shape, spacing):
    labels = np.random.default_rng(1).integers(0, 5, size=(3, *shape)).astype(np.uint8)
    grid = SliceGrid.for_slices(shape, spacing)
    model_slices = grid.to_model(labels, order=0)
    assert model_slices.shape == (3, 256, 256)
    np.testing.assert_array_equal(grid.to_native(model_slices, order=0), labels)


def test_model_grid_keeps_the_physical_size_and_pads_around_the_centre():
    grid = SliceGrid.for_slices((100, 200), (1.0, 1.0))  # 100 x 200 mm: 111 x 222 model pixels of 0.9 mm, padded
    model_slices = grid.to_model(np.ones((1, 100, 200), np.float32))
    rows = np.flatnonzero(model_slices[0].max(axis=1) > 0.5)
    cols = np.flatnonzero(model_slices[0].max(axis=0) > 0.5)
    assert abs(len(rows) - 100 / 0.9) <= 2 and abs(len(cols) - 200 / 0.9) <= 2  # each edge may add a pixel
    assert rows[0] == pytest.approx((256 - 100 / 0.9) / 2, abs=1.5) and cols[0] == pytest.approx((256 - 200 / 0.9) / 2, abs=1.5)


@pytest.mark.parametrize("spacing", [0.45, 0.6, 0.9, 1.2])
def test_a_disc_covers_the_same_model_pixels_at_every_resolution(spacing):
    n = int(round(200 / spacing))  # a 200 mm field of view
    r, c = np.indices((n, n)) * spacing
    disc = ((r - 100.0) ** 2 + (c - 100.0) ** 2 <= 3.0 ** 2).astype(np.float32)[None]  # 6 mm across
    grid = SliceGrid.for_slices((n, n), (spacing, spacing))
    area_mm2 = (grid.to_model(disc) > 0.5).sum() * DEFAULT_PIXEL_MM ** 2
    assert area_mm2 == pytest.approx(np.pi * 3.0 ** 2, rel=0.2)


def test_in_distribution_slices_pass_through_unchanged():
    spacing = float(np.float32(0.9))  # as a NIfTI header stores 0.9 mm
    grid = SliceGrid.for_slices((256, 256), (spacing, spacing))
    assert grid.zoom == (1.0, 1.0) and grid.offset == (0.0, 0.0) and len(grid.tile_origins) == 1
    slices = np.random.default_rng(3).random((2, 256, 256)).astype(np.float32)
    np.testing.assert_array_equal(grid.to_model(slices), slices)
    np.testing.assert_array_equal(grid.to_native(slices), slices)


def test_a_wide_field_of_view_is_cropped_around_an_off_centre_head():
    volume = np.zeros((3, 400, 400), np.float32)  # 360 mm at 0.9 mm: wider than the 230 mm window
    volume[:, 20:220, 150:330] = 300.0 + np.random.default_rng(4).normal(0, 10, (3, 200, 180))
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.9, 0.9, 2.0))
    grid = SliceGrid.for_image(image)
    assert grid.plane_shape == (256, 256) and len(grid.tile_origins) == 1
    labels = (volume > 0).astype(np.uint8)
    back = grid.to_native(grid.to_model(labels, order=0), order=0)
    np.testing.assert_array_equal(back[labels > 0], 1)  # the whole head came back, voxel for voxel
    assert back.sum() == labels.sum()  # and no replicated edge values on the cropped air


def test_a_head_wider_than_the_window_is_tiled_and_stitched_exactly():
    volume = np.zeros((2, 340, 300), np.float32)  # a 306 x 270 mm head at 0.9 mm: wider than one window
    volume[:, 2:338, 2:298] = np.random.default_rng(5).random((2, 336, 296)) + 0.5
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.9, 0.9, 2.0))
    grid = SliceGrid.for_image(image)
    assert min(grid.plane_shape) > 256 and len(grid.tile_origins) == 4
    planes = grid.to_model(volume)
    tiles = grid.cut(planes)
    assert tiles.shape == (2 * 4, 256, 256)
    np.testing.assert_array_equal(grid.stitch(tiles), planes)
    np.testing.assert_array_equal(grid.to_native(grid.stitch(tiles)), volume)


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
