"""The reports' pictures, rendered headless by matplotlib's Agg canvas into PNG bytes.

Slices are shown as radiologists read them: volumes are first reoriented to LPS (array ``[k, j, i]``: superior,
posterior, left), so an axial slice has anterior at the top and the patient's right on the left of the picture,
coronal and sagittal slices have superior at the top, and each pixel keeps its physical aspect ratio. Lesions
are outlined in red with their id beside them. Figures are built on ``matplotlib.figure.Figure`` (no pyplot
state), so they render in any thread of a Dask worker. A report reorients its volume and sets its grey levels once
(:func:`prepare`) for all its pictures.

>>> import SimpleITK as sitk
>>> image = sitk.GetImageFromArray(np.random.default_rng(0).random((6, 32, 32)).astype(np.float32))
>>> labels = np.zeros((6, 32, 32), np.uint8); labels[3, 10:13, 10:13] = 1
>>> axial_montage(prepare(image, labels))[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from matplotlib.ticker import MaxNLocator
from scipy import ndimage

from CMBDetectionLib.imageio.volumes import array_to_image

DISPLAY_ORIENTATION = "LPS"
OUTLINE = "#ff3030"
LABEL_COLOUR = "#ffe14d"
ATLAS_COLOUR = "#30d0ff"
DPI = 100
MONTAGE_SLICES = 12
MONTAGE_COLUMNS = 6
PANEL_INCHES = 2.6  # a 256-pixel slice at about its own resolution
RING_PIXELS = 9
ZOOM_HALF_WIDTH_MM = 16.0


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor=figure.get_facecolor())
    return buffer.getvalue()


def display_window(values: np.ndarray) -> tuple[float, float]:
    """Grey levels from the 1st to the 99.5th percentile of the non-zero voxels (a CMB stays black, not clipped).

    >>> [round(level) for level in display_window(np.arange(201.0))]
    [3, 199]
    """
    finite = values[np.isfinite(values) & (values != 0)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, [1, 99.5])
    return float(low), float(high if high > low else low + 1)


@dataclass(frozen=True)
class Prepared:
    """A volume as its pictures show it: ``values`` and ``labels`` ``[k, j, i]`` in LPS orientation, ``spacing``
    ``(k, j, i)`` in mm, the grey-level ``window``; and the ``image`` itself, the grid an overlay is resampled to."""

    image: sitk.Image
    values: np.ndarray
    labels: np.ndarray
    spacing: np.ndarray
    window: tuple[float, float]


def prepare(image: sitk.Image, label_map: np.ndarray) -> Prepared:
    """Reorient ``image`` and its ``[k, j, i]`` label map to LPS and set the grey levels, once for all pictures."""
    image_lps = sitk.DICOMOrient(image, DISPLAY_ORIENTATION)
    values = sitk.GetArrayFromImage(image_lps).astype(np.float32)
    labels = sitk.DICOMOrient(array_to_image(label_map.astype(np.uint16), image), DISPLAY_ORIENTATION)
    return Prepared(image, values, sitk.GetArrayFromImage(labels), np.array(image_lps.GetSpacing()[::-1]),
                    display_window(values))


def _show(axis, plane: np.ndarray, labels: np.ndarray, window: tuple[float, float], aspect: float,
          upward: bool, ids: bool = True) -> None:
    """Draw one slice in grey with the lesion outlines (and ids) on ``axis``."""
    axis.imshow(plane, cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect,
                origin="lower" if upward else "upper", interpolation="nearest")
    if labels.any():
        # Without ``origin``, contour puts Z[row, column] at (column, row): imshow's pixel centres either way up.
        axis.contour(labels > 0, levels=[0.5], colors=OUTLINE, linewidths=0.9)
        if ids:  # a ring and the id make a 3-voxel lesion findable on a whole-head slice
            for label in np.unique(labels[labels > 0]):
                row, column = ndimage.center_of_mass(labels == label)
                axis.add_patch(Circle((column, row), RING_PIXELS, fill=False, edgecolor=LABEL_COLOUR, linewidth=0.7))
                axis.text(column + RING_PIXELS, row - RING_PIXELS, str(int(label)), color=LABEL_COLOUR, fontsize=8,
                          fontweight="bold")
    axis.set_axis_off()


def montage_slices(head: np.ndarray, lesion_slices: Sequence[int], count: int = MONTAGE_SLICES) -> list[int]:
    """Up to ``count`` axial slices: every slice holding a lesion centre (evenly chosen when too many), then slices
    evenly spread over the head, each time the one farthest from those taken, so the gaps close evenly.

    >>> montage_slices(np.ones((40, 2, 2), bool), [5, 6, 30], count=6)
    [5, 6, 16, 23, 30, 39]
    """
    chosen = sorted(set(lesion_slices))
    if len(chosen) > count:
        chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, count).round().astype(int)]
    occupied = np.flatnonzero(head.reshape(len(head), -1).any(axis=1))
    first, last = (occupied[0], occupied[-1]) if occupied.size else (0, len(head) - 1)
    candidates = {int(k) for k in np.linspace(first, last, count).round()}
    while len(chosen) < count and candidates:
        gap, best = max((min((abs(k - c) for c in chosen), default=len(head)), k) for k in candidates)
        if gap <= 1:
            break
        chosen.append(best)
        candidates.discard(best)
    return sorted(chosen)


def axial_montage(view: Prepared) -> bytes:
    """Axial slices through every lesion and across the head, lesions outlined and numbered."""
    values, labels, spacing, window = view.values, view.labels, view.spacing, view.window
    ids = np.unique(labels[labels > 0])
    centres = ndimage.center_of_mass(labels > 0, labels, ids) if ids.size else []
    slices = montage_slices(values > window[0], [int(round(c[0])) for c in centres])
    rows = -(-len(slices) // MONTAGE_COLUMNS)
    width_ratio = values.shape[2] * spacing[2] / (values.shape[1] * spacing[1])
    figure = Figure(figsize=(MONTAGE_COLUMNS * PANEL_INCHES * width_ratio, rows * PANEL_INCHES + 0.1),
                    facecolor="black")
    for n, k in enumerate(slices):
        axis = figure.add_subplot(rows, MONTAGE_COLUMNS, n + 1)
        _show(axis, values[k], labels[k], window, spacing[1] / spacing[2], upward=False)
        axis.set_title(f"slice {k}", color="white", fontsize=8, pad=2)
    figure.subplots_adjust(0.005, 0.005, 0.995, 0.97, 0.02, 0.1)
    return png_bytes(figure)


def _crop(plane: np.ndarray, centre: Sequence[float], half_widths: Sequence[int]) -> tuple[slice, slice]:
    return tuple(slice(max(0, int(round(c)) - h), min(size, int(round(c)) + h + 1))
                 for c, h, size in zip(centre, half_widths, plane.shape))


def lesion_views(view: Prepared, labels: Sequence[int]) -> dict[int, bytes]:
    """For each lesion id, a PNG of three zoomed planes (axial, coronal, sagittal) through its centre of mass,
    :data:`ZOOM_HALF_WIDTH_MM` around it, this lesion outlined (others too, without ids)."""
    values, oriented_labels, spacing, window = view.values, view.labels, view.spacing, view.window
    half = np.maximum(1, np.round(ZOOM_HALF_WIDTH_MM / spacing)).astype(int)
    centres = ndimage.center_of_mass(oriented_labels > 0, oriented_labels, list(labels)) if labels else []
    views = {}
    for label, (k, j, i) in zip(labels, centres):
        k, j, i = (int(round(c)) for c in (k, j, i))
        figure = Figure(figsize=(4.5, 1.6), facecolor="black")
        planes = (  # (slice, rows/columns centre, half widths, row/column spacing, superior at top)
            (np.s_[k, :, :], (j, i), (half[1], half[2]), (spacing[1], spacing[2]), False, "axial"),
            (np.s_[:, j, :], (k, i), (half[0], half[2]), (spacing[0], spacing[2]), True, "coronal"),
            (np.s_[:, :, i], (k, j), (half[0], half[1]), (spacing[0], spacing[1]), True, "sagittal"),
        )
        for n, (index, centre, widths, pixel, upward, name) in enumerate(planes):
            plane, plane_labels = values[index], oriented_labels[index]
            box = _crop(plane, centre, widths)
            axis = figure.add_subplot(1, 3, n + 1)
            _show(axis, plane[box], (plane_labels[box] == label).astype(np.uint8), window, pixel[0] / pixel[1],
                  upward, ids=False)
            axis.set_title(name, color="white", fontsize=7, pad=2)
        figure.subplots_adjust(0.01, 0.01, 0.99, 0.88, 0.05, 0.0)
        views[int(label)] = png_bytes(figure)
    return views


def registration_overlay(view: Prepared, registration) -> bytes:
    """The MNI template brain's outline carried onto the subject by ``registration`` (subject -> MNI transform),
    on the three central planes: the outline should follow the brain's edge."""
    from CMBDetectionLib.mars.atlas import load_mni_atlas

    brain = sitk.Resample(load_mni_atlas().brain, view.image, registration.transform, sitk.sitkNearestNeighbor, 0,
                          sitk.sitkUInt8)
    values, spacing, window = view.values, view.spacing, view.window
    mask = sitk.GetArrayFromImage(sitk.DICOMOrient(brain, DISPLAY_ORIENTATION))
    k, j, i = (int(round(c)) for c in (ndimage.center_of_mass(mask > 0) if mask.any() else np.array(mask.shape) / 2))
    planes = ((values[k], mask[k], spacing[1], spacing[2], False), (values[:, j], mask[:, j], spacing[0], spacing[2], True),
              (values[:, :, i], mask[:, :, i], spacing[0], spacing[1], True))
    # Panel widths in proportion to each plane's physical width over height, so all three share one height.
    ratios = [plane.shape[1] * column / (plane.shape[0] * row) for plane, _, row, column, _ in planes]
    figure = Figure(figsize=(2.6 * sum(ratios), 2.6), facecolor="black")
    grid = figure.add_gridspec(1, 3, width_ratios=ratios, wspace=0.02)
    for n, (plane, outline, row, column, upward) in enumerate(planes):
        axis = figure.add_subplot(grid[0, n])
        _show(axis, plane, np.zeros(plane.shape, np.uint8), window, row / column, upward)
        if outline.any():
            axis.contour(outline > 0, levels=[0.5], colors=ATLAS_COLOUR, linewidths=1.0)
    figure.subplots_adjust(0.005, 0.005, 0.995, 0.995, 0.02, 0.0)
    return png_bytes(figure)


