"""Domain randomisation of one training sample, in the spirit of SynthSeg: draw at random what should not
matter (tissue contrast, resolution, slice thickness, bias, noise, blur, gamma, ghosts, motion, orientation,
coverage) and build the sample from a subject's 3D slice stack, so that the UNet learns the CMB, not the
generator.

Each transform is applied with its own probability (:data:`PROBABILITY`), so unaltered phantom contrast is
still seen often. The order follows an acquisition: the slab's coverage sets the intensity normalisation,
then tissue contrast and bias, the slice profile (thick slices average neighbours), the in-plane geometry, the
in-plane resolution (noise added at the acquired resolution, so it is correlated after upsampling), blur,
k-space artefacts, and last a gamma on the displayed values. Only the geometry changes the mask.

>>> images = np.random.default_rng(0).uniform(0.3, 0.9, (12, 64, 64)).astype(np.float32)
>>> masks = np.zeros((12, 64, 64), np.uint8); masks[6, 30:33, 30:33] = 1
>>> image, mask = randomised_sample(images, masks, 6, (31, 31), 32, np.random.default_rng(1))
>>> image.shape, mask.shape, int(mask.max())
((32, 32), (32, 32), 1)
"""

from __future__ import annotations

import numpy as np

from CMBDetectionLib.probability.unet.slicing import normalise_intensity
from CMBDetectionLib.training.augmentation import (
    LUT_KNOTS,
    add_rician_noise,
    apply_gamma,
    bias_field,
    blur,
    downsample,
    flat_lut,
    geometric_crop,
    inverted_lut,
    kspace_phase_error,
    remap_tissue,
    thick_slice,
    tissue_level,
    upsample,
)

#: chance that each transform is applied to a sample
PROBABILITY = {
    "partial_slab": 0.2, "tissue": 0.6, "bias": 0.5, "thick_slice": 0.4, "resolution": 0.4, "noise": 0.5,
    "blur": 0.2, "ghost": 0.1, "motion": 0.1, "gamma": 0.4, "scale": 0.5,
}
#: ranges drawn from: phantoms are 0.9 mm in-plane with 2 mm slices
RANGES = {
    "slab_slices": (8, 30),            # partial coverage, as clinical slabs that miss vertex or cerebellum
    "lesion_power": (0.6, 1.6),        # CMB and vein contrast after remapping
    "bias_log_sd": (0.05, 0.35),       # a field of up to about x2 across the head
    "thick_sigma_slices": (0.4, 1.2),  # slice profile: about 2-6 mm slices
    "pixel_factor": (1.1, 1.7),        # acquisitions up to 1.5 mm in-plane (0.45-0.9 mm look like the phantoms)
    "snr": (8.0, 40.0),
    "blur_sigma_px": (0.3, 1.0),
    "gamma": (0.6, 1.6),
    "scale": (0.8, 1.25),
    "ghost_shift_px": (0.1, 0.8),       # odd lines acquired with the object shifted: an N/2 ghost of the edges
    "motion_lines": (0.03, 0.15),       # fraction of phase-encode lines hit by motion
}


def _uniform(rng: np.random.Generator, name: str) -> float:
    return float(rng.uniform(*RANGES[name]))


def _happens(rng: np.random.Generator, name: str) -> bool:
    return bool(rng.random() < PROBABILITY[name])


