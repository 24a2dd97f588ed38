"""Domain-randomisation transforms: each does what it says, keeps lesions darker than their surroundings,
keeps shapes and value range, and moves labels only with the geometry."""

from __future__ import annotations

import numpy as np
import pytest

from CMBDetectionLib.training.augmentation import (
    VALUE_RANGE,
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
    upsample,
)
from CMBDetectionLib.training.data import CropBatches, SliceStack
from CMBDetectionLib.training.randomisation import random_lut, randomised_sample, slice_window

SIZE = 96
GM, WM, CMB = 0.45, 0.8, 0.15


def _disk(centre: tuple[int, int], radius: float, size: int = SIZE) -> np.ndarray:
    rows, cols = np.indices((size, size))
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2


def _head_slice(rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, CMB mask, white-matter mask): a head disk, left half grey matter, right half white matter,
    one CMB in each half, air around."""
    head = _disk((SIZE // 2, SIZE // 2), 40)
    white = head & (np.indices((SIZE, SIZE))[1] >= SIZE // 2)
    image = np.where(white, WM, np.where(head, GM, 0.0)).astype(np.float32)
    cmbs = _disk((48, 30), 2.5) | _disk((48, 66), 2.5)
    image[cmbs] = CMB
    if rng is not None:
        image = np.clip(image + rng.normal(0, 0.02, image.shape) * head, 0, 1.5).astype(np.float32)
    return image, cmbs, white


def _ring(mask: np.ndarray, inner: int = 2, outer: int = 5) -> np.ndarray:
    """Pixels 2-5 px outside ``mask``: the lesion's local background."""
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=outer) & ~ndimage.binary_dilation(mask, iterations=inner)


def _darker_than_surroundings(image: np.ndarray, cmbs: np.ndarray) -> bool:
    from scipy import ndimage

    labels, n = ndimage.label(cmbs)
    return all(image[labels == i].mean() < 0.8 * image[_ring(labels == i)].mean() for i in range(1, n + 1))


def _high_frequency_energy(image: np.ndarray) -> float:
    power = np.abs(np.fft.fftshift(np.fft.fft2(image))) ** 2
    rows, cols = np.indices(image.shape) - np.array(image.shape)[:, None, None] // 2
    return float(power[np.hypot(rows, cols) > image.shape[0] / 4].sum())


def _check_range(image: np.ndarray, shape: tuple[int, ...]) -> None:
    assert image.shape == shape and image.dtype == np.float32 and np.isfinite(image).all()
    assert VALUE_RANGE[0] <= image.min() and image.max() <= VALUE_RANGE[1]


def test_inversion_flips_grey_white_order_but_cmbs_stay_darker():
    image, cmbs, white = _head_slice()
    grey = (image == GM)
    out = remap_tissue(image, *inverted_lut())
    _check_range(out, image.shape)
    assert out[white & ~cmbs].mean() < out[grey].mean()  # was WM > GM
    assert _darker_than_surroundings(out, cmbs)


def test_flat_contrast_removes_grey_white_difference_and_keeps_cmbs():
    image, cmbs, white = _head_slice()
    out = remap_tissue(image, *flat_lut(0.6))
    assert abs(out[white & ~cmbs].mean() - out[image == GM].mean()) < 0.02
    assert _darker_than_surroundings(out, cmbs)


@pytest.mark.parametrize("seed", range(8))
def test_any_random_contrast_keeps_cmbs_darker_and_values_in_range(seed):
    rng = np.random.default_rng(seed)
    image, cmbs, _ = _head_slice(rng)
    out = remap_tissue(image, *random_lut(rng), lesion_power=rng.uniform(0.6, 1.6))
    _check_range(out, image.shape)
    assert _darker_than_surroundings(out, cmbs)


def test_lesion_power_sets_cmb_contrast():
    image, cmbs, _ = _head_slice()
    faint, strong = (remap_tissue(image, *flat_lut(0.6), lesion_power=p) for p in (0.5, 1.5))
    assert faint[cmbs].mean() > strong[cmbs].mean()


def test_down_then_up_sampling_removes_high_frequencies_and_keeps_shape():
    image, _, _ = _head_slice(np.random.default_rng(0))
    coarse = downsample(image, 1.6)
    assert coarse.shape == (60, 60)
    out = upsample(coarse, image.shape)
    _check_range(out, image.shape)
    assert _high_frequency_energy(out) < 0.5 * _high_frequency_energy(image)
    assert abs(out.mean() - image.mean()) < 0.02  # content kept, detail lost


def test_blur_removes_high_frequencies():
    image, _, _ = _head_slice(np.random.default_rng(1))
    out = blur(image, 1.0)
    _check_range(out, image.shape)
    assert _high_frequency_energy(out) < 0.5 * _high_frequency_energy(image)


@pytest.mark.parametrize("snr", [8.0, 20.0])
def test_noise_reaches_the_requested_snr(snr):
    image = np.full((128, 128), 0.6, np.float32)
    out = add_rician_noise(image, snr, np.random.default_rng(2))
    _check_range(out, image.shape)
    assert out.mean() / out.std() == pytest.approx(snr, rel=0.15)


