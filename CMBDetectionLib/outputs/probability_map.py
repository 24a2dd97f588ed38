"""``S_prob.nii.gz`` (``cmb-detect --save-probability``): the map that was thresholded, float32 on the input grid.

With the UNet's 3D filter it holds each lesion's score inside the lesion; without it, the voxel probability.

>>> import tempfile, pathlib, numpy as np, SimpleITK as sitk
>>> reference = sitk.Image(4, 3, 2, sitk.sitkFloat32)
>>> path = write_probability_map(np.full((2, 3, 4), 0.25), reference, pathlib.Path(tempfile.mkdtemp()) / "p.nii.gz")
>>> float(read_probability_map(path, reference).max())
0.25
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.imageio.volumes import array_to_image, write_image
from CMBDetectionLib.outputs.grid import read_image_on_grid


def write_probability_map(probability: np.ndarray, reference: sitk.Image, path: str | os.PathLike) -> Path:
    """Write a ``[k, j, i]`` map of values in 0..1 as float32 on ``reference``'s grid."""
    return write_image(array_to_image(np.ascontiguousarray(probability, dtype=np.float32), reference), path)


def read_probability_map(path: str | os.PathLike, reference: sitk.Image | None = None) -> np.ndarray:
    """The ``[k, j, i]`` float32 map; with ``reference``, an ``OutputFileError`` unless it lies on that grid."""
    return sitk.GetArrayFromImage(read_image_on_grid(path, reference, sitk.sitkFloat32))
