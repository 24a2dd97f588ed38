"""Microbleeds and calcifications for the SWI phantom: placed in MNI space, drawn as soft dark spheres.

CMB placement rules (so that every truth label is unambiguous):
- the centre lies in its MARS region (:mod:`phantom_anatomy` labels, i.e. :mod:`mars_regions` split by
  side) at least ``3 mm + 0.3 x radius`` from any other region, debatable cortex or the midline plane;
- the centre is deep enough in tissue (``tissue_depth >= 0.6 x radius + 0.5``), lobar ones at the grey/white
  junction (juxtacortical), deep and infratentorial ones in their nuclei / white matter;
- spheres keep 3 mm apart, clear of veins (some sit right next to one: the hard case) and calcifications;
  clustered CMBs (:class:`PhantomSettings` ``p_clustered``) sit next to an earlier one, a little over a voxel apart.

Sizes, depths and the vein rules come from :class:`PhantomSettings`; elongated and irregular outlines from
:mod:`lesion_shapes`. Draws the original generator never made use the second random stream ``extra``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.special import erfc

from CMBDetectionLib.mars.regions import SIDES
from CMBDetectionLib.phantoms.anatomy import (
    CATEGORY_OF,
    DEEP,
    INFRATENTORIAL,
    LOBAR,
    PhantomAnatomy,
    region_code,
)
from CMBDetectionLib.phantoms.lesion_shapes import LesionShape, draw_shape
from CMBDetectionLib.phantoms.settings import DEFAULT, PhantomSettings
from CMBDetectionLib.phantoms.veins import VeinSet

MAX_CMBS = 15
P_NO_CMB = 0.15
MIN_GAP_MM = 3.0  # between CMBs (MNI mm), except within a cluster
CLUSTER_SIZE = (1, 3)  # CMBs added next to a clustered one
CANDIDATES_PER_TRY = 300  # random candidate voxels tested per placement attempt
# Per-subject patterns: CAA-like (lobar), hypertensive (deep + infratentorial), mixed.
_PATTERNS = {"lobar": (0.85, 0.10, 0.05), "deep": (0.15, 0.60, 0.25), "mixed": (0.45, 0.35, 0.20)}
_DEEP_WEIGHTS = {"basal_ganglia": 0.35, "thalamus": 0.25, "internal_capsule": 0.1, "external_capsule": 0.1,
                 "corpus_callosum": 0.05, "deep_white_matter": 0.15}
_LOBAR_WEIGHTS = {"frontal": 0.35, "parietal": 0.25, "temporal": 0.2, "occipital": 0.15, "insula": 0.05}
_INFRA_WEIGHTS = {"brainstem": 0.45, "cerebellum": 0.55}

# Calcification sites, MNI RAS mm (right side where paired).
PINEAL = (0.0, -31.0, 3.0)
CHOROID_GLOMUS = (26.0, -40.0, 17.0)


@dataclass(frozen=True)
class PlacedBlob:
    """A sphere placed in MNI space; ``radius_mm`` is in subject millimetres."""

    centre_mni: np.ndarray
    radius_mm: float
    depth: float
    region: str = ""
    side: str = ""
    shape: LesionShape | None = None  # None: a sphere

    @property
    def category(self) -> str:
        return CATEGORY_OF.get(self.region, "")


@dataclass(frozen=True)
class _Candidates:
    ras: np.ndarray
    boundary: np.ndarray
    depth: np.ndarray
    cortex: np.ndarray
    junction: np.ndarray


_CANDIDATE_CACHE: dict[int, dict[int, _Candidates]] = {}


def _candidates(anatomy: PhantomAnatomy) -> dict[int, _Candidates]:
    """Voxels that could hold a CMB centre, per region code (computed once per anatomy)."""
    if id(anatomy) in _CANDIDATE_CACHE:
        return _CANDIDATE_CACHE[id(anatomy)]
    ok = (anatomy.boundary_distance >= 3.0) & (anatomy.tissue_depth >= 1.0)
    out = {}
    for region in LOBAR + DEEP + INFRATENTORIAL:
        for side in SIDES:
            flat = np.flatnonzero(ok & (anatomy.regions == region_code(region, side)))
            kji = np.stack(np.unravel_index(flat, ok.shape), axis=1)
            out[region_code(region, side)] = _Candidates(
                anatomy.index_to_ras(kji),
                anatomy.boundary_distance.ravel()[flat].astype(float),
                anatomy.tissue_depth.ravel()[flat].astype(float),
                anatomy.cortex_distance.ravel()[flat].astype(float),
                (anatomy.gm_wm_junction.ravel()[flat] > 0) | (anatomy.wm.ravel()[flat] > 0.5),
            )
    _CANDIDATE_CACHE.clear()
    _CANDIDATE_CACHE[id(anatomy)] = out
    return out


def _diameter(rng: np.random.Generator, span: tuple[float, float]) -> float:
    """In ``span`` (2-10 mm by default), most in its lower third (as in clinical series)."""
    return float(span[0] + (span[1] - span[0]) * rng.beta(1.2, 3.5))


def _pick(weights: dict[str, float], rng: np.random.Generator) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names])
    return names[rng.choice(len(names), p=p / p.sum())]


def _vein_gap(tree: cKDTree | None, veins: VeinSet, points: np.ndarray) -> np.ndarray:
    """mm from each point to the nearest parenchymal vein wall (inf without veins)."""
    if tree is None:
        return np.full(len(points), np.inf)
    dist, idx = tree.query(points, k=8, distance_upper_bound=15.0)
    radius = np.append(veins.radius[veins.in_brain], 0.0)[np.minimum(idx, int(veins.in_brain.sum()))]
    return np.min(np.where(np.isfinite(dist), dist - radius, np.inf), axis=1)


def place_cmbs(
    anatomy: PhantomAnatomy,
    rng: np.random.Generator,
    veins: VeinSet,
    avoid: list[PlacedBlob],
    in_fov: Callable[[np.ndarray, float], np.ndarray],
    scale: float,
    settings: PhantomSettings = DEFAULT,
    extra: np.random.Generator | None = None,
    cluster_gap_mm: float = 1.0,
) -> list[PlacedBlob]:
    """Draw this subject's CMBs. ``in_fov(ras_mni, margin_mm)`` says which MNI points image inside the
    acquired slab; ``scale`` converts subject mm to MNI mm (divide). ``extra`` (needed when ``settings`` ask for
    shapes or clusters) draws them; ``cluster_gap_mm`` (subject mm) keeps clustered CMBs separate components."""
    n = 0 if rng.random() < P_NO_CMB else int(min(MAX_CMBS, rng.geometric(0.22)))
    pattern = _PATTERNS[("lobar", "deep", "mixed")[rng.integers(0, 3)]]
    candidates = _candidates(anatomy)
    brain_veins = veins.points[veins.in_brain]
    tree = cKDTree(brain_veins) if len(brain_veins) else None
    placed: list[PlacedBlob] = []
    for _ in range(n):
        category = ("lobar", "deep", "infratentorial")[rng.choice(3, p=pattern)]
        weights = {"lobar": _LOBAR_WEIGHTS, "deep": _DEEP_WEIGHTS, "infratentorial": _INFRA_WEIGHTS}[category]
        for _attempt in range(6):
            region, side = _pick(weights, rng), SIDES[rng.integers(0, 2)]
            blob = _place_one(candidates[region_code(region, side)], region, side,
                              _diameter(rng, settings.cmb_diameter_mm) / 2, rng, tree, veins, placed + avoid, in_fov,
                              scale, settings)
            if blob is not None:
                placed.append(blob)
                break
    if extra is not None and settings.p_clustered > 0:
        placed = _with_clusters(placed, candidates, extra, tree, veins, avoid, in_fov, scale, settings, cluster_gap_mm)
    return placed if extra is None else [_shaped(blob, extra, settings) for blob in placed]


def _with_clusters(
    placed: list[PlacedBlob], candidates: dict[int, _Candidates], rng: np.random.Generator, tree: cKDTree | None,
    veins: VeinSet, avoid: list[PlacedBlob], in_fov: Callable[[np.ndarray, float], np.ndarray], scale: float,
    settings: PhantomSettings, gap_mm: float,
) -> list[PlacedBlob]:
    """``placed`` with 1-3 CMBs added next to each that ``p_clustered`` picks (same region; up to ``MAX_CMBS``)."""
    out = list(placed)
    for seed_blob in placed:
        if rng.random() >= settings.p_clustered:
            continue
        for _ in range(int(rng.integers(CLUSTER_SIZE[0], CLUSTER_SIZE[1] + 1))):
            if len(out) >= MAX_CMBS:
                return out
            blob = _place_one(candidates[region_code(seed_blob.region, seed_blob.side)], seed_blob.region,
                              seed_blob.side, _diameter(rng, settings.cmb_diameter_mm) / 2, rng, tree, veins,
                              out + avoid, in_fov, scale, settings, near=seed_blob, gap_mm=gap_mm / scale)
            if blob is not None:
                out.append(blob)
    return out


def _shaped(blob: PlacedBlob, rng: np.random.Generator, settings: PhantomSettings) -> PlacedBlob:
    """``blob`` made elongated and/or irregular with the settings' probabilities (else unchanged)."""
    elongation = rng.uniform(*settings.elongation) if rng.random() < settings.p_elongated else 1.0
    irregularity = rng.uniform(*settings.irregularity) if rng.random() < settings.p_irregular else 0.0
    if elongation == 1.0 and irregularity == 0.0:
        return blob
    return PlacedBlob(blob.centre_mni, blob.radius_mm, blob.depth, blob.region, blob.side,
                      draw_shape(rng, elongation, irregularity))