def random_lut(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Knots of a random tissue curve: inverted, flat, monotone with new contrast, or arbitrary (equal odds).

    >>> xs, ys = random_lut(np.random.default_rng(0)); xs.shape == ys.shape
    True
    """
    jitter = rng.normal(0.0, 0.04, len(LUT_KNOTS))
    kind = rng.integers(4)
    if kind == 0:
        return inverted_lut(jitter)
    if kind == 1:
        return flat_lut(rng.uniform(0.35, 0.85), jitter)
    values = rng.uniform(0.1, 1.1, len(LUT_KNOTS) - 1)
    values = np.sort(values) if kind == 2 else values
    return LUT_KNOTS.copy(), np.concatenate([[rng.uniform(0.0, 0.08)], values])


def slice_window(images: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(slices, their offsets from ``k``): slices ``k - 2 .. k + 2`` as a float32 copy, fewer at the stack's
    ends. When a partial slab is drawn, only the slab's slices (8-30 around ``k``) are kept, normalised as
    inference would normalise that slab on its own.

    >>> window, offsets = slice_window(np.zeros((3, 8, 8)), 0, np.random.default_rng(0)); offsets.tolist()
    [0, 1, 2]
    """
    low, high = max(k - 2, 0), min(k + 3, len(images))
    if not _happens(rng, "partial_slab"):
        return np.array(images[low:high], np.float32), np.arange(low, high) - k
    n = int(rng.integers(RANGES["slab_slices"][0], RANGES["slab_slices"][1] + 1))
    first = int(np.clip(k - rng.integers(n), 0, max(len(images) - n, 0)))
    slab = normalise_intensity(np.array(images[first : first + n], np.float32))
    low, high = max(low, first), min(high, first + n)
    return slab[low - first : high - first], np.arange(low, high) - k


def _profile(rng: np.random.Generator, offsets: np.ndarray) -> np.ndarray:
    """Slice-profile weights over ``offsets`` from the centre slice (1 at the centre only when not drawn)."""
    if not _happens(rng, "thick_slice"):
        return (offsets == 0).astype(np.float32)
    return np.exp(-0.5 * (offsets / _uniform(rng, "thick_sigma_slices")) ** 2)


def _tissue(window: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Contrast and bias, applied alike to every slice that contributes to the thick slice."""
    lut = random_lut(rng) if _happens(rng, "tissue") else None
    power = _uniform(rng, "lesion_power")
    field = bias_field(window.shape[1:], rng.normal(0.0, _uniform(rng, "bias_log_sd"), (4, 4))) \
        if _happens(rng, "bias") else None
    out = window.copy()
    for n in np.flatnonzero(weights > 1e-3):
        out[n] = remap_tissue(out[n], *lut, lesion_power=power) if lut is not None else out[n]
        out[n] = out[n] * field if field is not None else out[n]
    return out


def _acquisition(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """In-plane resolution and noise: noise is added on the acquired grid, then everything is upsampled."""
    level = tissue_level(image)
    coarse = downsample(image, _uniform(rng, "pixel_factor")) if _happens(rng, "resolution") else image
    if _happens(rng, "noise"):
        coarse = add_rician_noise(coarse, _uniform(rng, "snr"), rng, level)
    return upsample(coarse, image.shape) if coarse.shape != image.shape else coarse


def _artefacts(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur, N/2 ghost and motion lines along a random phase-encode axis, gamma."""
    axis, n = int(rng.integers(2)), image.shape[0]
    if _happens(rng, "blur"):
        image = blur(image, _uniform(rng, "blur_sigma_px"))
    if _happens(rng, "ghost"):
        lines = np.arange(1, n, 2)
        image = kspace_phase_error(image, lines, np.full(len(lines), _uniform(rng, "ghost_shift_px")), axis)
    if _happens(rng, "motion"):
        lines = rng.choice(n, max(1, int(_uniform(rng, "motion_lines") * n)), replace=False)
        image = kspace_phase_error(image, lines, rng.uniform(-3.0, 3.0, len(lines)), axis)
    return apply_gamma(image, _uniform(rng, "gamma")) if _happens(rng, "gamma") else image


def randomised_sample(
    images: np.ndarray, masks: np.ndarray, k: int, centre: tuple[int, int], crop: int, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """One randomised ``crop`` x ``crop`` (image, mask) pair from slice ``k`` of a stack ``[k, rows, cols]``
    (normalised images, 0/1 masks), centred near ``centre``; the mask is slice ``k``'s, moved with the geometry."""
    window, offsets = slice_window(images, k, rng)
    weights = _profile(rng, offsets)
    image = thick_slice(_tissue(window, weights, rng), weights)
    scale = _uniform(rng, "scale") if _happens(rng, "scale") else 1.0
    flips = (bool(rng.random() < 0.5), bool(rng.random() < 0.5))
    image, mask = geometric_crop(image, masks[k], centre, crop, rng.uniform(-180.0, 180.0), scale, flips)
    return _artefacts(_acquisition(image, rng), rng), mask
