"""Skull removal for the two-stage method: a brain mask computed from the SWI volume alone.

Afzal et al. 2022 strip the skull with BrainSuite; this engine needs no external tool. Steps, on the
smoothed volume (all distances in mm, so anisotropic voxels are handled):

1. head = Otsu threshold (air vs head), holes filled;
2. tissue = voxels of the head brighter than a second Otsu threshold inside it (dark skull, air cells and
   sinus drop out; bright scalp stays, still joined to the brain by thin bridges);
3. core = tissue voxels deeper than ``erosion_mm`` inside the tissue *and* deeper than ``skull_mm`` inside the
   head, keep the largest component (the brain; the scalp is a thin shell that erosion removes);
4. dilate the core back by the same distance within tissue, fill holes (ventricle edges, dark nuclei, CMBs).

The mask is computed on a grid of at most ``WORK_MM`` voxels (a 4x smaller volume for 0.9 mm SWI) and
resampled back: the skull is several millimetres thick, so nothing is lost, and it runs 4x faster.

>>> mask = brain_mask(image)                       # doctest: +SKIP
>>> mask.shape == sitk.GetArrayViewFromImage(image).shape, mask.dtype   # doctest: +SKIP
(True, dtype('uint8'))
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from skimage.transform import resize

from CMBDetectionLib.probability.unet.slicing import brighter_than_air, otsu_threshold

SMOOTHING_MM = 1.0
EROSION_MM = 4.0
SKULL_MM = 8.0
WORK_MM = 1.8


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """3D hole filling, then slice-wise filling along k (closes holes open at the top or bottom slice)."""
    filled = ndimage.binary_fill_holes(mask)
    for k in range(filled.shape[0]):
        filled[k] = ndimage.binary_fill_holes(filled[k])
    return filled


def head_mask(smoothed: np.ndarray) -> np.ndarray:
    """The solid head: voxels brighter than air (:func:`brighter_than_air` of the smoothed volume), holes filled,
    largest component.

    Filling comes first: the dark skull separates scalp from brain until the scalp ring is filled.
    """
    return _largest_component(fill_holes(brighter_than_air(smoothed)))


def _mask_on_grid(array: np.ndarray, spacing: np.ndarray, smoothing_mm: float, erosion_mm: float, skull_mm: float) -> np.ndarray:
    smoothed = ndimage.gaussian_filter(array.astype(np.float32), sigma=smoothing_mm / spacing)
    head = head_mask(smoothed)
    tissue = head & (smoothed > otsu_threshold(smoothed[head]))
    depth_in_head = ndimage.distance_transform_edt(head, sampling=spacing)
    depth_in_tissue = ndimage.distance_transform_edt(tissue, sampling=spacing)
    core = _largest_component((depth_in_tissue > erosion_mm) & (depth_in_head > skull_mm))
    if not core.any():
        raise ValueError("no brain found: the volume holds no bright tissue region deep inside the head.")
    grown = (ndimage.distance_transform_edt(~core, sampling=spacing) <= erosion_mm + 0.5 * spacing.max()) & tissue
    return fill_holes(_largest_component(grown | core))


def brain_mask_array(
    array: np.ndarray,
    spacing_kji: tuple[float, float, float],
    *,
    smoothing_mm: float = SMOOTHING_MM,
    erosion_mm: float = EROSION_MM,
    skull_mm: float = SKULL_MM,
) -> np.ndarray:
    """Brain mask (bool ``[k, j, i]``) of an SWI array with voxel ``spacing_kji`` in mm."""
    spacing = np.asarray(spacing_kji, dtype=float)
    zoom = np.minimum(1.0, spacing / WORK_MM)
    small = ndimage.zoom(array.astype(np.float32), zoom, order=1) if (zoom < 1).any() else array
    small_spacing = spacing * np.asarray(array.shape) / np.asarray(small.shape)
    mask = _mask_on_grid(small, small_spacing, smoothing_mm, erosion_mm, skull_mm)
    if mask.shape == array.shape:
        return mask
    return resize(mask.astype(np.float32), array.shape, order=1, mode="edge", anti_aliasing=False) > 0.5


def brain_mask(image: sitk.Image, **options: float) -> np.ndarray:
    """Brain mask of ``image`` as a ``uint8 [k, j, i]`` array on its grid (see :func:`brain_mask_array`)."""
    array = sitk.GetArrayViewFromImage(image)
    return brain_mask_array(array, tuple(image.GetSpacing()[::-1]), **options).astype(np.uint8)
