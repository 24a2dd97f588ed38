"""First stage of the two-stage method: dark-cluster candidates and shape/size false-positive reduction.

Afzal et al. 2022, sections 3.3-3.4: k-means (k = 4) on the intensities inside the brain, the darkest
cluster holds the microbleeds; its connected components are candidates, and components whose size or shape
cannot be a CMB (diameter outside 2-10 mm, elongated like a vessel) are dropped before classification.

Two adaptations, both needed on noisy SWI: the volume is lightly smoothed before clustering (single-voxel
noise specks otherwise make hundreds of components), and the darkest cluster is split once more by a 3-means
on its own voxels, whose darkest part is the *core*: very dark voxels at least ``EDGE_MARGIN_MM`` inside the
brain mask (the mask's rim holds skull-edge partial volume). A component is kept only if it holds core voxels
(a CMB is far darker than dark grey matter), and core components are tried on their own where their dark-cluster
component failed the shape test (a CMB touching a darker-than-tissue vessel or nucleus).

Shape measures use millimetres: ``diameter_mm`` is the equivalent-sphere diameter of the component, and
``elongation`` the ratio of the largest to the smallest principal axis of its voxels (each voxel counted as a
box, so a one-slice blob is not infinitely flat).

>>> labels, found = find_kmeans_candidates(array, brain, (2.0, 0.9, 0.9))      # doctest: +SKIP
>>> found[0].centre_kji, found[0].diameter_mm                           # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from CMBDetectionLib.results import SIX_CONNECTED

N_CLUSTERS = 4
MIN_DIAMETER_MM = 2.0
MAX_DIAMETER_MM = 10.0
MAX_ELONGATION = 3.0
SMOOTHING_MM = 0.5
CORE_CLUSTERS = 3
EDGE_MARGIN_MM = 2.0
KMEANS_SAMPLE = 20_000  # brain voxels used to fit the clusters; all brain voxels are then assigned


@dataclass(frozen=True)
class Candidate:
    """One connected component of the dark cluster that passed the size/shape filter."""

    label: int
    centre_kji: tuple[float, float, float]  # centre of mass, array index
    diameter_mm: float
    elongation: float
    n_voxels: int


def _kmeans_darkest(values: np.ndarray, n_clusters: int, seed: int) -> float:
    """Upper intensity bound of the darkest of ``n_clusters`` 1-D k-means clusters of ``values``."""
    rng = np.random.default_rng(seed)
    sample = values[rng.choice(len(values), size=min(KMEANS_SAMPLE, len(values)), replace=False)].reshape(-1, 1)
    # One thread: on a small 1-D sample, OpenMP start-up and spin-waiting cost more than they save.
    with threadpool_limits(limits=1):
        centres = np.sort(KMeans(n_clusters=n_clusters, n_init=2, random_state=seed).fit(sample).cluster_centers_[:, 0])
    return float((centres[0] + centres[1]) / 2.0)  # nearest-centre boundary in one dimension


def dark_cluster(
    array: np.ndarray, brain: np.ndarray, *, n_clusters: int = N_CLUSTERS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(darkest of ``n_clusters`` k-means clusters of brain intensities, the darkest of its own 3-means), bool masks."""
    inside = brain > 0
    values = array[inside].astype(np.float32)
    if len(values) < n_clusters:
        raise ValueError(f"the brain mask holds {len(values)} voxels; k-means needs at least {n_clusters}.")
    dark = inside & (array <= _kmeans_darkest(values, n_clusters, seed))
    dark_values = array[dark].astype(np.float32)
    if len(dark_values) < CORE_CLUSTERS:
        return dark, dark.copy()  # a separate array: callers narrow the core in place
    core = dark & (array <= _kmeans_darkest(dark_values, CORE_CLUSTERS, seed))
    return dark, core


def _shape(coords_kji: np.ndarray, spacing: np.ndarray) -> tuple[float, float]:
    """(equivalent-sphere diameter mm, principal-axis elongation) of one component's voxel indices."""
    volume = len(coords_kji) * float(np.prod(spacing))
    diameter = (6.0 * volume / np.pi) ** (1.0 / 3.0)
    points = coords_kji * spacing
    # Each voxel is a uniform box: its own variance spacing^2/12 keeps thin components from degenerating.
    covariance = np.cov(points, rowvar=False, bias=True) if len(points) > 1 else np.zeros((3, 3))
    eigen = np.linalg.eigvalsh(covariance + np.diag(spacing**2 / 12.0))
    return diameter, float(np.sqrt(eigen[-1] / eigen[0]))