def test_gamma_is_monotone_and_changes_midtones():
    ramp = np.linspace(0, 1.5, 50, dtype=np.float32)[None, :]
    out = apply_gamma(ramp, 1.5)
    assert (np.diff(out[0]) > 0).all() and out[0, 20] < ramp[0, 20]


def test_bias_field_is_smooth_and_multiplicative():
    field = bias_field((SIZE, SIZE), np.random.default_rng(3).normal(0, 0.3, (4, 4)))
    assert field.shape == (SIZE, SIZE) and (field > 0).all() and field.max() / field.min() > 1.2
    assert np.abs(np.diff(np.log(field), axis=0)).max() < 0.1  # no edges: smooth across the slice


def test_thick_slice_averages_neighbours_and_dilutes_a_thin_cmb():
    image, cmbs, _ = _head_slice()
    clean = image.copy()
    clean[cmbs] = np.where(np.indices(image.shape)[1] >= SIZE // 2, WM, GM)[cmbs]
    window = np.stack([clean, image, clean])
    out = thick_slice(window, np.array([1.0, 2.0, 1.0]))
    _check_range(out, image.shape)
    assert out[cmbs].mean() == pytest.approx(0.5 * image[cmbs].mean() + 0.5 * clean[cmbs].mean(), abs=1e-5)
    assert _darker_than_surroundings(out, cmbs)


def test_half_fov_ghost_puts_signal_where_there_was_air():
    image = np.zeros((64, 64), np.float32)
    image[24:40, 24:40] = 1.0
    lines = np.arange(1, 64, 2)
    out = kspace_phase_error(image, lines, np.full(len(lines), 0.8), axis=0)
    _check_range(out, image.shape)
    assert out[0:8, 24:40].max() > 0.02 and image[0:8].max() == 0  # the N/2 copy, 32 rows away
    assert out[:, :20].max() < 1e-3  # only along the phase-encode axis


def test_geometry_moves_mask_with_image():
    image, cmbs, _ = _head_slice()
    image[image == 0] = GM  # no air edge in the crop: the only dark pixels are the CMBs
    for angle, scale, flips in ((0.0, 1.0, (False, False)), (37.0, 1.2, (True, False)), (-120.0, 0.85, (False, True))):
        out, mask = geometric_crop(image, cmbs.astype(np.uint8), (48, 48), 48, angle, scale, flips)
        _check_range(out, (48, 48))
        assert mask.shape == (48, 48) and set(np.unique(mask)) == {0, 1}
        # the dark pixels of the moved image are where the moved mask is
        dark = out < 0.3
        assert (dark & (mask == 1)).sum() >= 0.7 * mask.sum() and (dark & (mask == 0)).sum() < 0.4 * mask.sum()
        assert mask.sum() == pytest.approx(cmbs.sum() * scale ** 2, rel=0.35)


def test_partial_slab_is_normalised_as_inference_would():
    images = np.zeros((40, 32, 32), np.float32)
    images[:, 8:24, 8:24] = np.linspace(0.2, 1.2, 40)[:, None, None]  # brightness changes from slice to slice
    original = images.copy()
    rng = np.random.default_rng(0)
    windows = [slice_window(images, 20, rng) for _ in range(40)]
    np.testing.assert_array_equal(images, original)  # the stack itself is never changed
    unchanged = [w for w, offsets in windows if offsets.tolist() == [-2, -1, 0, 1, 2] and np.allclose(w, images[18:23])]
    slabs = [(w, offsets) for w, offsets in windows if not np.allclose(w, images[20 + offsets])]
    assert unchanged and slabs, "either plain windows or partial slabs never drawn in 40 samples"
    for w, offsets in slabs:
        assert 0 in offsets and len(w) == len(offsets) and w[:, :8].max() == 0.0
        # renormalised on a slab of 8-30 slices: brighter than the whole stack's scale would make them
        before, after = images[20 + offsets, 16, 16], w[:, 16, 16]
        assert after.min() < before.min() or after.max() > before.max()
        assert w.max() <= 1.5


def test_randomised_samples_keep_shape_range_and_labels():
    rng = np.random.default_rng(5)
    slices = np.stack([_head_slice(rng)[0] for _ in range(7)])
    masks = np.stack([_head_slice()[1].astype(np.uint8)] * 7)
    for _ in range(12):
        image, mask = randomised_sample(slices, masks, 3, (48, 48), 64, rng)
        _check_range(image, (64, 64))
        assert 0 < mask.sum() and set(np.unique(mask)) <= {0, 1}


def test_crop_batches_randomise_differs_from_paper_augmentation():
    rng = np.random.default_rng(6)
    images = np.stack([_head_slice(rng)[0] for _ in range(6)]).astype(np.float16)
    masks = np.stack([_head_slice()[1].astype(np.uint8)] * 6)
    stack = SliceStack("s", images, masks)
    paper = CropBatches([stack], crop=64, steps=2, seed=0)
    randomised = CropBatches([stack], crop=64, steps=2, seed=0, randomise=True)
    x, y = randomised[0]
    assert x.shape == (4, 64, 64, 1) and y.shape == (4, 64, 64, 1) and np.isfinite(x).all()
    np.testing.assert_array_equal(randomised[0][0], x)  # reproducible per (seed, epoch, index)
    assert not np.allclose(paper[0][0], x)