def _place_one(
    cand: _Candidates, region: str, side: str, radius: float, rng: np.random.Generator, tree: cKDTree | None,
    veins: VeinSet, others: list[PlacedBlob], in_fov: Callable[[np.ndarray, float], np.ndarray], scale: float,
    settings: PhantomSettings, near: PlacedBlob | None = None, gap_mm: float = MIN_GAP_MM,
) -> PlacedBlob | None:
    """One CMB of ``radius`` (subject mm) in ``region``/``side``, at least ``gap_mm`` (MNI mm) from ``others`` and
    within 2 mm more of ``near`` when given; None when no candidate voxel qualifies."""
    rho = radius / scale  # MNI mm
    ok = (cand.boundary >= 3.0 + 0.3 * rho) & (cand.depth >= 0.6 * rho + 0.5)
    if region in LOBAR:
        ok &= cand.junction & (cand.cortex <= max(1.5, 0.8 * rho))
    if near is not None:
        ok &= np.linalg.norm(cand.ras - near.centre_mni, axis=1) <= rho + near.radius_mm / scale + gap_mm + 2.0
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return None
    # A narrower vein-gap window than the default 2 mm needs proportionally more candidates to find one in it.
    width = settings.vein_gap_mm[1] - settings.vein_gap_mm[0]
    idx = idx[rng.permutation(len(idx))[:CANDIDATES_PER_TRY * max(1, round(2.0 / max(width, 0.2)))]]
    pts = cand.ras[idx] + rng.uniform(-0.5, 0.5, (len(idx), 3))
    keep = in_fov(pts, radius + 2.0)
    for other in others:
        keep &= np.linalg.norm(pts - other.centre_mni, axis=1) >= rho + other.radius_mm / scale + gap_mm
    gap = _vein_gap(tree, veins, pts) - rho
    closest, farthest = settings.vein_gap_mm
    keep &= gap >= closest
    if rng.random() < settings.p_next_to_vein and np.any(keep & (gap <= farthest)):
        keep &= gap <= farthest
    hits = np.flatnonzero(keep)
    if len(hits) == 0:
        return None
    return PlacedBlob(pts[hits[0]], radius, float(rng.uniform(*settings.cmb_depth)), region, side)


