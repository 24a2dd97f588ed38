"""The voxel grid of a result file: its index-to-LPS matrix, the check that it is the input's grid, and reading
an image file with that check.

>>> import SimpleITK as sitk
>>> image = sitk.Image(4, 3, 2, sitk.sitkUInt8); image.SetSpacing((0.5, 0.5, 2.0))
>>> ijk_to_lps(image)[:3, :3].diagonal().tolist()
[0.5, 0.5, 2.0]
>>> check_same_grid("x.nii.gz", image.GetSize(), ijk_to_lps(image), image)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.errors import OutputFileError

#: Largest difference, in mm, between two index-to-LPS matrices of the same grid (NIfTI keeps float32).
GRID_TOLERANCE_MM = 1e-3


def ijk_to_lps(image: sitk.Image) -> np.ndarray:
    """4x4 matrix from voxel index ``(i, j, k, 1)`` to LPS millimetres."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return matrix


def check_same_grid(path: str | os.PathLike, size: Sequence[int], matrix: np.ndarray, reference: sitk.Image) -> None:
    """Raise ``OutputFileError`` unless a file's grid (``size`` i, j, k and ``matrix``) is ``reference``'s."""
    if tuple(int(n) for n in size) != tuple(reference.GetSize()):
        raise OutputFileError(f"{path}: {tuple(size)} voxels, but the input volume has {reference.GetSize()}; "
                              "it belongs to another volume.")
    if not np.allclose(matrix, ijk_to_lps(reference), atol=GRID_TOLERANCE_MM):
        raise OutputFileError(f"{path}: its origin, spacing or direction differ from the input volume's; "
                              "it belongs to another volume.")


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
