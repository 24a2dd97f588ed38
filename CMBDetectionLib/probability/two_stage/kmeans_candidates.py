"""First stage of the two-stage method: dark-cluster candidates and shape/size false-positive reduction.

Afzal et al. 2022, sections 3.3-3.4: k-means (k = 4) inside the brain, the darkest cluster holds the
microbleeds; components whose size or shape cannot be a CMB (diameter outside 2-10 mm, elongated like a vessel)
are dropped before classification. Three adaptations, each needed on scans from other scanners:

1. k-means runs on the local-contrast image (:mod:`local_contrast`), not raw intensities, so a bias field or
   another grey/white contrast does not move faint CMBs out of the dark cluster, nor dark tissue into it;
2. candidates grow from the dark cluster's local minima to a fraction of their own depth (:mod:`depth_regions`)
   instead of being the cluster's components: a CMB touching a vein becomes its own region, and a faint CMB
   keeps its size;
3. candidates are ranked (:func:`rank`: round at half depth first, then the rounder) and at most
   ``max_candidates`` are kept, so the classifier's false positives stay bounded on noisy scans.

Seeds lie at least ``EDGE_MARGIN_MM`` inside the brain mask (its rim holds skull-edge partial volume).

>>> labels, found = find_kmeans_candidates(array, brain, (2.0, 0.9, 0.9))      # doctest: +SKIP
>>> found[0].centre_kji, found[0].diameter_mm                           # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from CMBDetectionLib.probability.two_stage.depth_regions import ShapeLimits, region_at_depth, seed_minima
from CMBDetectionLib.probability.two_stage.local_contrast import local_contrast

N_CLUSTERS = 4
MIN_DIAMETER_MM = ShapeLimits.min_diameter_mm
MAX_DIAMETER_MM = ShapeLimits.max_diameter_mm
MAX_ELONGATION = ShapeLimits.max_elongation
MAX_CANDIDATES = 150
DEFAULT_LIMITS = ShapeLimits()
EDGE_MARGIN_MM = 2.0
KMEANS_SAMPLE = 20_000  # brain voxels used to fit the clusters; all brain voxels are then assigned


@dataclass(frozen=True)
class Candidate:
    """One region that passed the size/shape test, numbered in rank order."""

    label: int
    centre_kji: tuple[float, float, float]  # centre of mass, array index
    diameter_mm: float
    elongation: float
    n_voxels: int
    level: float  # fraction of its depth at which it was round (depth_regions.LEVELS)
    voxels: np.ndarray = field(repr=False, compare=False)


@dataclass(frozen=True)
class Search:
    """Every step of stage one on one volume, for the diagnostic (:mod:`stage_survivors`) as well as detection."""

    dark: np.ndarray  # the darkest k-means cluster
    deep: np.ndarray  # voxels deeper than EDGE_MARGIN_MM inside the brain (where seeds may lie)
    ranked: list[Candidate]  # every accepted region, best first (before the cap)


def dark_cluster(values_image: np.ndarray, brain: np.ndarray, *, n_clusters: int = N_CLUSTERS, seed: int = 0) -> np.ndarray:
    """Bool mask of the darkest of ``n_clusters`` 1-D k-means clusters of ``values_image`` inside ``brain``."""
    inside = brain > 0
    values = values_image[inside].astype(np.float32)
    if len(values) < n_clusters:
        raise ValueError(f"the brain mask holds {len(values)} voxels; k-means needs at least {n_clusters}.")
    rng = np.random.default_rng(seed)
    sample = values[rng.choice(len(values), size=min(KMEANS_SAMPLE, len(values)), replace=False)].reshape(-1, 1)
    # One thread: on a small 1-D sample, OpenMP start-up and spin-waiting cost more than they save.
    with threadpool_limits(limits=1):
        centres = np.sort(KMeans(n_clusters=n_clusters, n_init=2, random_state=seed).fit(sample).cluster_centers_[:, 0])
    return inside & (values_image <= (centres[0] + centres[1]) / 2.0)  # nearest-centre boundary in one dimension


def rank(candidates: list[Candidate]) -> list[Candidate]:
    """Best first: round at a higher fraction of its depth (a CMB is round at its outline, a vein only when cut
    near its darkest point), then rounder."""
    return sorted(candidates, key=lambda c: (-c.level, c.elongation))


def _ellipsoid(radius_mm: float, spacing_kji: tuple[float, float, float]) -> np.ndarray:
    """Boolean ball of ``radius_mm`` on the voxel grid (structuring element for a millimetre erosion)."""
    half = [int(radius_mm // s) for s in spacing_kji]
    k, j, i = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    return (k * spacing_kji[0]) ** 2 + (j * spacing_kji[1]) ** 2 + (i * spacing_kji[2]) ** 2 <= radius_mm**2


def search_candidates(
    array: np.ndarray,
    brain: np.ndarray,
    spacing_kji: tuple[float, float, float],
    *,
    n_clusters: int = N_CLUSTERS,
    limits: ShapeLimits = DEFAULT_LIMITS,
    seed: int = 0,
) -> Search:
    """Local contrast, its darkest k-means cluster, a region per seed (deepest seeds first; a seed inside an
    earlier region is part of it, and regions do not overlap), ranked."""
    spacing = np.asarray(spacing_kji, dtype=float)
    contrast = local_contrast(array, brain, spacing_kji)
    dark = dark_cluster(contrast, brain, n_clusters=n_clusters, seed=seed)
    deep = ndimage.binary_erosion(brain > 0, structure=_ellipsoid(EDGE_MARGIN_MM, spacing_kji))
    taken = np.zeros(array.shape, bool)
    found: list[Candidate] = []
    for seed_kji in seed_minima(contrast, dark & deep):
        if taken[tuple(seed_kji)]:
            continue
        region = region_at_depth(contrast, seed_kji, spacing, limits, taken=taken)
        if region is None:
            continue
        taken[tuple(region.voxels.T)] = True
        centre = tuple(float(c) for c in region.voxels.mean(axis=0))
        found.append(Candidate(0, centre, round(region.diameter_mm, 3), round(region.elongation, 3),
                               region.n_voxels, region.level, region.voxels))
    return Search(dark, deep, rank(found))


def label_candidates(shape: tuple[int, ...], ranked: list[Candidate], max_candidates: int | None) -> tuple[np.ndarray, list[Candidate]]:
    """The first ``max_candidates`` of ``ranked`` (all with None), numbered 1..n, and their ``int32`` label map."""
    kept = ranked if max_candidates is None else ranked[:max_candidates]
    labels = np.zeros(shape, dtype=np.int32)
    numbered = []
    for label, candidate in enumerate(kept, start=1):
        labels[tuple(candidate.voxels.T)] = label
        numbered.append(replace(candidate, label=label))
    return labels, numbered


def find_kmeans_candidates(
    array: np.ndarray,
    brain: np.ndarray,
    spacing_kji: tuple[float, float, float],
    *,
    n_clusters: int = N_CLUSTERS,
    max_candidates: int | None = MAX_CANDIDATES,
    seed: int = 0,
    **shape_limits: float,
) -> tuple[np.ndarray, list[Candidate]]:
    """Candidates of an SWI array inside ``brain``: (label map numbered 1..n in rank order, candidates)."""
    search = search_candidates(array, brain, spacing_kji, n_clusters=n_clusters, limits=ShapeLimits(**shape_limits),
                               seed=seed)
    return label_candidates(array.shape, search.ranked, max_candidates)
