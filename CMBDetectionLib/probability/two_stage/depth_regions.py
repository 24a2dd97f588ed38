"""Stage one's shape/size test, on a region grown from each dark seed to a fraction of its own depth.

A seed (a local minimum of the local-contrast image) of depth ``1 - m`` is given the connected region of voxels
below ``m + level * (1 - m)``, tried at each of :data:`LEVELS` in turn (the first is the region at half depth,
the CMB's apparent outline). The first region that passes the size/shape test is the candidate; its ``level``
says how deep it had to be cut to look like a CMB. This is a small component tree:

- a faint CMB whose darkest voxel alone reaches the k-means dark cluster still gets its full size (a fixed
  threshold would leave it one voxel and the minimum-diameter test would drop it);
- a CMB touching a vein or another CMB is cut off from it at a deeper level, where the saddle between them
  separates the two (a fixed threshold keeps them one long component that fails the elongation test);
- a vein is round only when cut near its darkest point, so its candidates carry low levels, and ranking by level
  puts CMBs first (:func:`kmeans_candidates.rank`).

Shape measures use millimetres: ``diameter_mm`` is the equivalent-sphere diameter of the region, and
``elongation`` the ratio of the largest to the smallest principal axis of its voxels (each voxel counted as a
box, so a one-slice blob is not infinitely flat).

>>> c = np.ones((9, 31, 31), np.float32); c[3:6, 13:18, 13:18] = 0.4; c[4, 15, 15] = 0.3    # a 5 mm dark blob
>>> r = region_at_depth(c, np.array([4, 15, 15]), np.ones(3), ShapeLimits())
>>> r.level, r.n_voxels, round(r.diameter_mm, 1)
(0.5, 75, 5.2)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.morphology import local_minima

from CMBDetectionLib.results import SIX_CONNECTED

LEVELS = (0.5, 0.35, 0.2)  # fractions of a seed's depth, outline first
SEARCH_MM = 8.0  # half-width of the box a region may grow in: a region reaching its edge is no CMB (> 10 mm)


@dataclass(frozen=True)
class ShapeLimits:
    """The size/shape test (Afzal et al. 2022: a CMB is 2-10 mm and round; a vessel is long)."""

    min_diameter_mm: float = 2.0
    max_diameter_mm: float = 10.0
    max_elongation: float = 3.0

    def accepts(self, diameter_mm: float, elongation: float) -> bool:
        return self.min_diameter_mm <= diameter_mm <= self.max_diameter_mm and elongation <= self.max_elongation


@dataclass(frozen=True)
class Region:
    """A seed's region at the first level that passed the shape test; ``voxels`` are ``(n, 3)`` array indices."""

    voxels: np.ndarray
    level: float
    depth: float  # 1 - the seed's local contrast
    diameter_mm: float
    elongation: float

    @property
    def n_voxels(self) -> int:
        return len(self.voxels)


def shape_of(coords_kji: np.ndarray, spacing: np.ndarray) -> tuple[float, float]:
    """(equivalent-sphere diameter mm, principal-axis elongation) of one region's voxel indices."""
    volume = len(coords_kji) * float(np.prod(spacing))
    diameter = (6.0 * volume / np.pi) ** (1.0 / 3.0)
    points = coords_kji * spacing
    # Each voxel is a uniform box: its own variance spacing^2/12 keeps thin regions from degenerating.
    covariance = np.cov(points, rowvar=False, bias=True) if len(points) > 1 else np.zeros((3, 3))
    eigen = np.linalg.eigvalsh(covariance + np.diag(spacing**2 / 12.0))
    return diameter, float(np.sqrt(eigen[-1] / eigen[0]))


def seed_minima(contrast: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """``(n, 3)`` indices of the regional minima of ``contrast`` inside ``allowed``, deepest first (a flat
    minimum is one seed)."""
    minima = local_minima(np.where(allowed, contrast, np.inf)) & allowed
    labels, n = ndimage.label(minima, structure=np.ones((3, 3, 3)))
    seeds = np.array(ndimage.minimum_position(contrast, labels, np.arange(1, n + 1)), dtype=int).reshape(n, 3)
    return seeds[np.argsort(contrast[tuple(seeds.T)], kind="stable")]


def region_at_depth(
    contrast: np.ndarray,
    seed: np.ndarray,
    spacing: np.ndarray,
    limits: ShapeLimits,
    levels: tuple[float, ...] = LEVELS,
    taken: np.ndarray | None = None,
) -> Region | None:
    """The seed's region at the first of ``levels`` that passes ``limits``, or None. Voxels of ``taken`` (earlier
    candidates) are left out, so a shallow seed beside a deeper candidate does not swallow it."""
    half = np.ceil(SEARCH_MM / spacing).astype(int)
    low, high = np.maximum(seed - half, 0), np.minimum(seed + half + 1, contrast.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
    crop = contrast[box]
    free = np.ones(crop.shape, bool) if taken is None else ~taken[box]
    inner, bottom = tuple(seed - low), float(contrast[tuple(seed)])
    # A region touching a box face that is not the volume's own edge would grow on past the box.
    open_low, open_high = low > 0, high < contrast.shape
    for level in levels:
        parts, _ = ndimage.label(free & (crop <= bottom + level * (1.0 - bottom)), structure=SIX_CONNECTED)
        coords = np.argwhere(parts == parts[inner])
        if ((coords.min(axis=0) == 0) & open_low).any() or ((coords.max(axis=0) == np.array(crop.shape) - 1) & open_high).any():
            continue
        diameter, elongation = shape_of(coords, spacing)
        if limits.accepts(diameter, elongation):
            return Region(coords + low, level, 1.0 - bottom, diameter, elongation)
    return None
