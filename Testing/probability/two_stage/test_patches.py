"""Patch geometry of the two-stage classifier's input: the 2.5D channels and the paper's single-slice input."""

from __future__ import annotations

import numpy as np
import pytest

from CMBDetectionLib.probability.two_stage.patches import extract_patches

SPACING = (2.0, 0.5, 1.0)  # anisotropic on purpose: in-plane sampling must follow millimetres, not voxels


def _coded_volume(n_slices: int = 9) -> np.ndarray:
    """value = 1000 k + j + 0.001 i: each voxel says where it is (linear, so interpolation is exact)."""
    k, j, i = np.meshgrid(np.arange(n_slices), np.arange(80), np.arange(60), indexing="ij")
    return (1000.0 * k + j + 0.001 * i).astype(np.float64)


def _slices(patch: np.ndarray) -> list[int]:
    return [int(round(patch[8, 8, c] // 1000)) for c in range(3)]


@pytest.mark.parametrize(("k", "expected"), [(4.4, [3, 4, 5]), (0.2, [0, 0, 1]), (8.0, [7, 8, 8]), (3.6, [3, 4, 5])])
def test_25d_channels_are_the_slices_below_at_and_above_the_candidate(k, expected):
    patch = extract_patches(_coded_volume(), np.array([[k, 40.0, 30.0]]), SPACING, patch_size=16,
                            field_of_view_mm=16.0, patch_input="2.5d")[0]
    assert _slices(patch) == expected


def test_paper_input_repeats_the_candidate_slice():
    patch = extract_patches(_coded_volume(), np.array([[4.4, 40.0, 30.0]]), SPACING, patch_size=16,
                            field_of_view_mm=16.0, patch_input="paper")[0]
    assert _slices(patch) == [4, 4, 4]
    assert np.array_equal(patch[..., 0], patch[..., 2])


def test_in_plane_sampling_is_in_millimetres_and_centred():
    k, j, i = np.meshgrid(np.arange(9), np.arange(80), np.arange(60), indexing="ij")
    centre = np.array([[4.0, 40.0, 30.0]])
    rows, cols = (extract_patches(axis.astype(np.float32), centre, SPACING, patch_size=16, field_of_view_mm=16.0)[0, ..., 1]
                  for axis in (j, i))
    assert np.allclose(np.diff(rows[:, 0]), 2.0) and np.allclose(np.diff(cols[0]), 1.0)  # 1 mm pixels
    assert rows.mean() == pytest.approx(40.0) and cols.mean() == pytest.approx(30.0)


def test_unknown_patch_input_is_a_clear_error():
    with pytest.raises(ValueError, match="patch input '3d' unknown"):
        extract_patches(_coded_volume(), np.array([[4.0, 40.0, 30.0]]), SPACING, patch_input="3d")
