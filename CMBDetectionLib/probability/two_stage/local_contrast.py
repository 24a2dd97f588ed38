"""Stage one's working image: each voxel's intensity divided by its local background.

A microbleed is darker than the tissue *around it*, not darker than a global level: with a bias field, another
scanner's grey/white contrast or inverted contrasts, a faint CMB in bright tissue can be brighter than normal
dark grey matter elsewhere. Clustering raw intensities then puts it with tissue, and puts whole dark gyri with the
CMBs. Dividing by the local background (a grey-scale closing over ``background_mm``, which fills in every dark
structure narrower than that and keeps the surrounding tissue level) gives 1 in tissue and
``1 - contrast`` in a CMB, whatever the scanner's gain, bias or tissue contrasts.

>>> a = np.full((9, 21, 40), 200.0, np.float32); a[4, 10, 30] = 50.0   # a CMB in bright tissue,
>>> a[:, :, :16] = 80.0                                                  # beside a 16 mm wide darker tissue
>>> c = local_contrast(a, np.ones(a.shape, bool), (1.0, 1.0, 1.0), smoothing_mm=0.0)
>>> round(float(c[4, 10, 30]), 2), round(float(c[4, 10, 5]), 2), round(float(c[4, 5, 25]), 2)
(0.25, 1.0, 1.0)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SMOOTHING_MM = 0.5  # single-voxel noise specks otherwise make hundreds of seeds on noisy SWI
BACKGROUND_MM = 6.0  # half-width of the closing: wider than a 10 mm CMB's radius, narrower than a gyrus


def local_contrast(
    array: np.ndarray,
    brain: np.ndarray,
    spacing_kji: tuple[float, float, float],
    *,
    smoothing_mm: float = SMOOTHING_MM,
    background_mm: float = BACKGROUND_MM,
) -> np.ndarray:
    """``float32`` ratio of the smoothed ``array`` to its local background (about 1 in tissue, below 1 in dark
    spots). Voxels outside ``brain`` take the brain's median first, so the dark skull does not lower the
    background at the brain's edge."""
    spacing = np.asarray(spacing_kji, dtype=float)
    smoothed = array.astype(np.float32)
    if smoothing_mm > 0:
        smoothed = ndimage.gaussian_filter(smoothed, smoothing_mm / spacing)
    inside = brain > 0
    filled = np.where(inside, smoothed, np.median(smoothed[inside]) if inside.any() else 0.0).astype(np.float32)
    size = [max(3, 2 * int(round(background_mm / s)) + 1) for s in spacing]
    background = ndimage.grey_closing(filled, size=size)
    return smoothed / np.maximum(background, np.finfo(np.float32).tiny)
