"""Grow one lesion from the dark blob under a point a rater placed (the "add a lesion here" correction).

A microbleed is a small hypointense focus on SWI. Around the clicked point we take the darkest voxel within
:data:`SEARCH_RADIUS_MM` as the seed (a click is rarely on the exact centre), estimate the local background
as the median intensity of a :data:`MAX_RADIUS_MM` ball, and keep the 6-connected voxels darker than the
midpoint between seed and background, inside that ball (so a vein running through does not leak in).
A seed less than :data:`MIN_CONTRAST_SIGMAS` robust noise sigmas below the background is no blob: refused.

>>> array = np.full((20, 20, 20), 100, np.float32); array[9:12, 9:12, 9:12] = 10   # a dark 3x3x3 blob
>>> image = sitk.GetImageFromArray(array)
>>> lesion, mask = grow_lesion(image, index_to_ras(image, (10, 10, 10)), label=4)
>>> lesion.label, lesion.n_voxels, int(mask.sum())
(4, 27, 27)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from CMBDetectionLib.errors import NoLesionHere
from CMBDetectionLib.imageio.volumes import index_to_ras, ras_to_index  # noqa: F401 (index_to_ras: used in the example)
from CMBDetectionLib.lesions.extraction import lesions_from_labels
from CMBDetectionLib.results import SIX_CONNECTED, Lesion

SEARCH_RADIUS_MM = 2.0
MAX_RADIUS_MM = 6.0  # CMBs are 2-10 mm across; a 12 mm ball holds the largest
MIN_CONTRAST_SIGMAS = 5.0  # the seed must be this many noise sigmas (robust, from the ball) below the background


def _format(ras: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v):.1f}" for v in ras) + ")"


def _distances_mm(image: sitk.Image, centre_ijk: np.ndarray, radius_mm: float) -> tuple[tuple[slice, ...], np.ndarray]:
    """Bounding-box slices ``[k, j, i]`` of a ball around ``centre_ijk`` and each box voxel's distance (mm) to it."""
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    size = np.asarray(image.GetSize())
    centre = np.round(centre_ijk).astype(int)
    half = np.ceil(radius_mm / spacing).astype(int)
    lo, hi = np.clip(centre - half, 0, size - 1), np.clip(centre + half + 1, 1, size)
    box = tuple(slice(int(lo[a]), int(hi[a])) for a in (2, 1, 0))
    k, j, i = np.meshgrid(*(np.arange(s.start, s.stop) for s in box), indexing="ij")
    offsets_mm = np.stack([i - centre_ijk[0], j - centre_ijk[1], k - centre_ijk[2]], axis=-1) * spacing
    return box, np.linalg.norm(offsets_mm, axis=-1)


def grow_lesion(
    image: sitk.Image,
    centre_ras: Sequence[float],
    label: int,
    *,
    max_radius_mm: float = MAX_RADIUS_MM,
) -> tuple[Lesion, np.ndarray]:
    """Lesion grown from the dark blob at ``centre_ras``: (``Lesion`` with ``label``, ``[k, j, i]`` uint8 mask).

    The lesion's probabilities are NaN: a rater placed it, no model scored it.
    Raises :class:`NoLesionHere` when the point is outside the image or not on a dark spot.
    """
    ijk = np.asarray(ras_to_index(image, centre_ras), dtype=float)
    if np.any(ijk < -0.5) or np.any(ijk > np.asarray(image.GetSize()) - 0.5):
        raise NoLesionHere(f"point {_format(centre_ras)} (RAS mm) lies outside the volume; place it on the image.")
    array = sitk.GetArrayViewFromImage(image)
    box, distance = _distances_mm(image, ijk, max_radius_mm)
    local = np.asarray(array[box], dtype=np.float32)
    ball = distance <= max_radius_mm
    seed = np.unravel_index(np.argmin(np.where(distance <= SEARCH_RADIUS_MM, local, np.inf)), local.shape)
    background = float(np.median(local[ball]))
    noise = 1.4826 * float(np.median(np.abs(local[ball] - background)))  # MAD: robust to the lesion itself
    contrast = background - float(local[seed])
    if contrast <= 0 or contrast < MIN_CONTRAST_SIGMAS * noise:
        raise NoLesionHere(
            f"no dark spot at {_format(centre_ras)} (RAS mm): place the point on the centre of a dark blob."
        )
    dark = (local <= (local[seed] + background) / 2) & ball
    components, _ = ndimage.label(dark, structure=SIX_CONNECTED)
    blob = components == components[seed]
    mask = np.zeros(array.shape, np.uint8)
    mask[box][blob] = 1
    labels = mask.astype(np.int32) * int(label)
    lesion = lesions_from_labels(labels, np.zeros(array.shape, np.float32), image)[0]
    return dataclasses.replace(lesion, mean_probability=float("nan"), max_probability=float("nan")), mask

