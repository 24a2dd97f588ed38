"""Veins for the SWI phantom: random centrelines in MNI space, drawn later as dark tubes on the subject grid.

Veins are the main CMB mimic on SWI (dark, tubular, branching; a dot where cut across), so a phantom
needs many, in the places real ones run:

- medullary veins: thin, straight-ish, from the ventricle walls out to the cortex;
- subependymal veins along the ventricles, and the deep veins (internal cerebral, thalamostriate, basal);
- pial veins along the brain surface, with intracortical branches diving into the cortex;
- dural sinuses (superior sagittal, straight, transverse) along the inner table of the skull.

A :class:`VeinSet` is a point cloud of centreline samples (RAS mm, MNI space) with a radius and a contrast
per point; :func:`render_tubes` draws any such set as partial-volume tubes.

>>> veins = generate_veins(load_anatomy(), np.random.default_rng(0))   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from CMBDetectionLib.phantoms.anatomy import PhantomAnatomy

STEP_MM = 0.5
BLOOM = 2.0


@dataclass(frozen=True)
class VeinSet:
    """Centreline samples ``STEP_MM`` apart: ``points`` (n, 3) RAS mm in MNI space, per-point radius (mm)
    and contrast (fraction of signal lost at the centre of a wide vein); ``in_brain`` marks parenchymal veins
    (as opposed to dural sinuses)."""

    points: np.ndarray
    radius: np.ndarray
    contrast: np.ndarray
    in_brain: np.ndarray

    @staticmethod
    def concat(parts: list[VeinSet]) -> VeinSet:
        parts = [p for p in parts if len(p.points)]
        if not parts:
            return VeinSet(np.zeros((0, 3)), np.zeros(0), np.zeros(0), np.zeros(0, bool))
        return VeinSet(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("points", "radius", "contrast", "in_brain")))


def _gradient(anatomy: PhantomAnatomy, field: str, ras: np.ndarray) -> np.ndarray:
    """Central-difference gradient (per mm) of an anatomy field at RAS points, by nearest-voxel lookups 1 mm apart."""
    grad = np.zeros_like(ras)
    for axis in range(3):
        offset = np.zeros(3)
        offset[axis] = 1.0
        hi = anatomy.sample(field, anatomy.ras_to_index(ras + offset)).astype(float)
        lo = anatomy.sample(field, anatomy.ras_to_index(ras - offset)).astype(float)
        grad[:, axis] = (hi - lo) / 2.0
    return grad


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _walk(
    anatomy: PhantomAnatomy,
    rng: np.random.Generator,
    start: np.ndarray,
    n_steps: int,
    field: str,
    mode: str,
    level: float = 0.0,
    wander: float = 0.25,
) -> list[np.ndarray]:
    """Random smooth walks from ``start`` (n, 3 RAS), all walkers stepping together.

    ``mode`` "descend" heads down ``field`` (e.g. toward the cortex); "surface" follows the iso-surface
    ``field == level`` (e.g. along the brain surface or a ventricle wall). Walkers stop on leaving the
    intracranial space. Returns one (m, 3) path per walker.
    """
    n = len(start)
    pos = start.astype(float).copy()
    heading = _unit(rng.normal(size=(n, 3)))
    if mode == "descend":
        heading = _unit(-_gradient(anatomy, field, pos) + 0.3 * heading)
    alive = np.ones(n, bool)
    paths = [pos.copy()]
    for _ in range(n_steps):
        grad = _gradient(anatomy, field, pos)
        if mode == "descend":
            pull = -_unit(grad)
        else:
            normal = _unit(grad)
            value = anatomy.sample(field, anatomy.ras_to_index(pos)).astype(float)
            tangent = heading - np.sum(heading * normal, axis=1, keepdims=True) * normal
            pull = _unit(tangent) - 0.5 * np.clip(value - level, -2, 2)[:, None] * normal
        heading = _unit(0.75 * heading + 0.25 * pull + wander * rng.normal(size=(n, 3)))
        pos = np.where(alive[:, None], pos + STEP_MM * heading, pos)
        alive &= anatomy.sample("head_layer", anatomy.ras_to_index(pos)) == 0
        paths.append(pos.copy())
    stacked = np.stack(paths, axis=1)  # (n, steps, 3)
    # A dead walker's later samples repeat its last position; drop them.
    moved = np.concatenate([np.ones((n, 1), bool), np.any(np.diff(stacked, axis=1) != 0, axis=2)], axis=1)
    return [stacked[w][moved[w]] for w in range(n)]


def _random_voxels(anatomy: PhantomAnatomy, mask: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random RAS points (jittered inside their voxel) from a boolean MNI mask."""
    flat = np.flatnonzero(mask)
    picks = flat[rng.integers(0, len(flat), n)]
    kji = np.stack(np.unravel_index(picks, mask.shape), axis=1) + rng.uniform(-0.5, 0.5, (n, 3))
    return anatomy.index_to_ras(kji)


