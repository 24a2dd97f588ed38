"""Can this volume hold a CMB the model can find? Layout, grid and voxel-value checks on an SWI input.

Refused (:class:`VolumeError`): not a 3D scalar volume; a matrix too small to hold a CMB with the tissue around
it that the model compares it with (fewer than :data:`MIN_IN_PLANE` voxels or :data:`MIN_IN_PLANE_MM` mm along
either in-plane axis, or fewer than :data:`MIN_SLICES` slices); a blank volume; more than
:data:`MAX_NONFINITE_FRACTION` of the voxels NaN or infinite (a damaged file or a wrong data type).
Warned (logged, the run goes on): voxels more anisotropic than the model was made for (slices over
:data:`MAX_SLICE_RATIO` times thicker than the pixels the model sees, which are never finer than its training
pixel size since slices are resampled to it; or pixels over :data:`MAX_PIXEL_MM` mm: small CMBs get lost);
a few NaN or infinite voxels, counted and replaced by the median finite value (neutral tissue, never dark
like a CMB).

>>> check_grid((8, 8, 4), (1.0, 1.0, 1.0), "tiny.nii.gz")
Traceback (most recent call last):
...
CMBDetectionLib.errors.VolumeError: tiny.nii.gz: the matrix 8 x 8 x 4 (8.0 x 8.0 mm in-plane) is too small to hold a CMB
with tissue around it; at least 16 x 16 voxels and 16 mm in-plane and 3 slices are needed. Give the whole SWI volume,
not a crop.
>>> anisotropy_warning((0.4, 0.4, 5.0))
'voxels 0.40 x 0.40 x 5.00 mm: slices 5.6 times thicker than the 0.90 mm pixels the model sees (it supports up to 4);
small CMBs may be missed. Reconstruct thinner slices if the scanner allows.'
"""

from __future__ import annotations

import logging

import numpy as np

from CMBDetectionLib.errors import VolumeError
from CMBDetectionLib.probability.unet.model_input import DEFAULT_PIXEL_MM

log = logging.getLogger(__name__)

MIN_IN_PLANE = 16  # voxels: a 10 mm CMB at 0.5 mm pixels with a ring of tissue around it
MIN_IN_PLANE_MM = 16.0
MIN_SLICES = 3  # a CMB appears on neighbouring slices; the 3D filter looks one slice up and down
MAX_SLICE_RATIO = 4.0  # trained on 0.9 x 0.9 x 2 mm phantoms (ratio 2.2); clinical SWI up to 0.5 x 0.5 x 2
MAX_PIXEL_MM = 1.5  # a 2 mm CMB covers under 2 pixels beyond this
MAX_NONFINITE_FRACTION = 0.01


def check_layout(dimension: int, components: int, name: str) -> None:
    """Refuse anything but a 3D volume of one component per voxel."""
    if components != 1:
        raise VolumeError(f"{name}: has {components} components per voxel (vector or colour image); "
                          "an SWI magnitude volume has one. Export the magnitude/SWI image alone.")
    if dimension != 3:
        raise VolumeError(f"{name}: is a {dimension}D image; a 3D volume is needed. "
                          + ("Pick a single echo or time point." if dimension > 3 else "Provide the whole 3D stack of slices."))


def _slice_axis(spacing: tuple[float, ...], size: tuple[int, ...]) -> int:
    """The axis across slices: the thickest voxels; among equal ones, the fewest voxels."""
    return max(range(3), key=lambda axis: (round(spacing[axis], 3), -size[axis]))


def check_grid(size: tuple[int, ...], spacing: tuple[float, ...], name: str) -> None:
    """Refuse a matrix too small to hold a CMB; warn (log) about voxels the model was not made for."""
    axis = _slice_axis(spacing, size)
    plane = [a for a in range(3) if a != axis]
    extent = [size[a] * spacing[a] for a in plane]
    if min(size[a] for a in plane) < MIN_IN_PLANE or min(extent) < MIN_IN_PLANE_MM or size[axis] < MIN_SLICES:
        raise VolumeError(
            f"{name}: the matrix {' x '.join(map(str, size))} ({extent[0]:.1f} x {extent[1]:.1f} mm in-plane) is too "
            f"small to hold a CMB with tissue around it; at least {MIN_IN_PLANE} x {MIN_IN_PLANE} voxels and "
            f"{MIN_IN_PLANE_MM:.0f} mm in-plane and {MIN_SLICES} slices are needed. Give the whole SWI volume, not a crop.")
    if (warning := anisotropy_warning(spacing)) is not None:
        log.warning("%s: %s", name, warning)


def anisotropy_warning(spacing: tuple[float, ...]) -> str | None:
    """What to tell the user about voxels more anisotropic or coarser than the model supports, else None.

    >>> anisotropy_warning((0.9, 0.9, 2.0)) is None, anisotropy_warning((0.45, 0.45, 2.0)) is None
    (True, True)
    """
    thickest = max(spacing)
    pixel = max(sorted(spacing)[:2])
    seen_pixel = max(min(spacing), DEFAULT_PIXEL_MM)  # slices are resampled to the model's pixel size, never finer
    ratio = thickest / seen_pixel
    voxels = " x ".join(f"{s:.2f}" for s in spacing)
    if ratio > MAX_SLICE_RATIO:
        return (f"voxels {voxels} mm: slices {ratio:.1f} times thicker than the {seen_pixel:.2f} mm pixels the model "
                f"sees (it supports up to {MAX_SLICE_RATIO:.0f}); small CMBs may be missed. Reconstruct thinner slices "
                "if the scanner allows.")
    if pixel > MAX_PIXEL_MM:
        return (f"voxels {voxels} mm: pixels over {MAX_PIXEL_MM} mm (the model supports up to {MAX_PIXEL_MM}); "
                "CMBs under 3 mm may be missed.")
    return None


def finite_values(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` with a few NaN/Inf voxels (counted in a warning) set to the median finite value.

    Refuses a blank volume and one with over :data:`MAX_NONFINITE_FRACTION` non-finite voxels.

    >>> a = np.arange(100, dtype=np.float32); a[5] = np.nan
    >>> float(finite_values(a, "v")[5])
    50.0
    """
    finite = np.isfinite(array)
    n_bad = int(finite.size - np.count_nonzero(finite))
    if n_bad > MAX_NONFINITE_FRACTION * finite.size:
        raise VolumeError(f"{name}: {n_bad} of {finite.size} voxels are NaN or infinite; the file is damaged or its "
                          "data type is wrong. Export the SWI volume again.")
    values = array[finite] if n_bad else array
    if values.min() == values.max():
        raise VolumeError(f"{name}: every voxel has the same value ({values.min()}); the volume is empty or blank.")
    if not n_bad:
        return array
    log.warning("%s: %d NaN or infinite voxel(s), set to the median value %g.", name, n_bad, float(np.median(values)))
    return np.where(finite, array, np.median(values)).astype(array.dtype)
