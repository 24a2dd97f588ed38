"""Domain-randomisation transforms for training slices (normalised intensities, about 0..1.5, ``[rows, cols]``).

Each function does one thing to an image and is deterministic given its parameters; drawing the parameters
at random is :mod:`CMBDetectionLib.training.randomisation`'s job. Only :func:`geometric_crop` moves pixels, and
it moves the mask with them; every other transform leaves labels unchanged.

The tissue remapping keeps CMBs and veins darker than their surroundings whatever the new contrast: the image
is split into a local background (a grey closing, which fills dark details narrower than its footprint) and
the fraction of that background each voxel keeps; the background goes through the new intensity curve and the
fraction is applied again, so a lesion stays a *loss* of signal, as on any SWI.

>>> image = np.full((32, 32), 0.8, np.float32); image[14:18, 14:18] = 0.2     # a dark spot in bright tissue
>>> out = remap_tissue(image, *inverted_lut())
>>> bool(out[15, 15] < out[2, 2] < image[2, 2])                             # darker tissue, spot still darker
True
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.interpolate import PchipInterpolator

#: intensities are clipped to this range, as :func:`slicing.normalise_intensity` clips inference input
VALUE_RANGE = (0.0, 1.5)
#: knots of the tissue intensity curves over the normalised range
LUT_KNOTS = np.linspace(0.0, 1.5, 7)
#: the closing's footprint in pixels (about 10 mm at 0.9 mm): wider than CMBs and vein cross-sections
BACKGROUND_FOOTPRINT = 11
#: keeps the kept-signal fraction finite in air, where background and voxel are both about 0
_EPS = 0.05


def _finish(image: np.ndarray) -> np.ndarray:
    return np.clip(image, *VALUE_RANGE).astype(np.float32)


def inverted_lut(jitter: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Knots of a curve that inverts tissue contrast (air stays dark); ``jitter`` is added to each knot's value.

    >>> xs, ys = inverted_lut(); bool(ys[2] > ys[4])
    True
    """
    ys = np.concatenate([[0.02], np.clip(1.05 - LUT_KNOTS[1:] / 1.1, 0.1, 1.0)])
    return LUT_KNOTS.copy(), ys + (0.0 if jitter is None else jitter)


