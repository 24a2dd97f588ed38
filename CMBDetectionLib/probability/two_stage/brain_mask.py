"""Skull removal for the two-stage method: a brain mask computed from the SWI volume alone.

Afzal et al. 2022 strip the skull with BrainSuite; this engine needs no external tool. Steps, on the
smoothed volume (all distances in mm, so anisotropic voxels are handled):

1. head = Otsu threshold (air vs head), holes filled;
2. flatten: divide by the *local tissue level* (:func:`local_tissue_level`, a broad average of the voxels deep
   inside the head), so a bias field cannot push one side of the brain below a global threshold;
3. tissue = head voxels above the *clipped Otsu* threshold of the flattened head (:func:`tissue_threshold`): the
   dark skull (tables, air cells, sinus) drops out while all brain tissue stays, whichever of grey and white
   matter is the brighter; bright scalp stays, still joined to the brain by thin bridges;
4. core = tissue voxels deeper than ``erosion_mm`` inside the tissue *and* deeper than ``skull_mm`` inside the
   head, keep the largest component (the brain; the scalp is a thin shell that erosion removes);
5. dilate the core back by the same distance within tissue, fill holes (ventricle edges, dark nuclei, CMBs).

Why steps 2-3 changed from a plain Otsu split of the head: Otsu puts its one threshold between the two largest
intensity groups, and on SWI these are not always skull vs brain. With grey matter darker than white it split
grey from white (the cortex, and every lobar CMB in it, fell outside the mask); with bright CSF and scalp it split
those from the brain (a mask of the ventricles alone); a bias field pushed the dark side of the head below it.
Clipping the flattened intensities at the tissue level (1.0) merges everything at least as bright as typical
tissue into one group, so the only split left is dark skull vs tissue.

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
LEVEL_DEPTH_MM = 20.0  # voxels this deep inside the head are brain in any axial slab: they set the tissue level
LEVEL_SIGMA_MM = 30.0  # bias fields vary over decimetres; grey/white/CSF detail must not reach the level


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


def local_tissue_level(smoothed: np.ndarray, depth_in_head: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Smooth map of typical brain intensity: a ``LEVEL_SIGMA_MM`` Gaussian average of the voxels deeper than
    ``LEVEL_DEPTH_MM`` in the head (without the darkest and brightest: nuclei, CMBs, ventricles), extended
    outward by the same normalised average.

    A thin slab or small head has few such voxels: the deepest 40 % of the head stand in for them.

    >>> head = np.zeros((9, 40, 40), bool); head[:, 5:35, 5:35] = True
    >>> image = np.where(head, np.linspace(50.0, 150.0, 40)[None, None, :], 0.0)   # a strong left-right bias
    >>> depth = ndimage.distance_transform_edt(head)
    >>> level = local_tissue_level(image, depth, np.array([2.0, 2.0, 2.0]))
    >>> bool(level[4, 20, 30] > level[4, 20, 10])
    True
    """
    deep = depth_in_head > LEVEL_DEPTH_MM
    if deep.sum() < 0.1 * (depth_in_head > 0).sum():
        deep = depth_in_head >= np.percentile(depth_in_head[depth_in_head > 0], 60)
    median = float(np.median(smoothed[deep]))
    deep &= (smoothed > 0.5 * median) & (smoothed < 2.0 * median)
    sigma = LEVEL_SIGMA_MM / spacing
    total = ndimage.gaussian_filter(np.where(deep, smoothed, 0.0).astype(np.float32), sigma)
    weight = ndimage.gaussian_filter(deep.astype(np.float32), sigma)
    return total / np.maximum(weight, 1e-3)


def tissue_threshold(flat_head: np.ndarray) -> float:
    """Otsu threshold of flattened head intensities clipped at the tissue level 1.0 (see the module docstring).

    >>> skull, grey, white, csf = np.full(300, 0.1), np.full(400, 0.7), np.full(600, 1.0), np.full(300, 2.5)
    >>> 0.1 < tissue_threshold(np.concatenate([skull, grey, white, csf])) < 0.7     # grey matter darker: kept
    True
    """
    return otsu_threshold(np.minimum(flat_head, 1.0))


def _mask_on_grid(array: np.ndarray, spacing: np.ndarray, smoothing_mm: float, erosion_mm: float, skull_mm: float) -> np.ndarray:
    smoothed = ndimage.gaussian_filter(array.astype(np.float32), sigma=smoothing_mm / spacing)
    head = head_mask(smoothed)
    depth_in_head = ndimage.distance_transform_edt(head, sampling=spacing)
    flat = smoothed / np.maximum(local_tissue_level(smoothed, depth_in_head, spacing), 1e-6)
    tissue = head & (flat > tissue_threshold(flat[head]))
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