def _accepted(coords: np.ndarray, spacing: np.ndarray, limits: dict[str, float]) -> tuple[bool, float, float]:
    diameter, elongation = _shape(coords, spacing)
    ok = limits["min_diameter_mm"] <= diameter <= limits["max_diameter_mm"] and elongation <= limits["max_elongation"]
    return ok, diameter, elongation


def filter_components(
    mask: np.ndarray,
    spacing_kji: tuple[float, float, float],
    *,
    core: np.ndarray | None = None,
    min_diameter_mm: float = MIN_DIAMETER_MM,
    max_diameter_mm: float = MAX_DIAMETER_MM,
    max_elongation: float = MAX_ELONGATION,
) -> tuple[np.ndarray, list[Candidate]]:
    """Components of ``mask`` kept by size and shape: (label map int32 numbered 1..n, candidates).

    With ``core``, components without core voxels are dropped, and a failing component's core components
    are tested on their own. Components are 6-connected, like lesions.
    """
    spacing = np.asarray(spacing_kji, dtype=float)
    limits = {"min_diameter_mm": min_diameter_mm, "max_diameter_mm": max_diameter_mm, "max_elongation": max_elongation}
    out = np.zeros(mask.shape, dtype=np.int32)
    found: list[Candidate] = []

    def visit(component: np.ndarray, box: tuple[slice, ...], try_core: bool) -> None:
        if core is not None and not (component & core[box]).any():
            return
        coords = np.argwhere(component)
        ok, diameter, elongation = _accepted(coords, spacing, limits)
        if ok:
            label = len(found) + 1
            out[box][component] = label
            centre = coords.mean(axis=0) + np.array([s.start for s in box])
            centre_kji = tuple(float(c) for c in centre)
            found.append(Candidate(label, centre_kji, round(diameter, 3), round(elongation, 3), len(coords)))
        elif try_core and core is not None:
            parts, count = ndimage.label(component & core[box], structure=SIX_CONNECTED)
            for index, sub in enumerate(ndimage.find_objects(parts), start=1):
                inner = tuple(slice(o.start + s.start, o.start + s.stop) for o, s in zip(box, sub, strict=True))
                visit(parts[sub] == index, inner, False)

    labels, count = ndimage.label(mask, structure=SIX_CONNECTED)
    # Most dark components hold no core voxel: skip them in one vectorised pass instead of one by one.
    if core is None:
        has_core = np.ones(count, bool)
    else:
        has_core = np.asarray(ndimage.maximum(core, labels, np.arange(1, count + 1)), bool)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None and has_core[index - 1]:
            visit(labels[box] == index, box, True)
    return out, found


def _ellipsoid(radius_mm: float, spacing_kji: tuple[float, float, float]) -> np.ndarray:
    """Boolean ball of ``radius_mm`` on the voxel grid (structuring element for a millimetre erosion)."""
    half = [int(radius_mm // s) for s in spacing_kji]
    k, j, i = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    return (k * spacing_kji[0]) ** 2 + (j * spacing_kji[1]) ** 2 + (i * spacing_kji[2]) ** 2 <= radius_mm**2


def find_kmeans_candidates(
    array: np.ndarray,
    brain: np.ndarray,
    spacing_kji: tuple[float, float, float],
    *,
    n_clusters: int = N_CLUSTERS,
    smoothing_mm: float = SMOOTHING_MM,
    seed: int = 0,
    **shape_limits: float,
) -> tuple[np.ndarray, list[Candidate]]:
    """Candidates of an SWI array inside ``brain``: :func:`dark_and_core`, then :func:`filter_components`."""
    dark, core = dark_and_core(array, brain, spacing_kji, n_clusters=n_clusters, smoothing_mm=smoothing_mm, seed=seed)
    return filter_components(dark, spacing_kji, core=core, **shape_limits)


def dark_and_core(
    array: np.ndarray,
    brain: np.ndarray,
    spacing_kji: tuple[float, float, float],
    *,
    n_clusters: int = N_CLUSTERS,
    smoothing_mm: float = SMOOTHING_MM,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The clustering step on the smoothed array: (dark cluster, its core at least ``EDGE_MARGIN_MM`` inside
    ``brain``), bool masks that :func:`filter_components` turns into candidates."""
    sigma = smoothing_mm / np.asarray(spacing_kji, dtype=float)
    smoothed = ndimage.gaussian_filter(array.astype(np.float32), sigma) if smoothing_mm > 0 else array
    dark, core = dark_cluster(smoothed, brain, n_clusters=n_clusters, seed=seed)
    core &= ndimage.binary_erosion(brain > 0, structure=_ellipsoid(EDGE_MARGIN_MM, spacing_kji))
    return dark, core