def flat_lut(level: float, jitter: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Knots of a curve that maps all tissue to about ``level`` (no grey/white contrast); air stays dark.

    >>> xs, ys = flat_lut(0.6); float(ys[3] - ys[5])
    0.0
    """
    ys = np.concatenate([[0.02], np.full(len(LUT_KNOTS) - 1, level)])
    return LUT_KNOTS.copy(), ys + (0.0 if jitter is None else jitter)


def background_and_fraction(image: np.ndarray, footprint: int = BACKGROUND_FOOTPRINT) -> tuple[np.ndarray, np.ndarray]:
    """(local background, fraction of it each pixel keeps in 0..1): dark details narrower than ``footprint``
    (CMBs, vein cross-sections) have a fraction under 1, tissue about 1."""
    background = ndimage.grey_closing(image, size=(footprint, footprint))
    fraction = np.clip((image + _EPS) / (background + _EPS), 0.0, 1.0)
    return background, fraction


def remap_tissue(image: np.ndarray, knots_x: np.ndarray, knots_y: np.ndarray, lesion_power: float = 1.0) -> np.ndarray:
    """New tissue contrast from a smooth curve through the knots; dark details keep ``fraction ** lesion_power``
    of their new background (power > 1: darker lesions, < 1: fainter), so they stay darker than it."""
    background, fraction = background_and_fraction(image)
    curve = PchipInterpolator(knots_x, np.clip(knots_y, 0.0, VALUE_RANGE[1]), extrapolate=True)
    return _finish(np.clip(curve(background), 0.0, None) * fraction ** lesion_power)


def bias_field(shape: tuple[int, int], log_amplitude: np.ndarray) -> np.ndarray:
    """A smooth multiplicative field: ``exp`` of the coarse ``log_amplitude`` grid interpolated cubically.

    >>> field = bias_field((64, 64), np.zeros((4, 4))); float(field.min()), float(field.max())
    (1.0, 1.0)
    """
    zoom = [n / c for n, c in zip(shape, log_amplitude.shape, strict=True)]
    return np.exp(ndimage.zoom(log_amplitude.astype(np.float32), zoom, order=3, mode="nearest")[: shape[0], : shape[1]])


def apply_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """Gamma over the value range: ``top * (image / top) ** gamma`` with ``top`` its upper end, so the result
    stays in range and the order of intensities is kept."""
    top = VALUE_RANGE[1]
    return _finish(top * (np.clip(image, 0.0, top) / top) ** gamma)


def tissue_level(image: np.ndarray) -> float:
    """Median of the pixels brighter than 0.1: the signal level against which SNR is counted."""
    inside = image[image > 0.1]
    return float(np.median(inside)) if inside.size else 1.0


def add_rician_noise(image: np.ndarray, snr: float, rng: np.random.Generator, level: float | None = None) -> np.ndarray:
    """Magnitude-image noise: ``|image + n1 + i n2|`` with sigma = tissue level / ``snr``."""
    sigma = (tissue_level(image) if level is None else level) / snr
    real = image + rng.normal(0.0, sigma, image.shape)
    imaginary = rng.normal(0.0, sigma, image.shape)
    return _finish(np.hypot(real, imaginary))


def blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of ``sigma_px`` pixels."""
    return _finish(ndimage.gaussian_filter(image.astype(np.float32), sigma_px))


def downsample(image: np.ndarray, factor: float) -> np.ndarray:
    """The slice as acquired with pixels ``factor`` times larger: anti-alias blur (about one new pixel wide),
    then linear resampling to the coarser grid."""
    smooth = ndimage.gaussian_filter(image.astype(np.float32), 0.45 * factor)
    return ndimage.zoom(smooth, 1.0 / factor, order=1)


def upsample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Cubic resampling back to ``shape`` (as a scanner's reconstruction interpolates to its display matrix)."""
    zoom = [n / m for n, m in zip(shape, image.shape, strict=True)]
    out = ndimage.zoom(image, zoom, order=3, mode="nearest", grid_mode=True)
    return _finish(out[: shape[0], : shape[1]])


def thick_slice(window: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over the slices of ``window`` ``[n, rows, cols]``: a thicker slice (partial volume of the
    neighbours into the centre)."""
    weights = np.asarray(weights, np.float32) / np.sum(weights)
    return _finish(np.tensordot(weights, window.astype(np.float32), axes=1))


def kspace_phase_error(image: np.ndarray, lines: np.ndarray, shift_px: np.ndarray, axis: int = 0) -> np.ndarray:
    """Ghosts and motion lines: the phase-encode ``lines`` (indices along ``axis`` in k-space) are acquired with
    the object shifted by ``shift_px`` pixels along ``axis`` (one shift per line); magnitude image returned.

    Every other line shifted by half the field of view gives the classic N/2 ghost; a few random lines with
    small shifts give the streaks of motion.
    """
    spectrum = np.fft.fft(image.astype(np.float32), axis=axis)
    frequencies = np.fft.fftfreq(image.shape[axis])[lines]
    ramp = np.exp(-2j * np.pi * frequencies * np.asarray(shift_px, np.float32))
    index = [np.newaxis, np.newaxis]
    index[axis] = slice(None)
    spectrum_lines = np.take(spectrum, lines, axis=axis) * ramp[tuple(index)]
    if axis == 0:
        spectrum[lines, :] = spectrum_lines
    else:
        spectrum[:, lines] = spectrum_lines
    return _finish(np.abs(np.fft.ifft(spectrum, axis=axis)))


def geometric_crop(
    image: np.ndarray, mask: np.ndarray, centre: tuple[int, int], crop: int, angle_deg: float = 0.0,
    scale: float = 1.0, flips: tuple[bool, bool] = (False, False),
) -> tuple[np.ndarray, np.ndarray]:
    """A ``crop`` x ``crop`` window around ``centre``, rotated by ``angle_deg``, magnified ``scale`` times and
    flipped; image interpolated linearly, mask by nearest neighbour with the same map; zero outside.

    >>> a = np.arange(36, dtype=np.float32).reshape(6, 6) / 36  # within VALUE_RANGE, which the image is clipped to
    >>> bool((geometric_crop(a, a, (3, 3), 4)[0] == a[1:5, 1:5]).all())
    True
    """
    theta = np.deg2rad(angle_deg)
    matrix = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) / scale
    # Output pixel o samples the input at centre + matrix @ (o - crop // 2), as an unrotated window would.
    offset = np.asarray(centre, float) - matrix @ np.full(2, crop // 2, float)
    outputs = []
    for array, order in ((image, 1), (mask, 0)):
        out = ndimage.affine_transform(np.asarray(array, np.float32), matrix, offset, output_shape=(crop, crop),
                                       order=order, mode="constant", cval=0.0)
        for axis, flip in enumerate(flips):
            out = np.flip(out, axis) if flip else out
        outputs.append(np.ascontiguousarray(out))
    return _finish(outputs[0]), outputs[1].astype(np.uint8)
