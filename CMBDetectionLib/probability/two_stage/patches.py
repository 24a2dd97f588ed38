"""Candidate patches for the ResNet50 classifier, and the paper's augmentation.

A patch is a square axial window of ``FIELD_OF_VIEW_MM`` around a candidate centre, resampled to
``patch_size`` pixels (as Afzal et al. resize to 224). Its three channels (:data:`PATCH_INPUTS`) are either

- ``"2.5d"``: the acquired axial slices k-1, k, k+1 at the candidate centre (k rounded; no interpolation across
  slices; the first and last slice repeat themselves), so the network sees whether a dark dot continues through
  slices (a vessel) or ends (a microbleed); or
- ``"paper"``: slice k three times, the paper's single grey-level patch given to a 3-channel ResNet50.

Patches are taken from the normalised volume (``preprocessing.normalise_intensity``, ~0..1).

Augmentation (Afzal et al. 2022, section 3.2): left-right and up-down flips, rotation in [-30, 30] degrees and
Gaussian blur with sigma in [0, 3] pixels of a 224-pixel patch (scaled to ``patch_size``).

>>> volume = np.zeros((20, 128, 128), np.float32)
>>> patches = extract_patches(volume, np.array([[10.0, 64.0, 64.0]]), (2.0, 0.9, 0.9), patch_size=64)
>>> patches.shape
(1, 64, 64, 3)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FIELD_OF_VIEW_MM = 32.0
#: channel -> slice offset from the candidate's slice, per patch input
PATCH_INPUTS = {"2.5d": (-1, 0, 1), "paper": (0, 0, 0)}
MAX_ROTATION_DEG = 30.0
MAX_BLUR_SIGMA_224 = 3.0  # the paper's blur range, in pixels of its 224x224 patches


def extract_patches(
    volume: np.ndarray,
    centres_kji: np.ndarray,
    spacing_kji: tuple[float, float, float],
    *,
    patch_size: int = 64,
    field_of_view_mm: float = FIELD_OF_VIEW_MM,
    patch_input: str = "2.5d",
) -> np.ndarray:
    """``(n, patch_size, patch_size, 3)`` float32 patches around ``centres_kji`` (n, 3) of a ``[k, j, i]`` volume.

    Channels are the slices of ``patch_input`` (:data:`PATCH_INPUTS`; k rounded, edge slices repeat); in-plane
    linear interpolation in mm; outside the volume is 0.
    """
    if patch_input not in PATCH_INPUTS:
        raise ValueError(f"patch input {patch_input!r} unknown; use one of {', '.join(PATCH_INPUTS)}.")
    centres = np.asarray(centres_kji, dtype=float).reshape(-1, 3)
    if len(centres) == 0:
        return np.zeros((0, patch_size, patch_size, 3), dtype=np.float32)
    spacing = np.asarray(spacing_kji, dtype=float)
    offsets_mm = (np.arange(patch_size) - (patch_size - 1) / 2.0) * (field_of_view_mm / patch_size)
    rows = centres[:, 1, None] + offsets_mm[None, :] / spacing[1]  # (n, p)
    cols = centres[:, 2, None] + offsets_mm[None, :] / spacing[2]
    offsets = np.array(PATCH_INPUTS[patch_input])
    slices = np.clip(np.rint(centres[:, 0])[:, None] + offsets, 0, volume.shape[0] - 1)  # (n, 3)
    n, p = len(centres), patch_size
    coords = np.stack(
        np.broadcast_arrays(
            slices[:, None, None, :], rows[:, :, None, None], cols[:, None, :, None]
        ),
        axis=0,
    ).reshape(3, -1)
    values = ndimage.map_coordinates(volume.astype(np.float32, copy=False), coords, order=1, mode="constant", cval=0.0)
    return values.reshape(n, p, p, 3).astype(np.float32)


def augment(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random flip/rotation/blur of a ``(p, p, 3)`` patch (the paper's augmentations)."""
    out = patch
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.5:
        out = out[::-1]
    angle = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)
    out = ndimage.rotate(out, angle, axes=(0, 1), reshape=False, order=1, mode="nearest")
    sigma = rng.uniform(0.0, MAX_BLUR_SIGMA_224) * patch.shape[0] / 224.0
    if sigma > 0.05:
        out = ndimage.gaussian_filter(out, sigma=(sigma, sigma, 0.0))
    return np.ascontiguousarray(out, dtype=np.float32)


def balanced_batch(
    patches: np.ndarray, labels: np.ndarray, batch_size: int, rng: np.random.Generator, *, augmented: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """A batch with half CMB and half non-CMB patches (drawn with replacement), each augmented.

    Oversampling the rare CMB class with augmented copies is how the paper balances its classes.
    """
    positive, negative = np.flatnonzero(labels > 0), np.flatnonzero(labels == 0)
    if len(positive) == 0 or len(negative) == 0:
        raise ValueError("training needs candidate patches of both classes (CMB and non-CMB).")
    n_pos = batch_size // 2
    chosen = np.concatenate([rng.choice(positive, n_pos), rng.choice(negative, batch_size - n_pos)])
    rng.shuffle(chosen)
    batch = np.stack([augment(patches[i], rng) if augmented else patches[i] for i in chosen])
    return batch, labels[chosen].astype(np.float32)
