"""Redraw each detected lesion's outline on the SWI image at half signal loss.

A detector places a lesion well but outlines it roughly: the UNet draws on resampled 256x256 slices and
the candidate split (:mod:`lesion_candidates`) can cut a large microbleed into pieces. The outline a rater
draws follows the dark blooming itself, so each lesion is redrawn as the voxels darker than halfway between
its darkest voxel and the local background (the full-width-at-half-maximum rule, as for lesions a rater
adds by hand in :mod:`lesion_growing`). The new outline is 6-connected to the darkest voxel and stays within
:data:`MAX_SHIFT_VOXELS` of the detected one, so the redraw moves an edge, never the lesion; a lesion it
would grow by more than :data:`MAX_GROWTH` times keeps the detector's outline.

An outline that runs on is also evidence: a microbleed's edge moves by a voxel, a vein's runs along the
tube. A lesion whose outline would grow more than :data:`VEIN_GROWTH` times while the detector's score is
below :data:`VEIN_MAX_SCORE` is a vein segment (:func:`vein_like`; the pipeline drops it). Both values were
chosen on 120 phantoms never used for training (seeds 5000-5119); on them, at lesion-score threshold 0.05,
this removed 34 of 120 false positives and 1 of 426 true detections.

>>> array = np.full((12, 12, 12), 100, np.float32); array[5:8, 5:8, 5:8] = 10   # a dark 3x3x3 blob
>>> labels = np.zeros(array.shape, np.int32); labels[5:7, 5:8, 5:8] = 3        # detected on two slices of it
>>> outlined, growth = outline_lesions(array, labels, (1.0, 1.0, 1.0))
>>> int((outlined == 3).sum()), float(growth[2])                                 # redrawn: the whole blob
(27, 1.5)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from CMBDetectionLib.results import SIX_CONNECTED

HALF_LOSS = 0.5  # the edge: halfway from the local background down to the lesion's darkest voxel
MAX_SHIFT_VOXELS = 1  # how far (6-connected steps) the redrawn edge may move beyond the detected one
BACKGROUND_MM = 6.0  # the background is the median of the box reaching this far around the lesion ...
BACKGROUND_GAP_VOXELS = 2  # ... leaving out the lesion and this many voxels around it (its blooming)
MAX_GROWTH = 3.0  # a redraw larger than this many times the detection follows a vein: keep the detection
VEIN_GROWTH = 2.0  # an outline growing more than this many times runs along a vein ...
VEIN_MAX_SCORE = 0.2  # ... and, where the detector's score is below this, the lesion is taken for one


def lesion_box(bounds: tuple[slice, ...], spacing_kji: Sequence[float], shape: Sequence[int]) -> tuple[slice, ...]:
    """``bounds`` (a lesion's bounding box) widened by :data:`BACKGROUND_MM` on every side, within ``shape``."""
    margin = np.ceil(BACKGROUND_MM / np.asarray(spacing_kji, float)).astype(int)
    return tuple(slice(max(s.start - m, 0), min(s.stop + m, n)) for s, m, n in zip(bounds, margin, shape))


def half_loss_region(local: np.ndarray, lesion: np.ndarray, free: np.ndarray) -> np.ndarray | None:
    """The half-loss outline of ``lesion`` in its box ``local`` (boolean, within ``free``), or None when the
    lesion is not darker than its surroundings."""
    seed = np.unravel_index(np.argmin(np.where(lesion, local, np.inf)), local.shape)
    around = ~ndimage.binary_dilation(lesion, SIX_CONNECTED, iterations=BACKGROUND_GAP_VOXELS)
    if not around.any():
        return None
    background = float(np.median(local[around]))
    edge = background - HALF_LOSS * (background - float(local[seed]))
    if edge <= float(local[seed]):
        return None
    reach = ndimage.binary_dilation(lesion, SIX_CONNECTED, iterations=MAX_SHIFT_VOXELS) & free
    components, _ = ndimage.label((local <= edge) & reach, structure=SIX_CONNECTED)
    return components == components[seed]


def outline_lesions(
    array: np.ndarray, labels: np.ndarray, spacing_kji: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` (``[k, j, i]``, 0 background) with each lesion redrawn at half signal loss on ``array``, and
    each label's growth (``growth[label - 1]``: outline size over detection size; 1 where there is none).

    Labels keep their values and never take another lesion's voxels; a new ``int32`` array is returned.
    """
    if array.shape != labels.shape:
        raise ValueError(f"image {array.shape} and lesion labels {labels.shape} differ in shape")
    outlined = labels.astype(np.int32, copy=True)
    bounding_boxes = ndimage.find_objects(labels)
    growth = np.ones(len(bounding_boxes))
    for value, bounds in enumerate(bounding_boxes, start=1):
        if bounds is None:
            continue
        box = lesion_box(bounds, spacing_kji, labels.shape)
        lesion = labels[box] == value
        target = outlined[box]  # a view: writes land in ``outlined``
        region = half_loss_region(np.asarray(array[box], np.float32), lesion, (target == 0) | lesion)
        if region is None:
            continue
        growth[value - 1] = region.sum() / lesion.sum()
        if growth[value - 1] <= MAX_GROWTH:
            target[lesion] = 0
            target[region] = value
    return outlined, growth


def vein_like(growth: np.ndarray, scores: np.ndarray) -> list[int]:
    """Labels (1..n) of the lesions taken for vein segments: an outline growing more than :data:`VEIN_GROWTH`
    times (``growth`` from :func:`outline_lesions`) on a detector score below :data:`VEIN_MAX_SCORE`
    (``scores[label - 1]``, the lesion's maximum).

    >>> vein_like(np.array([1.2, 2.5, 2.5]), np.array([0.1, 0.9, 0.1]))
    [3]
    """
    return [int(label) for label in np.flatnonzero((growth > VEIN_GROWTH) & (scores < VEIN_MAX_SCORE)) + 1]
