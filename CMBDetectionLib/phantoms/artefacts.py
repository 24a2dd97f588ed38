"""Air-tissue artefacts and tissue texture for the SWI phantom, in MNI space.

- Susceptibility dropout near the frontal sinus and the mastoid air cells: smooth signal loss whose extent scales
  with ``extent`` (1 = the generator's original size).
- Skull-base spots: small dark partial-volume blobs where brain meets the skull base, the false positives real
  detectors make on the lowest slices. They are mimics, never labelled as CMBs.
- Texture: a smooth random multiplicative pattern over grey and white matter.

>>> anatomy = load_anatomy()                                              # doctest: +SKIP
>>> loss = dropout_loss(anatomy, np.random.default_rng(0), extent=1.0)   # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from CMBDetectionLib.phantoms.anatomy import PhantomAnatomy
from CMBDetectionLib.phantoms.lesions import PlacedBlob

SKULL_BASE_Z_MM = (-45.0, -12.0)  # MNI z span of the skull-base spots
MAX_DROPOUT = 0.95


def _gauss(coord: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((coord - centre) / sigma) ** 2)


def dropout_loss(anatomy: PhantomAnatomy, rng: np.random.Generator, extent: float = 1.0) -> np.ndarray:
    """Fraction of signal lost (0..0.95) on the MNI grid from the sinuses and mastoid air (MNI mm positions)."""
    x, y, z = anatomy.ras_axes()
    loss = rng.uniform(0.6, 0.9) * _gauss(x, 0, 14 * extent) * _gauss(y, 48, 12 * extent) * _gauss(z, -32, 10 * extent)
    for sign in (1.0, -1.0):
        loss = loss + rng.uniform(0.5, 0.85) * _gauss(x, 52 * sign, 11 * extent) * _gauss(y, -18, 12 * extent) \
            * _gauss(z, -42, 10 * extent)
    return np.clip(loss, 0, MAX_DROPOUT).astype(np.float32)


def skull_base_spots(anatomy: PhantomAnatomy, rng: np.random.Generator, count: int) -> list[PlacedBlob]:
    """``count`` small dark blobs at the brain surface above the skull base (radius 0.6-1.8 mm, loss 0.5-0.9)."""
    if count <= 0:
        return []
    _, _, z = anatomy.ras_axes()
    low = np.broadcast_to((z >= SKULL_BASE_Z_MM[0]) & (z <= SKULL_BASE_Z_MM[1]), anatomy.brain.shape)
    surface = (anatomy.head_layer == 0) & (anatomy.tissue_depth <= 1.5) & (anatomy.gm + anatomy.wm > 0.2) & low
    sites = np.argwhere(surface)
    picks = sites[rng.integers(0, len(sites), count)] + rng.uniform(-0.5, 0.5, (count, 3))
    return [PlacedBlob(centre, float(rng.uniform(0.6, 1.8)), float(rng.uniform(0.5, 0.9)))
            for centre in anatomy.index_to_ras(picks)]


def texture_field(shape: tuple[int, ...], strength: float, rng: np.random.Generator) -> np.ndarray:
    """A multiplicative field ``1 + strength * n`` with ``n`` smooth unit-variance noise (1-3 mm grain, 1 mm grid)."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), rng.uniform(1.0, 3.0))
    noise /= max(float(noise.std()), 1e-6)
    return 1 + np.float32(strength) * noise
