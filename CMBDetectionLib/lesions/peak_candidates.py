"""Lesion candidates from a UNet probability map: every local peak, down to a low floor, with its own region.

The 2D UNet gives small microbleeds only a faint response (a dark dot on one slice looks like a vein cut
across), so thresholding its map high misses them and thresholding it low merges them with neighbouring vein
responses. Instead each local maximum above :data:`PEAK_FLOOR` seeds a watershed basin of the probability
map, and a candidate is the part of its basin at or above half its peak (at most
:data:`FULL_MEMBERSHIP`): a faint candidate keeps the size of the dot it was seeded on, a confident one the
UNet's own 0.5 outline. :mod:`lesion_features` then describes each candidate in 3D and :mod:`lesion_filter`
scores it.

>>> p = np.zeros((5, 20, 20), np.float32); p[2, 4:7, 4:7] = 0.9; p[2, 14, 14] = 0.02
>>> labels, peaks = find_peak_candidates(p)
>>> int(labels.max()), sorted(int((labels == i).sum()) for i in (1, 2))
(2, [1, 9])
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.morphology import local_maxima
from skimage.segmentation import watershed

PEAK_FLOOR = 0.005  # every held-out phantom CMB peaks above it; the classifier sorts out the rest
FULL_MEMBERSHIP = 0.5  # a voxel at or above this probability belongs to its candidate whatever the peak


def find_peak_candidates(probability: np.ndarray, floor: float = PEAK_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """Candidate label map (``int32``, 1..n, 0 background) and the peak index ``(n, 3)`` of each label.

    Candidate ``i`` is the set of voxels of peak ``i``'s watershed basin with probability at least
    ``min(FULL_MEMBERSHIP, peak / 2)``; label ``i`` belongs to ``peaks[i - 1]``.
    """
    labels = np.zeros(probability.shape, np.int32)
    # Work inside the box holding every voxel above the floor (the brain, not the whole field of view).
    box = ndimage.find_objects((probability >= floor).astype(np.uint8))
    if not box:
        return labels, np.zeros((0, probability.ndim), int)
    local = probability[box[0]]
    above = local >= floor
    # Regional maxima, so a flat top is one peak, not many.
    markers, n = ndimage.label(local_maxima(local) & above, structure=np.ones((3,) * local.ndim))
    peaks = np.array(ndimage.maximum_position(local, markers, np.arange(1, n + 1)), dtype=int).reshape(n, -1)
    basins = watershed(-local, markers, mask=above)
    peak_values = np.concatenate([[np.inf], local[tuple(peaks.T)]]).astype(np.float32)
    keep = local >= np.minimum(FULL_MEMBERSHIP, peak_values[basins] / 2)
    labels[box[0]] = np.where(keep, basins, 0)
    return labels, peaks + [s.start for s in box[0]]
