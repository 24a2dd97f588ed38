"""From a native SWI volume to the UNet's 256x256 slices, and from its predictions back to the native grid.

- :func:`to_axial` reorients the volume (a pure axis permutation/flip, so it is exact and invertible) so that
  array slices ``[k]`` are axial; :func:`from_axial` undoes it.
- :func:`normalise_intensity` maps robust percentiles measured inside the head to 0..1, because scanners
  scale SWI magnitudes differently.
- :class:`SliceGrid` resamples each axial slice to 256x256 with square pixels, keeping the physical aspect
  ratio (zero padding on the short side), and maps model outputs back with the exact inverse transform.
- :func:`model_slices` chains the three: a volume to the normalised 256x256 slices the UNet sees.

>>> grid = SliceGrid.for_slices((180, 200), (1.0, 1.0))
>>> grid.to_model(np.ones((2, 180, 200), np.float32)).shape
(2, 256, 256)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from skimage.filters import threshold_otsu

MODEL_SIZE = 256
AXIAL_ORIENTATION = "LPS"  # i -> left, j -> posterior, k -> superior: rows run anterior to posterior
LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.0


def orientation_of(image: sitk.Image) -> str:
    """Three-letter DICOM orientation code of ``image``'s axes (e.g. ``"LPS"``)."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def to_axial(image: sitk.Image) -> sitk.Image:
    """Permute/flip axes so that ``k`` runs inferior to superior (axial slices); voxel values unchanged."""
    return sitk.DICOMOrient(image, AXIAL_ORIENTATION)


def from_axial(image: sitk.Image, orientation: str) -> sitk.Image:
    """Inverse of :func:`to_axial` given the original orientation code."""
    return sitk.DICOMOrient(image, orientation)


def head_mask(array: np.ndarray) -> np.ndarray:
    """Voxels brighter than the Otsu threshold: the head, not the air around it."""
    finite = array[np.isfinite(array)]
    if finite.min() == finite.max():
        return np.ones(array.shape, dtype=bool)
    return array > threshold_otsu(finite[:: max(1, finite.size // 2_000_000)])


def normalise_intensity(array: np.ndarray) -> np.ndarray:
    """Scale so the 1st..99th percentile inside the head spans 0..1 (clipped to [0, 1.5]); float32.

    >>> a = np.zeros((4, 32, 32), np.float32); a[:, 8:24, 8:24] = np.linspace(100, 300, 16)
    >>> n = normalise_intensity(a); float(n.min()), round(float(n.max()), 2)
    (0.0, 1.0)
    """
    inside = array[head_mask(array)]
    low, high = np.percentile(inside, [LOW_PERCENTILE, HIGH_PERCENTILE])
    scale = high - low if high > low else 1.0
    out = (array.astype(np.float32) - np.float32(low)) / np.float32(scale)
    # Air maps below zero; clipping it to 0 also makes it equal to the resampling padding.
    return np.clip(out, 0.0, 1.5, out=out)


@dataclass(frozen=True)
class SliceGrid:
    """Axis-aligned map between a native slice ``(rows, cols)`` and the square model grid.

    ``zoom`` is native pixels per model pixel along (rows, cols); ``offset`` the native position of model
    pixel (0, 0). Native centre and model centre coincide.
    """

    native_shape: tuple[int, int]
    zoom: tuple[float, float]
    offset: tuple[float, float]
    size: int = MODEL_SIZE

    @classmethod
    def for_slices(cls, shape: tuple[int, int], spacing: tuple[float, float], size: int = MODEL_SIZE) -> "SliceGrid":
        """Grid for slices of ``shape`` (rows, cols) with pixel ``spacing`` (row, col) in mm."""
        extent = max(n * s for n, s in zip(shape, spacing))
        pixel_mm = extent / size  # square model pixels covering the longer physical side
        zoom = tuple(pixel_mm / s for s in spacing)
        offset = tuple((n - 1) / 2.0 - z * (size - 1) / 2.0 for n, z in zip(shape, zoom))
        return cls(tuple(shape), zoom, offset, size)

    @classmethod
    def for_image(cls, image: sitk.Image, size: int = MODEL_SIZE) -> "SliceGrid":
        """Grid for the axial slices of an image already passed through :func:`to_axial`."""
        nx, ny, _ = image.GetSize()
        sx, sy, _ = image.GetSpacing()
        return cls.for_slices((ny, nx), (sy, sx), size)

    def to_model(self, slices: np.ndarray, order: int = 1) -> np.ndarray:
        """``(n, rows, cols)`` native slices -> ``(n, size, size)``; outside the slice is 0."""
        # One edge-replicated pixel around the slice: model pixels whose centres fall within the native
        # field of view but past the outermost native pixel centre still take that pixel's value.
        padded = np.pad(slices, ((0, 0), (1, 1), (1, 1)), mode="edge")
        return ndimage.affine_transform(
            padded, (1.0, *self.zoom), offset=(0.0, *(o + 1.0 for o in self.offset)),
            output_shape=(len(slices), self.size, self.size), order=order, mode="constant", cval=0.0, prefilter=False,
        ).astype(slices.dtype, copy=False)

    def to_native(self, slices: np.ndarray, order: int = 1) -> np.ndarray:
        """``(n, size, size)`` model outputs -> ``(n, rows, cols)`` on the native grid (inverse transform)."""
        inverse = tuple(1.0 / z for z in self.zoom)
        offset = tuple(-o / z for o, z in zip(self.offset, self.zoom))
        return ndimage.affine_transform(
            slices, (1.0, *inverse), offset=(0.0, *offset), output_shape=(len(slices), *self.native_shape),
            order=order, mode="nearest", prefilter=False,
        ).astype(slices.dtype, copy=False)


def model_slices(image: sitk.Image) -> np.ndarray:
    """All axial slices of ``image``, normalised, on the model grid: ``(n, 256, 256)`` float32 (what the UNet sees)."""
    axial = to_axial(image)
    return SliceGrid.for_image(axial).to_model(normalise_intensity(sitk.GetArrayViewFromImage(axial)))
