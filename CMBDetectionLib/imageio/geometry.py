"""Do two images share one grid? Size, spacing, origin and direction compared within a tolerance.

``cmb-eval`` compares a prediction with its ground truth voxel by voxel, and ``cmb-train`` a mask with its
volume: both are meaningful only on one grid. A mask of the same size but shifted or rescaled (50 mm off, other
spacing) would score or train silently wrong, so it is refused, saying what differs. The result files are
checked against their input volume the same way (``outputs.grid``); a Slicer segmentation gives its grid as a
size and an index-to-LPS matrix, not as an image, so grids are compared in that form.

>>> a, b = sitk.Image(20, 20, 4, sitk.sitkUInt8), sitk.Image(20, 20, 4, sitk.sitkUInt8)
>>> b.SetOrigin((50.0, 0.0, 0.0))
>>> grid_difference(b.GetSize(), ijk_to_lps(b), a)
'origin (50.00, 0.00, 0.00) mm differs from (0.00, 0.00, 0.00) mm'
>>> grid_difference(a.GetSize(), ijk_to_lps(a), a) is None
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.errors import VolumeError

SPACING_TOLERANCE = 1e-3  # relative: files store spacing as float32
ORIGIN_TOLERANCE = 0.01  # of the smallest voxel size; a real misregistration is a voxel or more
DIRECTION_TOLERANCE = 1e-3  # per cosine


def _triple(values) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")"


def ijk_to_lps(image: sitk.Image) -> np.ndarray:
    """4x4 matrix from voxel index ``(i, j, k, 1)`` to LPS millimetres."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return matrix


def grid_difference(size: Sequence[int], matrix: np.ndarray, reference: sitk.Image) -> str | None:
    """How a grid (``size`` i, j, k and its :func:`ijk_to_lps` ``matrix``) differs from ``reference``'s (the first
    difference found), or None when they agree."""
    size = tuple(int(n) for n in size)
    if size != reference.GetSize():
        return f"size {size} differs from {reference.GetSize()}"
    axes = np.asarray(matrix)[:3, :3]
    spacing, expected = np.linalg.norm(axes, axis=0), np.array(reference.GetSpacing())
    if not np.allclose(spacing, expected, rtol=SPACING_TOLERANCE, atol=0):
        return f"spacing {_triple(spacing)} mm differs from {_triple(expected)} mm"
    origin, expected_origin = np.asarray(matrix)[:3, 3], np.array(reference.GetOrigin())
    if np.abs(origin - expected_origin).max() > ORIGIN_TOLERANCE * expected.min():
        return f"origin {_triple(origin)} mm differs from {_triple(expected_origin)} mm"
    if np.abs(axes / spacing - np.array(reference.GetDirection()).reshape(3, 3)).max() > DIRECTION_TOLERANCE:
        return "direction (orientation) differs"
    return None


def check_same_grid(image: sitk.Image, reference: sitk.Image, name: str, reference_name: str) -> None:
    """Refuse ``image`` (file ``name``) unless it lies on ``reference``'s grid (file ``reference_name``)."""
    if (difference := grid_difference(image.GetSize(), ijk_to_lps(image), reference)) is not None:
        raise VolumeError(f"{name}: not on the grid of {reference_name}: {difference}; resample it onto that grid "
                          "(or pair it with the right file).")
