"""First stage of the two-stage method: dark-cluster candidates and shape/size false-positive reduction.

Afzal et al. 2022, sections 3.3-3.4: k-means (k = 4) on the intensities inside the brain, the darkest
cluster holds the microbleeds; its connected components are candidates, and components whose size or shape
cannot be a CMB (diameter outside 2-10 mm, elongated like a vessel) are dropped before classification.

Shape measures use millimetres: ``diameter_mm`` is the equivalent-sphere diameter of the component, and
``elongation`` the ratio of the largest to the smallest principal axis of its voxels (each voxel counted as a
box, so a one-slice blob is not infinitely flat).

>>> labels, found = find_candidates(array, brain, (2.0, 0.9, 0.9))      # doctest: +SKIP
>>> found[0].centre_kji, found[0].diameter_mm                           # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from sklearn.cluster import KMeans

N_CLUSTERS = 4
MIN_DIAMETER_MM = 2.0
MAX_DIAMETER_MM = 10.0
MAX_ELONGATION = 3.0
KMEANS_SAMPLE = 100_000  # brain voxels used to fit the clusters; all brain voxels are then assigned
SIX_CONNECTED = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class Candidate:
    """One connected component of the dark cluster that passed the size/shape filter."""

    label: int
    centre_kji: tuple[float, float, float]  # centre of mass, array index
    diameter_mm: float
    elongation: float
    n_voxels: int


def dark_cluster(array: np.ndarray, brain: np.ndarray, *, n_clusters: int = N_CLUSTERS, seed: int = 0) -> np.ndarray:
    """Brain voxels assigned to the darkest of ``n_clusters`` k-means intensity clusters (bool mask)."""
    values = array[brain > 0].astype(np.float32).reshape(-1, 1)
    if len(values) < n_clusters:
        raise ValueError(f"the brain mask holds {len(values)} voxels; k-means needs at least {n_clusters}.")
    rng = np.random.default_rng(seed)
    sample = values[rng.choice(len(values), size=min(KMEANS_SAMPLE, len(values)), replace=False)]
    kmeans = KMeans(n_clusters=n_clusters, n_init=3, random_state=seed).fit(sample)
    darkest = int(np.argmin(kmeans.cluster_centers_[:, 0]))
    mask = np.zeros(array.shape, dtype=bool)
    mask[brain > 0] = kmeans.predict(values) == darkest
    return mask


def _shape(coords_kji: np.ndarray, spacing: np.ndarray) -> tuple[float, float]:
    """(equivalent-sphere diameter mm, principal-axis elongation) of one component's voxel indices."""
    volume = len(coords_kji) * float(np.prod(spacing))
    diameter = (6.0 * volume / np.pi) ** (1.0 / 3.0)
    points = coords_kji * spacing
    # Each voxel is a uniform box: its own variance spacing^2/12 keeps thin components from degenerating.
    covariance = np.cov(points, rowvar=False, bias=True) if len(points) > 1 else np.zeros((3, 3))
    eigen = np.linalg.eigvalsh(covariance + np.diag(spacing**2 / 12.0))
    return diameter, float(np.sqrt(eigen[-1] / eigen[0]))


def filter_components(
    mask: np.ndarray,
    spacing_kji: tuple[float, float, float],
    *,
    min_diameter_mm: float = MIN_DIAMETER_MM,
    max_diameter_mm: float = MAX_DIAMETER_MM,
    max_elongation: float = MAX_ELONGATION,
) -> tuple[np.ndarray, list[Candidate]]:
    """6-connected components of ``mask`` kept by size and shape: (label map int32 relabelled 1..n, candidates)."""
    spacing = np.asarray(spacing_kji, dtype=float)
    labels, count = ndimage.label(mask, structure=SIX_CONNECTED)
    kept = np.zeros(count + 1, dtype=np.int32)
    found: list[Candidate] = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        coords = np.argwhere(labels[box] == index)
        diameter, elongation = _shape(coords, spacing)
        if not (min_diameter_mm <= diameter <= max_diameter_mm and elongation <= max_elongation):
            continue
        kept[index] = len(found) + 1
        centre = coords.mean(axis=0) + np.array([s.start for s in box])
        found.append(
            Candidate(len(found) + 1, tuple(float(c) for c in centre), round(diameter, 3), round(elongation, 3), len(coords))
        )
    return kept[labels], found


def find_candidates(
    array: np.ndarray,
    brain: np.ndarray,
    spacing_kji: tuple[float, float, float],
    *,
    n_clusters: int = N_CLUSTERS,
    seed: int = 0,
    **shape_limits: float,
) -> tuple[np.ndarray, list[Candidate]]:
    """Candidates of an SWI array inside ``brain``: darkest k-means cluster, then :func:`filter_components`."""
    dark = dark_cluster(array, brain, n_clusters=n_clusters, seed=seed)
    return filter_components(dark, spacing_kji, **shape_limits)
