"""Probability map -> lesions: threshold, 3D 6-connected components, one :class:`results.Lesion` each.

A microbleed seen on several slices is one component, hence one lesion. Centres are unweighted centres of
mass; the diameter is the largest extent (bounding box, in mm) along the image axes.

>>> prob = np.zeros((5, 8, 8), np.float32); prob[1:3, 2:4, 2:4] = 0.9
>>> img = sitk.GetImageFromArray(prob)
>>> labels, lesions = extract_lesions(prob, img)
>>> len(lesions), lesions[0].n_voxels, lesions[0].centre_ijk
(1, 8, (2.5, 2.5, 1.5))
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from skimage.measure import regionprops

from .results import Lesion
from .volume_io import index_to_ras

SIX_CONNECTED = ndimage.generate_binary_structure(3, 1)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """6-connected components of a binary ``[k, j, i]`` mask: (labels int32, count)."""
    labels, count = ndimage.label(mask > 0, structure=SIX_CONNECTED)
    return labels.astype(np.int32, copy=False), int(count)


def component_centres_mm(labels: np.ndarray, count: int, spacing_kji: np.ndarray) -> np.ndarray:
    """Centres of mass of labels ``1..count`` in mm along the array axes (``(count, 3)``; for matching)."""
    if count == 0:
        return np.zeros((0, 3))
    centres = ndimage.center_of_mass(np.ones(labels.shape, np.uint8), labels, range(1, count + 1))
    return np.asarray(centres, dtype=float) * spacing_kji


def _lesion(region, image: sitk.Image, spacing_kji: np.ndarray) -> Lesion:
    k, j, i = region.centroid
    extent = np.array(region.bbox[3:]) - np.array(region.bbox[:3])
    probs = region.image_intensity[region.image]
    return Lesion(
        label=int(region.label),
        centre_ras=tuple(round(float(v), 3) for v in index_to_ras(image, (i, j, k))),
        centre_ijk=(round(float(i), 3), round(float(j), 3), round(float(k), 3)),
        diameter_mm=round(float((extent * spacing_kji).max()), 3),
        volume_mm3=round(float(region.area * np.prod(spacing_kji)), 3),
        n_voxels=int(region.area),
        mean_probability=round(float(probs.mean()), 4),
        max_probability=round(float(probs.max()), 4),
    )


def lesions_from_labels(labels: np.ndarray, probability: np.ndarray, image: sitk.Image) -> list[Lesion]:
    """One :class:`Lesion` per label value of ``labels`` (``[k, j, i]`` on ``image``'s grid)."""
    spacing_kji = np.asarray(image.GetSpacing()[::-1], dtype=float)
    regions = regionprops(labels, intensity_image=probability.astype(np.float32, copy=False))
    return [_lesion(region, image, spacing_kji) for region in regions]


def extract_lesions(
    probability: np.ndarray, image: sitk.Image, threshold: float = 0.5
) -> tuple[np.ndarray, list[Lesion]]:
    """Threshold ``probability`` (``>= threshold``) and return (label map, lesions); labels run 1..n."""
    if probability.shape != tuple(image.GetSize()[::-1]):
        raise ValueError(f"probability shape {probability.shape} does not match the image {image.GetSize()[::-1]}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold {threshold} must lie strictly between 0 and 1.")
    labels, _ = label_components(probability >= threshold)
    return labels, lesions_from_labels(labels, probability, image)