def _as_set(paths: list[np.ndarray], radius: np.ndarray, contrast: np.ndarray, in_brain: bool, taper: bool) -> VeinSet:
    pts, rad, con = [], [], []
    for path, r, c in zip(paths, radius, contrast):
        if len(path) < 4:
            continue
        # Veins thin toward their periphery (the walk's end).
        scale = np.linspace(1.0, 0.55, len(path)) if taper else np.ones(len(path))
        pts.append(path)
        rad.append(r * scale)
        con.append(np.full(len(path), c))
    if not pts:
        return VeinSet.concat([])
    points = np.concatenate(pts)
    return VeinSet(points, np.concatenate(rad), np.concatenate(con), np.full(len(points), in_brain))


def _count(rng: np.random.Generator, low: int, high: int, density: float) -> int:
    """A random vein count in [low, high), times ``density``."""
    return int(int(rng.integers(low, high)) * density)


def _medullary(anatomy: PhantomAnatomy, rng: np.random.Generator, density: float) -> VeinSet:
    n = _count(rng, 120, 200, density)
    wall = (anatomy.ventricle_distance >= 1) & (anatomy.ventricle_distance <= 4) & (anatomy.wm > 0.5)
    deep = (anatomy.cortex_distance > 6) & (anatomy.wm > 0.6) & (anatomy.regions > 0)
    starts = np.concatenate([_random_voxels(anatomy, wall, n // 2, rng), _random_voxels(anatomy, deep, n - n // 2, rng)])
    # Walk outward, reversed so the vein is thickest where it drains (at the ventricle).
    paths = _walk(anatomy, rng, starts, int(rng.integers(60, 100)), "cortex_distance", "descend", wander=0.12)
    paths = [p[::-1] for p in paths]
    return _as_set(paths, rng.uniform(0.25, 0.55, n), rng.uniform(0.6, 0.95, n), True, taper=False)


def _subependymal(anatomy: PhantomAnatomy, rng: np.random.Generator, density: float) -> VeinSet:
    n = _count(rng, 8, 16, density)
    wall = (anatomy.ventricle_distance >= 1) & (anatomy.ventricle_distance <= 2.5) & (anatomy.brain > 0)
    paths = _walk(anatomy, rng, _random_voxels(anatomy, wall, n, rng), int(rng.integers(40, 80)), "ventricle_distance",
                  "surface", level=1.5, wander=0.15)
    return _as_set(paths, rng.uniform(0.5, 0.9, n), rng.uniform(0.6, 0.9, n), True, taper=True)


def _pial(anatomy: PhantomAnatomy, rng: np.random.Generator, density: float) -> VeinSet:
    n = _count(rng, 70, 120, density)
    surface = (anatomy.cortex_distance >= 0.5) & (anatomy.cortex_distance <= 1.5) & (anatomy.csf > 0.5)
    surface &= anatomy.brain > 0
    trunks = _walk(anatomy, rng, _random_voxels(anatomy, surface, n, rng), int(rng.integers(80, 180)), "cortex_distance",
                   "surface", level=1.0, wander=0.2)
    radii = rng.uniform(0.6, 1.1, n)
    parts = [_as_set(trunks, radii, rng.uniform(0.6, 0.9, n), True, taper=True)]
    # Intracortical branches: from points along the trunks, straight down through the cortex.
    starts = [p[rng.integers(0, len(p), 4)] for p in trunks if len(p) > 10]
    if starts:
        starts = np.concatenate(starts)
        dives = _walk(anatomy, rng, starts, int(rng.integers(8, 20)), "cortex_distance", "descend", wander=0.1)
        m = len(dives)
        parts.append(_as_set(dives, rng.uniform(0.3, 0.5, m), rng.uniform(0.5, 0.85, m), True, taper=True))
    return VeinSet.concat(parts)


def _curve(control: np.ndarray, rng: np.random.Generator, jitter: float) -> np.ndarray:
    """Smooth polyline through jittered control points (RAS), resampled every ``STEP_MM``."""
    control = control + rng.normal(0, jitter, control.shape)
    seg = np.linalg.norm(np.diff(control, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])
    t = np.arange(0, s[-1], STEP_MM)
    line = np.stack([np.interp(t, s, control[:, a]) for a in range(3)], axis=1)
    return ndimage.gaussian_filter1d(line, 4.0, axis=0, mode="nearest")


# Deep veins (right side; mirrored), control points in MNI RAS mm from standard venous anatomy.
_DEEP_VEINS = (
    (((3.0, 2.0, 14.0), (3.0, -12.0, 15.0), (3.5, -28.0, 11.0), (1.5, -38.0, 6.0)), 1.1),  # internal cerebral
    (((18.0, -18.0, 22.0), (13.0, -8.0, 19.0), (6.0, 0.0, 15.0), (3.0, 2.0, 14.0)), 0.8),  # thalamostriate
    (((20.0, 2.0, -14.0), (18.0, -14.0, -10.0), (14.0, -28.0, -6.0), (6.0, -38.0, 2.0)), 1.0),  # basal (Rosenthal)
)


def _deep(rng: np.random.Generator) -> VeinSet:
    paths, radii = [], []
    for control, radius in _DEEP_VEINS:
        for sign in (1.0, -1.0):
            pts = np.array(control) * np.array([sign, 1.0, 1.0])
            paths.append(_curve(pts, rng, 1.0))
            radii.append(radius * rng.uniform(0.8, 1.2))
    return _as_set(paths, np.array(radii), rng.uniform(0.75, 0.95, len(paths)), True, taper=False)


def _inner_table(anatomy: PhantomAnatomy, centre: np.ndarray, directions: np.ndarray, inset: float) -> np.ndarray:
    """Points ``inset`` mm inside the skull along rays from ``centre`` (vectorised ray march)."""
    radius = np.zeros(len(directions))
    for r in np.arange(20.0, 110.0, 1.0):
        pts = centre + r * directions
        inside = anatomy.sample("head_layer", anatomy.ras_to_index(pts)) == 0
        radius = np.where(inside, r, radius)
    return centre + np.maximum(radius - inset, 0)[:, None] * directions


def _sinuses(anatomy: PhantomAnatomy, rng: np.random.Generator) -> VeinSet:
    centre = np.array([0.0, -18.0, 12.0])
    theta = np.radians(np.linspace(25, 200, 120))  # sagittal arc from the frontal pole over the vertex to the occiput
    sss = _inner_table(anatomy, centre, np.stack([np.zeros_like(theta), np.cos(theta), np.sin(theta)], 1), 3.0)
    sss = ndimage.gaussian_filter1d(sss, 2.0, axis=0, mode="nearest")
    paths, radii = [_curve(sss, rng, 0.0)], [rng.uniform(2.5, 3.5)]
    torcula = sss[-1]
    paths.append(_curve(np.array([[0.0, -42.0, 4.0], [0.0, -60.0, 6.0], torcula]), rng, 0.5))  # straight sinus
    radii.append(rng.uniform(1.8, 2.4))
    phi = np.radians(np.linspace(0, 85, 40))  # transverse sinus: axial arc from the torcula round to the side
    for sign in (1.0, -1.0):
        dirs = np.stack([sign * np.sin(phi), -np.cos(phi), np.zeros_like(phi)], 1)
        ts = _inner_table(anatomy, np.array([0.0, -30.0, torcula[2]]), dirs, 3.0)
        paths.append(_curve(ts, rng, 0.0))
        radii.append(rng.uniform(2.0, 3.0))
    return _as_set(paths, np.array(radii), rng.uniform(0.8, 0.95, len(paths)), False, taper=False)


def generate_veins(anatomy: PhantomAnatomy, rng: np.random.Generator, density: float = 1.0) -> VeinSet:
    """All veins of one subject (MNI space); ``density`` scales the number of medullary, subependymal and pial veins."""
    return VeinSet.concat([_medullary(anatomy, rng, density), _subependymal(anatomy, rng, density),
                           _pial(anatomy, rng, density), _deep(rng), _sinuses(anatomy, rng)])


def render_tubes(
    index_points: np.ndarray, radius_mm: np.ndarray, contrast: np.ndarray, shape: tuple[int, int, int],
    spacing_kji: np.ndarray, step_mm: float,
) -> np.ndarray:
    """Signal loss (0..~1) of tubes through centreline samples at continuous ``[k, j, i]`` indices.

    On SWI a vein's dipole field darkens more than its lumen ("blooming"), so a tube of ``BLOOM`` x its
    radius is drawn. Each sample deposits that cross-section (pi r^2 x step) by trilinear splatting, so a
    thin vein fills a voxel only partly (partial volume); a Gaussian of sigma r / sqrt(2) then gives the
    tube its profile, peaking at ``contrast`` on the axis of a vein wider than the voxels.
    """
    radius_mm = radius_mm * np.where(radius_mm < 2.0, BLOOM, 1.0)  # dural sinuses are drawn at their size
    loss = np.zeros(shape, np.float32)
    voxel_volume = float(np.prod(spacing_kji))
    bins = np.array([0.0, 0.6, 0.9, 1.3, 1.8, 2.5, 10.0])
    which = np.digitize(radius_mm, bins) - 1
    for b in np.unique(which):
        sel = which == b
        r_mid = float(np.median(radius_mm[sel]))
        sigma_vox = np.maximum(r_mid / np.sqrt(2.0) / spacing_kji, 0.35)
        weight = contrast[sel] * np.pi * radius_mm[sel] ** 2 * step_mm / voxel_volume
        loss += _splat(index_points[sel], weight, shape, sigma_vox)
    return loss


def _splat(points: np.ndarray, weight: np.ndarray, shape: tuple[int, int, int], sigma_vox: np.ndarray) -> np.ndarray:
    """Trilinear splat of weighted points, then a Gaussian blur limited to the points' bounding box."""
    out = np.zeros(shape, np.float32)
    base = np.floor(points).astype(int)
    frac = points - base
    for corner in np.ndindex(2, 2, 2):
        idx = base + corner
        w = weight * np.prod(np.where(corner, frac, 1 - frac), axis=1)
        ok = np.all((idx >= 0) & (idx < shape), axis=1)
        np.add.at(out, tuple(idx[ok].T), w[ok])
    if not np.any(out):
        return out
    pad = np.ceil(4 * sigma_vox).astype(int) + 1
    lo = np.maximum(base.min(0) - pad, 0)
    hi = np.minimum(base.max(0) + pad + 2, shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    out[box] = ndimage.gaussian_filter(out[box], sigma_vox, truncate=3.0)
    return out
