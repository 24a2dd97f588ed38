"""Redraw each detected lesion's outline on the SWI image at half signal loss.

A detector places a lesion well but outlines it roughly: the UNet draws on resampled 256x256 slices and
the candidate split (:mod:`lesion_candidates`) can cut a large microbleed into pieces. The outline a rater
draws follows the dark blooming itself, so each lesion is redrawn as the voxels darker than halfway between
its darkest voxel and the local background (the full-width-at-half-maximum rule, as for lesions a rater
adds by hand in :mod:`lesion_growing`). The new outline is 6-connected to the darkest voxel and stays within
:data:`MAX_SHIFT_VOXELS` of the detected one, so the redraw moves an edge, never the lesion; a lesion it
would grow by more than :data:`MAX_GROWTH` times (a vein running through) keeps the detector's outline.

>>> array = np.full((12, 12, 12), 100, np.float32); array[5:8, 5:8, 5:8] = 10   # a dark 3x3x3 blob
>>> labels = np.zeros(array.shape, np.int32); labels[5:7, 5:8, 5:8] = 3        # detected on two slices of it
>>> int((outline_lesions(array, labels, (1.0, 1.0, 1.0)) == 3).sum())          # redrawn: the whole blob
27
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from .lesions import SIX_CONNECTED

HALF_LOSS = 0.5  # the edge: halfway from the local background down to the lesion's darkest voxel
MAX_SHIFT_VOXELS = 1  # how far (6-connected steps) the redrawn edge may move beyond the detected one
BACKGROUND_MM = 6.0  # the background is the median of the box reaching this far around the lesion ...
BACKGROUND_GAP_VOXELS = 2  # ... leaving out the lesion and this many voxels around it (its blooming)
MAX_GROWTH = 2.0  # a redraw larger than this many times the detection follows a vein: keep the detection


def _box(bounds: tuple[slice, ...], margin: np.ndarray, shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - m, 0), min(s.stop + m, n)) for s, m, n in zip(bounds, margin, shape))


def _outline(local: np.ndarray, lesion: np.ndarray, free: np.ndarray) -> np.ndarray | None:
    """Half-loss region of one lesion in its box (boolean), or None when the detection should stand."""
    seed = np.unravel_index(np.argmin(np.where(lesion, local, np.inf)), local.shape)
    around = ~ndimage.binary_dilation(lesion, SIX_CONNECTED, iterations=BACKGROUND_GAP_VOXELS)
    if not around.any():
        return None
    background = float(np.median(local[around]))
    edge = background - HALF_LOSS * (background - float(local[seed]))
    if edge <= float(local[seed]):  # not darker than its surroundings: nothing to redraw from
        return None
    reach = ndimage.binary_dilation(lesion, SIX_CONNECTED, iterations=MAX_SHIFT_VOXELS) & free
    components, _ = ndimage.label((local <= edge) & reach, structure=SIX_CONNECTED)
    region = components == components[seed]
    return None if region.sum() > MAX_GROWTH * lesion.sum() else region


def outline_lesions(array: np.ndarray, labels: np.ndarray, spacing_kji: Sequence[float]) -> np.ndarray:
    """``labels`` (``[k, j, i]``, 0 background) with each lesion redrawn at half signal loss on ``array``.

    Labels keep their values and never take another lesion's voxels; a new ``int32`` array is returned.
    """
    if array.shape != labels.shape:
        raise ValueError(f"image {array.shape} and lesion labels {labels.shape} differ in shape")
    margin = np.ceil(BACKGROUND_MM / np.asarray(spacing_kji, float)).astype(int)
    outlined = labels.astype(np.int32, copy=True)
    for value, bounds in enumerate(ndimage.find_objects(labels), start=1):
        if bounds is None:
            continue
        box = _box(bounds, margin, labels.shape)
        lesion = labels[box] == value
        target = outlined[box]  # a view: writes land in ``outlined``
        region = _outline(np.asarray(array[box], np.float32), lesion, (target == 0) | lesion)
        if region is not None:
            target[lesion] = 0
            target[region] = value
    return outlined