def _bar_figure(width: float = 6.0, height: float = 2.8) -> tuple[Figure, object]:
    figure = Figure(figsize=(width, height))
    axis = figure.add_subplot(1, 1, 1)
    axis.spines[["top", "right"]].set_visible(False)
    return figure, axis


def count_histogram(counts: Sequence[int]) -> bytes:
    """Histogram of lesions per subject (one bar per count up to 10, then wider bins)."""
    figure, axis = _bar_figure()
    top = max(counts, default=0)
    edges = np.arange(-0.5, top + 1.5) if top <= 20 else np.linspace(-0.5, top + 0.5, 21)
    axis.hist(counts, bins=edges, color="#4a78b0", edgecolor="white")
    axis.set_xlabel("CMBs per subject")
    axis.set_ylabel("subjects")
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    return png_bytes(figure)


def region_side_bars(counts: Mapping[tuple[str, str], int], regions: Sequence[str]) -> bytes:
    """Horizontal bars: lesions of the cohort per region, left and right side by side."""
    figure, axis = _bar_figure(6.0, 0.3 * len(regions) + 0.9)
    rows = np.arange(len(regions))
    for offset, side, colour in ((-0.2, "left", "#4a78b0"), (0.2, "right", "#d9823b")):
        axis.barh(rows + offset, [counts.get((r, side), 0) for r in regions], height=0.4, color=colour, label=side)
    axis.set_yticks(rows, [r.replace("_", " ") for r in regions], fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("lesions")
    axis.legend(frameon=False, fontsize=8)
    figure.tight_layout()
    return png_bytes(figure)


def qc_scatter(points: Mapping[str, tuple[float, float]], outliers: Sequence[str]) -> bytes:
    """SNR against brain coverage per subject, outliers in red and named."""
    figure, axis = _bar_figure(6.0, 3.2)
    for name, (snr, coverage) in points.items():
        flagged = name in outliers
        axis.scatter(snr, coverage, s=18, color="#d03030" if flagged else "#4a78b0", zorder=3 if flagged else 2)
        if flagged:
            axis.annotate(name, (snr, coverage), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axis.set_xlabel("SNR")
    axis.set_ylabel("brain coverage")
    figure.tight_layout()
    return png_bytes(figure)