def place_calcifications(anatomy: PhantomAnatomy, rng: np.random.Generator) -> list[PlacedBlob]:
    """Pineal, choroid-plexus and pallidal calcifications; every subject has at least one site."""
    sites: list[tuple[np.ndarray, tuple[float, float], int]] = []
    if rng.random() < 0.75:
        sites.append((np.array(PINEAL), (1.0, 2.2), 3))
    for sign in (1.0, -1.0):
        if rng.random() < 0.5:
            sites.append((np.array(CHOROID_GLOMUS) * [sign, 1, 1], (1.0, 2.5), 4))
        if rng.random() < 0.2:
            pallidum = anatomy.iron >= 0.9
            ras = anatomy.index_to_ras(np.argwhere(pallidum))
            ras = ras[(ras[:, 0] * sign > 8) & (ras[:, 2] > -8)]
            sites.append((ras[rng.integers(0, len(ras))], (0.7, 1.4), 2))
    if not sites:
        sites.append((np.array(PINEAL), (1.0, 2.2), 3))
    blobs = []
    for centre, (r_lo, r_hi), max_parts in sites:
        for _ in range(int(rng.integers(1, max_parts + 1))):
            offset = rng.normal(0, 1.2, 3)
            blobs.append(PlacedBlob(centre + offset, float(rng.uniform(r_lo, r_hi)), float(rng.uniform(0.7, 0.95))))
    return blobs


