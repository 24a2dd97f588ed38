"""``S_cmb.nii.gz``: the lesion label map on the input volume's grid.

One convention everywhere: 0 is background and voxels of lesion ``n`` hold ``n`` (the ``id`` of its row in
``S_lesions.csv``, its segment and point "CMB n"), so ``> 0`` is the binary CMB mask, as ``cmb-eval`` reads it.
Stored as uint8, or uint16 when a label exceeds 255.

>>> import tempfile, pathlib, numpy as np, SimpleITK as sitk
>>> reference = sitk.Image(4, 3, 2, sitk.sitkFloat32)
>>> labels = np.zeros((2, 3, 4), np.int32); labels[1, 2, 3] = 7
>>> path = write_lesion_mask(labels, reference, pathlib.Path(tempfile.mkdtemp()) / "S_cmb.nii.gz")
>>> int(read_lesion_mask(path, reference)[1, 2, 3]), sitk.ReadImage(str(path)).GetPixelIDTypeAsString()
(7, '8-bit unsigned integer')
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.errors import OutputFileError
from CMBDetectionLib.imageio.volumes import array_to_image, write_image
from CMBDetectionLib.outputs.grid import read_image_on_grid


def label_dtype(label_map: np.ndarray) -> type[np.unsignedinteger]:
    """The smallest unsigned type holding every label (uint8 or uint16); more than 65535 lesions is an error."""
    top = int(label_map.max(initial=0))
    if top > np.iinfo(np.uint16).max or int(label_map.min(initial=0)) < 0:
        raise ValueError(f"lesion labels must lie in 0..65535, not {int(label_map.min(initial=0))}..{top}.")
    return np.uint8 if top <= np.iinfo(np.uint8).max else np.uint16


def write_lesion_mask(label_map: np.ndarray, reference: sitk.Image, path: str | os.PathLike) -> Path:
    """Write a ``[k, j, i]`` label map on ``reference``'s grid (origin, spacing and direction kept)."""
    array = np.ascontiguousarray(label_map, dtype=label_dtype(label_map))
    return write_image(array_to_image(array, reference), path)


def read_lesion_mask(path: str | os.PathLike, reference: sitk.Image | None = None) -> np.ndarray:
    """The ``[k, j, i]`` label map; with ``reference``, an ``OutputFileError`` unless it lies on that grid."""
    image = read_image_on_grid(path, reference)
    if "integer" not in image.GetPixelIDTypeAsString():
        raise OutputFileError(f"{path}: not an integer label map; give the S_cmb.nii.gz that cmb-detect wrote.")
    return sitk.GetArrayFromImage(image)
