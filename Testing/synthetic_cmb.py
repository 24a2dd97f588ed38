"""Tiny synthetic SWI volumes for the UNet-engine tests: dark spheres (CMBs) in a noisy bright ellipsoid (head)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk


def synthetic_subject(seed: int, shape_kji=(12, 64, 64), spacing_ijk=(1.0, 1.0, 2.0), n_cmbs: int = 3,
                      radius_mm: float = 2.5, direction=None, n_distractors: int = 0,
                      ) -> tuple[sitk.Image, sitk.Image, list[np.ndarray]]:
    """(image float32, mask uint8, CMB centres as (k, j, i) voxel indices).

    ``n_distractors`` adds faint 2x2-voxel dark dots (vein cross-sections, not in the mask): at the model's
    true pixel size a clean sphere phantom gives the UNet no false candidates, which a filter needs to learn.
    """
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(shape_kji, dtype=float)
    centre = (np.array(shape_kji) - 1) / 2
    head = ((k - centre[0]) / (shape_kji[0] * 0.6)) ** 2 + ((j - centre[1]) / (shape_kji[1] * 0.42)) ** 2 \
        + ((i - centre[2]) / (shape_kji[2] * 0.42)) ** 2 <= 1
    image = np.where(head, 400.0, 5.0) + rng.normal(0, 20, shape_kji)
    mask = np.zeros(shape_kji, np.uint8)
    spacing_kji = np.array(spacing_ijk[::-1])
    centres = []
    for _ in range(10_000):
        if len(centres) == n_cmbs:
            break
        c = np.array([rng.integers(2, shape_kji[0] - 2), rng.integers(16, shape_kji[1] - 16), rng.integers(16, shape_kji[2] - 16)])
        if any(np.linalg.norm((c - o) * spacing_kji) < 12 for o in centres):
            continue
        sphere = (((k - c[0]) * spacing_kji[0]) ** 2 + ((j - c[1]) * spacing_kji[1]) ** 2
                  + ((i - c[2]) * spacing_kji[2]) ** 2) <= radius_mm ** 2
        image[sphere] = 60.0 + rng.normal(0, 10, sphere.sum())
        mask[sphere] = 1
        centres.append(c)
    else:
        raise ValueError(f"cannot place {n_cmbs} CMBs 12 mm apart in a {shape_kji} volume")
    _add_distractors(image, mask, n_distractors, np.random.default_rng(seed + 10_000))
    img = sitk.GetImageFromArray(image.astype(np.float32))
    img.SetSpacing(spacing_ijk)
    img.SetOrigin((10.0, -20.0, 5.0))
    if direction is not None:
        img.SetDirection(direction)
    msk = sitk.GetImageFromArray(mask)
    msk.CopyInformation(img)
    return img, msk, centres


def _add_distractors(image: np.ndarray, mask: np.ndarray, n: int, rng: np.random.Generator) -> None:
    """Darken ``n`` 2x2 in-plane patches at random places at least 4 voxels from any CMB (in place)."""
    shape = image.shape
    near_cmb = np.zeros(shape, bool)
    if mask.any():
        from scipy import ndimage
        near_cmb = ndimage.binary_dilation(mask > 0, iterations=4)
    placed = 0
    while placed < n:
        k, j, i = rng.integers(1, shape[0] - 1), rng.integers(shape[1] // 4, 3 * shape[1] // 4), \
            rng.integers(shape[2] // 4, 3 * shape[2] // 4)
        if near_cmb[k, j - 1 : j + 1, i - 1 : i + 1].any():
            continue
        image[k, j - 1 : j + 1, i - 1 : i + 1] = 150.0
        placed += 1


def write_dataset(folder: Path, n: int, seed0: int = 0, **kwargs) -> Path:
    """``n`` subjects in the phantom layout ``<name>_swi.nii.gz`` + ``<name>_cmb.nii.gz``."""
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(n):
        image, mask, _ = synthetic_subject(seed0 + s, **kwargs)
        sitk.WriteImage(image, str(folder / f"syn{s:02d}_swi.nii.gz"))
        sitk.WriteImage(mask, str(folder / f"syn{s:02d}_cmb.nii.gz"))
    return folder