def _distance(dk: np.ndarray, dj: np.ndarray, di: np.ndarray, shape: LesionShape | None) -> np.ndarray:
    return np.sqrt(dk**2 + dj**2 + di**2) if shape is None else shape.distance(dk, dj, di)


def render_spheres(
    image: np.ndarray, centres_kji: np.ndarray, radii_mm: list[float], depths: list[float], spacing_kji: np.ndarray,
    shapes: list[LesionShape | None] | None = None,
) -> list[tuple[tuple[slice, ...], np.ndarray]]:
    """Darken ``image`` in place with soft spheres (or ``shapes``); returns each one's (box, boolean core mask).

    The signal loss is ``depth`` inside and falls off smoothly over the rim (blooming), averaged over
    three sub-slices to model the slice thickness. The core mask is ``r <= radius`` at voxel centres
    (``r`` the shape's distance), always including the centre voxel.
    """
    shape = np.array(image.shape)
    shapes = shapes or [None] * len(radii_mm)
    out = []
    for centre, radius, depth, form in zip(centres_kji, radii_mm, depths, shapes):
        rim = 0.25 * radius + 0.3
        reach = 1.0 if form is None else form.reach
        half = np.ceil((radius * reach + 3 * rim) / spacing_kji).astype(int) + 1
        centre_vox = np.rint(centre).astype(int)
        lo = np.maximum(centre_vox - half, 0)
        hi = np.minimum(centre_vox + half + 1, shape)
        if np.any(lo >= hi):
            out.append(((slice(0, 0),) * 3, np.zeros((0, 0, 0), bool)))
            continue
        grids = [(np.arange(a, b) - c) * s for a, b, c, s in zip(lo, hi, centre, spacing_kji)]
        dk, dj, di = grids[0][:, None, None], grids[1][None, :, None], grids[2][None, None, :]
        loss = np.zeros((hi - lo), np.float32)
        for sub in (-1 / 3, 0.0, 1 / 3):
            r = _distance(dk + sub * spacing_kji[0], dj, di, form)
            loss += 0.5 * erfc((r - radius) / (np.sqrt(2) * rim)) / 3
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        image[box] *= 1.0 - depth * loss
        core = _distance(dk, dj, di, form) <= radius
        if np.all((centre_vox >= lo) & (centre_vox < hi)):  # a calcification may lie outside a partial slab
            core[tuple(centre_vox - lo)] = True
        out.append((box, core))
    return out


def cmb_label_map(shape: tuple[int, int, int], spheres: list[tuple[tuple[slice, ...], np.ndarray]]) -> np.ndarray:
    """Label map (1..n) of the CMB cores, each reduced to its 6-connected component holding most voxels."""
    labels = np.zeros(shape, np.uint16)
    for number, (box, core) in enumerate(spheres, start=1):
        comp, n = ndimage.label(core)
        if n > 1:
            core = comp == 1 + np.argmax(ndimage.sum(core, comp, range(1, n + 1)))
        labels[box][core] = number
    return labels
