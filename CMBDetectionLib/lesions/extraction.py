"""Probability map -> lesions: threshold, 3D 6-connected components, one :class:`results.Lesion` each.

A microbleed seen on several slices is one component, hence one lesion. Centres are unweighted centres of
mass; the diameter is the largest extent (bounding box, in mm) along the image axes. The pipeline redraws
the components' outlines (:mod:`lesion_outline`) between :func:`lesion_labels` and :func:`lesions_from_labels`.

>>> prob = np.zeros((5, 8, 8), np.float32); prob[1:3, 2:4, 2:4] = 0.9
>>> img = sitk.GetImageFromArray(prob)
>>> labels, lesions = extract_lesions(prob, img)
>>> len(lesions), lesions[0].n_voxels, lesions[0].centre_ijk
(1, 8, (2.5, 2.5, 1.5))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from skimage.measure import regionprops

from CMBDetectionLib.imageio.volumes import index_to_ras
from CMBDetectionLib.results import SIX_CONNECTED, Lesion


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


def _lesion(region, image: sitk.Image, spacing_kji: np.ndarray, mean_probability: float, max_probability: float) -> Lesion:
    k, j, i = region.centroid
    extent = np.array(region.bbox[3:]) - np.array(region.bbox[:3])
    return Lesion(
        label=int(region.label),
        centre_ras=tuple(round(float(v), 3) for v in index_to_ras(image, (i, j, k))),
        centre_ijk=(round(float(i), 3), round(float(j), 3), round(float(k), 3)),
        diameter_mm=round(float((extent * spacing_kji).max()), 3),
        volume_mm3=round(float(region.area * np.prod(spacing_kji)), 3),
        n_voxels=int(region.area),
        mean_probability=round(mean_probability, 4),
        max_probability=round(max_probability, 4),
    )


def lesions_from_labels(
    labels: np.ndarray, probability: np.ndarray, image: sitk.Image, scored_labels: np.ndarray | None = None
) -> list[Lesion]:
    """One :class:`Lesion` per label value of ``labels`` (``[k, j, i]`` on ``image``'s grid).

    Each lesion's mean and max probability are taken over its voxels in ``scored_labels`` (default
    ``labels``): the detector's own voxels when the outline was redrawn, since the map scores those.
    """
    spacing_kji = np.asarray(image.GetSpacing()[::-1], dtype=float)
    scored = labels if scored_labels is None else scored_labels
    boxes = ndimage.find_objects(scored)  # per-lesion boxes: whole-volume label statistics would copy the volume
    lesions = []
    for region in regionprops(labels):
        box = boxes[region.label - 1]
        values = probability[box][scored[box] == region.label]
        lesions.append(_lesion(region, image, spacing_kji, float(values.mean()), float(values.max())))
    return lesions


def remove_lesions(
    labels: np.ndarray, lesions: list[Lesion], drop: Collection[int]
) -> tuple[np.ndarray, list[Lesion]]:
    """``labels`` and ``lesions`` without the lesions labelled ``drop``, the rest renumbered 1..n in order.

    >>> labels = np.array([[[1, 0, 2, 0, 3]]], np.int32)
    >>> lesions = lesions_from_labels(labels, np.ones(labels.shape, np.float32), sitk.GetImageFromArray(labels))
    >>> kept_labels, kept = remove_lesions(labels, lesions, [2])
    >>> kept_labels.tolist(), [(lesion.label, lesion.centre_ijk[0]) for lesion in kept]
    ([[[1, 0, 0, 0, 2]]], [(1, 0.0), (2, 4.0)])
    """
    dropped = set(drop)
    kept = [lesion for lesion in lesions if lesion.label not in dropped]
    renumber = np.zeros(int(labels.max(initial=0)) + 1, np.int32)
    renumber[[lesion.label for lesion in kept]] = np.arange(1, len(kept) + 1)
    return renumber[labels], [dataclasses.replace(lesion, label=n) for n, lesion in enumerate(kept, start=1)]


def lesion_labels(probability: np.ndarray, image: sitk.Image, threshold: float = 0.5) -> np.ndarray:
    """Threshold ``probability`` (``>= threshold``) into 6-connected components labelled 1..n (``int32``)."""
    if probability.shape != tuple(image.GetSize()[::-1]):
        raise ValueError(f"probability shape {probability.shape} does not match the image {image.GetSize()[::-1]}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold {threshold} must lie strictly between 0 and 1.")
    return label_components(probability >= threshold)[0]


def extract_lesions(
    probability: np.ndarray, image: sitk.Image, threshold: float = 0.5
) -> tuple[np.ndarray, list[Lesion]]:
    """Threshold ``probability`` and return (label map, lesions) with the detector's outlines; labels run 1..n."""
    labels = lesion_labels(probability, image, threshold)
    return labels, lesions_from_labels(labels, probability, image)
