"""The voxel grid of a result file: the check that it is the input's grid (:mod:`imageio.geometry`'s comparison),
and reading an image file with that check.

>>> image = sitk.Image(4, 3, 2, sitk.sitkUInt8); image.SetSpacing((0.5, 0.5, 2.0))
>>> check_same_grid("x.nii.gz", image.GetSize(), ijk_to_lps(image), image)
>>> check_same_grid("x.nii.gz", (4, 3, 3), ijk_to_lps(image), image)
Traceback (most recent call last):
...
CMBDetectionLib.errors.OutputFileError: x.nii.gz: not on the input volume's grid (size (4, 3, 3) differs from (4, 3, 2));
it belongs to another volume.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.errors import OutputFileError
from CMBDetectionLib.imageio.geometry import grid_difference, ijk_to_lps


def check_same_grid(path: str | os.PathLike, size: Sequence[int], matrix: np.ndarray, reference: sitk.Image) -> None:
    """Raise ``OutputFileError`` unless a file's grid (``size`` i, j, k and its index-to-LPS ``matrix``) is
    ``reference``'s."""
    if (difference := grid_difference(size, matrix, reference)) is not None:
        raise OutputFileError(f"{path}: not on the input volume's grid ({difference}); it belongs to another volume.")


def read_image_on_grid(path: str | os.PathLike, reference: sitk.Image | None,
                       pixel_type: int = sitk.sitkUnknown) -> sitk.Image:
    """Read a 3D scalar image (cast to ``pixel_type`` unless unknown), checked against ``reference``'s grid if given."""
    try:
        image = sitk.ReadImage(str(path), pixel_type)
    except RuntimeError:
        raise OutputFileError(f"{path}: missing or not a readable image; write it again.") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise OutputFileError(f"{path}: not a 3D image of one value per voxel; write it again.")
    if reference is not None:
        check_same_grid(path, image.GetSize(), ijk_to_lps(image), reference)
    return image
