"""From a native SWI volume to the UNet's 256x256 slices, and from its predictions back to the native grid.

- :func:`to_axial` reorients the volume (a pure axis permutation/flip, so it is exact and invertible) so that
  array slices ``[k]`` are axial; :func:`from_axial` undoes it.
- :func:`normalise_intensity` maps robust percentiles measured inside the head to 0..1, because scanners
  scale SWI magnitudes differently.
- :class:`SliceGrid` resamples each axial slice to square pixels of the model's training pixel size (0.9 mm
  for the shipped UNet, ``pixel_mm`` in a model card), not to a size set by the field of view: a 2 mm CMB
  then covers as many model pixels as in training, on a 0.45 mm or a 1.2 mm scan alike. The 256x256 window
  is centred on the field of view when that fits (zero padding around it), else on the head (air cropped);
  a head wider than the window is cut into overlapping 256x256 tiles. Model outputs are mapped back with
  the exact inverse transform. A 256x256 slice at 0.9 mm is passed through unchanged.
- :func:`model_slices` chains the three: a volume to the normalised 256x256 slices the UNet sees.

>>> grid = SliceGrid.for_slices((180, 200), (1.0, 1.0))   # 180 x 200 mm: 200 x 222 model pixels, padded
>>> grid.zoom, grid.to_model(np.ones((2, 180, 200), np.float32)).shape
((0.9, 0.9), (2, 256, 256))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from skimage.filters import threshold_otsu

from CMBDetectionLib.probability.unet.model_input import DEFAULT_PIXEL_MM, MODEL_SIZE

# Zooms this close to 1 keep native pixels: under a tenth of a pixel's drift across the 256-pixel window.
SAME_PIXEL_TOLERANCE = 4e-4
HEAD_PROFILE_FRACTION = 0.01
HEAD_MARGIN_PIXELS = 4  # air kept around the head when the field of view is cropped
TILE_OVERLAP = 64  # model pixels shared by neighbouring tiles: more than the UNet's context reaches past a core
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


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu threshold of the finite ``values``, from an even subsample of about 2 million (the histogram barely
    changes, and it is many times faster on a large volume).

    >>> air_and_head = np.r_[np.full(50, 2.0), np.full(50, 10.0), np.nan]
    >>> 2.0 <= otsu_threshold(air_and_head) < 10.0
    True
    """
    finite = values[np.isfinite(values)]
    return float(threshold_otsu(finite[:: max(1, finite.size // 2_000_000)]))


def brighter_than_air(array: np.ndarray) -> np.ndarray:
    """Voxels brighter than the Otsu threshold: the head, not the air around it (all voxels of a constant array).

    Voxel by voxel, without hole filling or component selection; the two-stage method's
    :func:`~CMBDetectionLib.probability.two_stage.brain_mask.head_mask` adds both to this.
    """
    finite = array[np.isfinite(array)]
    if finite.min() == finite.max():
        return np.ones(array.shape, dtype=bool)
    return array > otsu_threshold(finite)


def normalise_intensity(array: np.ndarray) -> np.ndarray:
    """Scale so the 1st..99th percentile inside the head spans 0..1 (clipped to [0, 1.5]); float32.

    >>> a = np.zeros((4, 32, 32), np.float32); a[:, 8:24, 8:24] = np.linspace(100, 300, 16)
    >>> n = normalise_intensity(a); float(n.min()), round(float(n.max()), 2)
    (0.0, 1.0)
    """
    inside = array[brighter_than_air(array)]
    low, high = np.percentile(inside, [LOW_PERCENTILE, HIGH_PERCENTILE])
    scale = high - low if high > low else 1.0
    out = (array.astype(np.float32) - np.float32(low)) / np.float32(scale)
    # Air maps below zero; clipping it to 0 also makes it equal to the resampling padding.
    return np.clip(out, 0.0, 1.5, out=out)


@dataclass(frozen=True)
class SliceGrid:
    """Axis-aligned map between a native slice ``(rows, cols)`` and the model plane, at a fixed pixel size.

    The plane has square pixels of the model's training pixel size (``pixel_mm``), so a CMB covers as many
    model pixels as in training whatever the scan's resolution. It is ``size`` x ``size`` (the ONNX model's
    input) unless the head is wider than that, when it covers the head and is cut into overlapping tiles.
    ``zoom`` is native pixels per model pixel along (rows, cols); ``offset`` the native position of plane
    pixel (0, 0); ``plane_shape`` the plane's (rows, cols).

    >>> grid = SliceGrid.for_slices((512, 512), (0.45, 0.45))   # 230 mm at 0.9 mm: one 256x256 window
    >>> grid.zoom, grid.plane_shape, len(grid.tile_origins)
    ((2.0, 2.0), (256, 256), 1)
    """

    native_shape: tuple[int, int]
    zoom: tuple[float, float]
    offset: tuple[float, float]
    plane_shape: tuple[int, int] = (MODEL_SIZE, MODEL_SIZE)
    size: int = MODEL_SIZE

    @classmethod
    def for_slices(
        cls,
        shape: tuple[int, int],
        spacing: tuple[float, float],
        pixel_mm: float = DEFAULT_PIXEL_MM,
        head: tuple[tuple[int, int], tuple[int, int]] | None = None,
        size: int = MODEL_SIZE,
    ) -> SliceGrid:
        """Grid for slices of ``shape`` (rows, cols) with pixel ``spacing`` (row, col) in mm.

        ``head`` gives the first and last native row and column of the head; the window is centred on it
        along an axis where the field of view is wider than the window (else on the field of view).
        """
        axes = [_axis_window(n, s, pixel_mm, size, None if head is None else head[a])
                for a, (n, s) in enumerate(zip(shape, spacing))]
        return cls(tuple(shape), tuple(a[0] for a in axes), tuple(a[1] for a in axes), tuple(a[2] for a in axes), size)

    @classmethod
    def for_image(cls, image: sitk.Image, pixel_mm: float = DEFAULT_PIXEL_MM, size: int = MODEL_SIZE) -> SliceGrid:
        """Grid for the axial slices of an image already passed through :func:`to_axial`."""
        nx, ny, _ = image.GetSize()
        sx, sy, _ = image.GetSpacing()
        wider = max(nx * sx, ny * sy) > size * pixel_mm  # only then does the head's position matter
        head = head_extent(sitk.GetArrayViewFromImage(image)) if wider else None
        return cls.for_slices((ny, nx), (sy, sx), pixel_mm, head, size)

    @property
    def tile_origins(self) -> list[tuple[int, int]]:
        """Top-left plane pixel of each ``size`` x ``size`` tile, row by row (one tile for a plane of ``size``)."""
        return [(r, c) for r in _tile_starts(self.plane_shape[0], self.size)
                for c in _tile_starts(self.plane_shape[1], self.size)]

    def to_model(self, slices: np.ndarray, order: int = 1) -> np.ndarray:
        """``(n, rows, cols)`` native slices -> ``(n, *plane_shape)``; outside the slice is 0."""
        # One edge-replicated pixel around the slice: model pixels whose centres fall within the native
        # field of view but past the outermost native pixel centre still take that pixel's value.
        padded = np.pad(slices, ((0, 0), (1, 1), (1, 1)), mode="edge")
        return ndimage.affine_transform(
            padded, (1.0, *self.zoom), offset=(0.0, *(o + 1.0 for o in self.offset)),
            output_shape=(len(slices), *self.plane_shape), order=order, mode="constant", cval=0.0, prefilter=False,
        ).astype(slices.dtype, copy=False)

    def to_native(self, planes: np.ndarray, order: int = 1) -> np.ndarray:
        """``(n, *plane_shape)`` model outputs -> ``(n, rows, cols)`` on the native grid (inverse transform);
        native pixels the window cropped away get 0."""
        padded = np.pad(planes, ((0, 0), (1, 1), (1, 1)), mode="edge")  # as in to_model: the window's fringe
        inverse = tuple(1.0 / z for z in self.zoom)
        offset = tuple(1.0 - o / z for o, z in zip(self.offset, self.zoom))
        return ndimage.affine_transform(
            padded, (1.0, *inverse), offset=(0.0, *offset), output_shape=(len(planes), *self.native_shape),
            order=order, mode="constant", cval=0.0, prefilter=False,
        ).astype(planes.dtype, copy=False)

    def cut(self, planes: np.ndarray) -> np.ndarray:
        """``(n, *plane_shape)`` -> ``(n * n_tiles, size, size)`` tiles, slice by slice (the planes when one tile)."""
        if self.plane_shape == (self.size, self.size):
            return planes
        tiles = [planes[:, r : r + self.size, c : c + self.size] for r, c in self.tile_origins]
        return np.stack(tiles, axis=1).reshape(-1, self.size, self.size)

    def stitch(self, tiles: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`cut`: each plane pixel from the tile whose centre is nearest along each axis."""
        if self.plane_shape == (self.size, self.size):
            return tiles
        origins = self.tile_origins
        tiles = tiles.reshape(-1, len(origins), self.size, self.size)
        planes = np.zeros((len(tiles), *self.plane_shape), tiles.dtype)
        rows, cols = (_tile_cores(length, self.size) for length in self.plane_shape)
        for t, (r, c) in enumerate(origins):
            (r0, r1), (c0, c1) = rows[r], cols[c]
            planes[:, r0:r1, c0:c1] = tiles[:, t, r0 - r : r1 - r, c0 - c : c1 - c]
        return planes


def head_extent(volume: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """First and last row and column ``[j, i]`` of the head over all slices of a ``[k, j, i]`` volume.

    Rows or columns holding under 1 % of the fullest one's head voxels are taken for noise above the Otsu
    level, not head.

    >>> v = np.zeros((2, 40, 50), np.float32); v[:, 5:30, 10:45] = 1.0
    >>> head_extent(v)
    ((5, 29), (10, 44))
    """
    mask = brighter_than_air(volume)
    spans = []
    for profile in (mask.sum(axis=(0, 2)), mask.sum(axis=(0, 1))):
        kept = np.flatnonzero(profile >= HEAD_PROFILE_FRACTION * profile.max())
        spans.append((int(kept[0]), int(kept[-1])))
    return spans[0], spans[1]


def _axis_window(n: int, spacing: float, pixel_mm: float, size: int, head: tuple[int, int] | None) -> tuple[float, float, int]:
    """(zoom, offset, plane length) along one axis of ``n`` native pixels (see :class:`SliceGrid`)."""
    zoom = pixel_mm / spacing
    if abs(zoom - 1.0) < SAME_PIXEL_TOLERANCE:  # e.g. 0.9 mm stored as float32: keep the pixels as they are
        zoom = 1.0
    half_window = zoom * (size - 1) / 2.0
    if head is None or n <= zoom * size:  # the whole field of view fits: centred, nothing cropped
        length, centre = size, (n - 1) / 2.0
    else:
        length = max(size, int(np.ceil((head[1] - head[0] + 1) / zoom)) + 2 * HEAD_MARGIN_PIXELS)
        centre = (head[0] + head[1]) / 2.0
        if length == size:  # keep the window inside the field of view: the head still fits
            centre = min(max(centre, half_window - 0.5), n - 0.5 - half_window)
    offset = centre - zoom * (length - 1) / 2.0
    if zoom == 1.0:
        offset = float(np.floor(offset + 0.5))  # whole-pixel shift: native pixels copied, not interpolated
    return zoom, offset, length


def _tile_starts(length: int, size: int) -> list[int]:
    """Evenly spaced tile starts covering ``length`` with tiles of ``size`` overlapping by at least TILE_OVERLAP."""
    if length <= size:
        return [0]
    count = int(np.ceil((length - TILE_OVERLAP) / (size - TILE_OVERLAP)))
    return [int(round(v)) for v in np.linspace(0, length - size, count)]


def _tile_cores(length: int, size: int) -> dict[int, tuple[int, int]]:
    """Per tile start, the plane range it is used for: overlaps split halfway, away from tile borders."""
    starts = _tile_starts(length, size)
    bounds = [0] + [(a + size + b) // 2 for a, b in zip(starts, starts[1:])] + [length]
    return {start: (bounds[t], bounds[t + 1]) for t, start in enumerate(starts)}


def model_slices(image: sitk.Image, pixel_mm: float = DEFAULT_PIXEL_MM) -> np.ndarray:
    """All axial slices of ``image``, normalised, as the UNet sees them: ``(n * n_tiles, 256, 256)`` float32."""
    axial = to_axial(image)
    grid = SliceGrid.for_image(axial, pixel_mm)
    return grid.cut(grid.to_model(normalise_intensity(sitk.GetArrayViewFromImage(axial))))
