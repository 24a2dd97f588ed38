"""Do two images share one grid? Size, spacing, origin and direction compared within a tolerance.

``cmb-eval`` compares a prediction with its ground truth voxel by voxel, and ``cmb-train`` a mask with its
volume: both are meaningful only on one grid. A mask of the same size but shifted or rescaled (50 mm off, other
spacing) would score or train silently wrong, so it is refused, saying what differs.

>>> import SimpleITK as sitk
>>> a, b = sitk.Image(20, 20, 4, sitk.sitkUInt8), sitk.Image(20, 20, 4, sitk.sitkUInt8)
>>> b.SetOrigin((50.0, 0.0, 0.0))
>>> grid_difference(b, a)
'origin (50.00, 0.00, 0.00) mm differs from (0.00, 0.00, 0.00) mm'
>>> grid_difference(a, a) is None
True
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.errors import VolumeError

SPACING_TOLERANCE = 1e-3  # relative: files store spacing as float32
ORIGIN_TOLERANCE = 0.01  # of the smallest voxel size; a real misregistration is a voxel or more
DIRECTION_TOLERANCE = 1e-3  # per cosine


def _triple(values) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")"


def grid_difference(image: sitk.Image, reference: sitk.Image) -> str | None:
    """How ``image``'s grid differs from ``reference``'s (the first difference found), or None when they agree."""
    if image.GetSize() != reference.GetSize():
        return f"size {image.GetSize()} differs from {reference.GetSize()}"
    spacing, expected = np.array(image.GetSpacing()), np.array(reference.GetSpacing())
    if not np.allclose(spacing, expected, rtol=SPACING_TOLERANCE, atol=0):
        return f"spacing {_triple(spacing)} mm differs from {_triple(expected)} mm"
    origin, expected_origin = np.array(image.GetOrigin()), np.array(reference.GetOrigin())
    if np.abs(origin - expected_origin).max() > ORIGIN_TOLERANCE * expected.min():
        return f"origin {_triple(origin)} mm differs from {_triple(expected_origin)} mm"
    if np.abs(np.subtract(image.GetDirection(), reference.GetDirection())).max() > DIRECTION_TOLERANCE:
        return "direction (orientation) differs"
    return None


def check_same_grid(image: sitk.Image, reference: sitk.Image, name: str, reference_name: str) -> None:
    """Refuse ``image`` (file ``name``) unless it lies on ``reference``'s grid (file ``reference_name``)."""
    if (difference := grid_difference(image, reference)) is not None:
        raise VolumeError(f"{name}: not on the grid of {reference_name}: {difference}; resample it onto that grid "
                          "(or pair it with the right file).")
