"""A 3D description of each lesion candidate, for the false-positive classifier (:mod:`lesion_filter`).

The UNet sees one axial slice at a time, where a vein cut across is a dark dot like a microbleed. In 3D they
differ: a microbleed is a compact dark sphere, a vein a dark tube running on for many millimetres. Around
the darkest voxel of each candidate (within :data:`CROP_MM`) we measure:

- the UNet's view: peak and mean probability (as logits), region volume and extent along the slice axis
  (array axis 0; the shipped filter was fitted on axial acquisitions);
- contrast: signal lost at the darkest voxel against the local median;
- the dark structures it belongs to at two levels (:data:`DARK_LEVELS`; voxels darker than that fraction of
  the way from the darkest voxel to the local median, 26-connected to it): how far each reaches, how
  elongated and how flat it is, its volume, whether it runs out of the crop (a vein does, a microbleed not);
- the Hessian of the image (relative to the local median) at 1 and 2 mm scales (scale-normalised
  eigenvalues): a blob curves up along all three axes, a tube along two;
- how much the candidate would grow if redrawn at half signal loss (:mod:`lesion_outline`, as log of the
  size ratio): a microbleed's outline moves by a voxel, a vein's runs on along the tube.

>>> image = np.full((20, 40, 40), 100, np.float32); image[9:12, 18:21, 18:21] = 10    # one dark blob
>>> p = np.zeros_like(image); p[10, 19, 19] = 0.8; labels = (p > 0).astype(np.int32)
>>> table = candidate_features(image, p, labels, (2.0, 0.9, 0.9))
>>> contrast = table[0, FEATURE_NAMES.index("contrast")]      # 10 against 100: 90% of the signal lost
>>> table.shape == (1, len(FEATURE_NAMES)), round(float(contrast), 2)
(True, 0.9)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy import ndimage

from CMBDetectionLib.lesions.outline import half_loss_region, lesion_box

CROP_MM = 10.0  # the largest CMB (10 mm) fits; a vein leaves it
HESSIAN_SCALES_MM = (1.0, 2.0)
#: dark structures around the candidate: voxels darker than this fraction of the way from its darkest voxel to
#: the local median. "dark" (halfway) is the blob's outline; "core" (a quarter) separates a microbleed from a
#: vein it touches, the microbleed being the darker of the two
DARK_LEVELS = {"dark": 0.5, "core": 0.25}
FEATURE_NAMES: tuple[str, ...] = (
    "peak_logit", "mean_logit", "log_volume_mm3", "height_mm", "contrast",
    *(f"{level}_{k}" for level in DARK_LEVELS
      for k in ("reach_mm", "elongation", "flatness", "log_volume_mm3", "leaves_crop")),
    *(f"hessian_{s:g}mm_{k}" for s in HESSIAN_SCALES_MM for k in ("low", "mid", "high")),
    "outline_log_growth",
)  # fmt: skip
_EPS = 1e-4


def _logit(p: float) -> float:
    p = min(max(p, _EPS), 1 - _EPS)
    return float(np.log(p / (1 - p)))


def _crop(shape: Sequence[int], centre: np.ndarray, half: np.ndarray) -> tuple[slice, ...]:
    lo = np.maximum(centre - half, 0)
    hi = np.minimum(centre + half + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _dark_structure(crop: np.ndarray, centre: np.ndarray, spacing: np.ndarray, level: float,
                    background: float) -> list[float]:
    """Reach (mm), elongation, flatness, log volume and crop-leaving of the dark region around ``centre``
    (``background``: the crop's median)."""
    darkest = float(crop[tuple(centre)])
    labels, _ = ndimage.label(crop <= darkest + level * (background - darkest), structure=np.ones((3, 3, 3)))
    offsets = (np.argwhere(labels == labels[tuple(centre)]) - centre) * spacing
    axes = np.sort(np.linalg.eigvalsh(np.cov(offsets.T) if len(offsets) > 3 else np.zeros((3, 3)))) + spacing.min() ** 2
    idx = offsets / spacing + centre
    leaves = bool((idx.min(axis=0) <= 0).any() or (idx.max(axis=0) >= np.array(crop.shape) - 1).any())
    return [
        float(np.linalg.norm(offsets, axis=1).max()),
        float(np.log(np.sqrt(axes[2] / axes[0]))),
        float(np.log(np.sqrt(axes[1] / axes[0]))),
        float(np.log(len(offsets) * spacing.prod())),
        float(leaves),
    ]


@lru_cache(maxsize=4096)  # crops inside the volume share their shape and centre: a few entries serve most
def gaussian_point_weights(sigma: float, centre: int, length: int) -> np.ndarray:
    """``(3, length)`` weights giving, dotted with a line of ``length`` samples, its Gaussian smoothing and first
    and second derivatives at ``centre``: :func:`scipy.ndimage.gaussian_filter1d` (``truncate=4``,
    ``mode="nearest"``) read at one point, without filtering the whole line. Cached, hence read-only.

    >>> line = np.array([0.0, 1, 4, 9, 16, 25, 36])
    >>> weights = gaussian_point_weights(0.8, 3, len(line))
    >>> bool(np.allclose(weights @ line, [ndimage.gaussian_filter1d(line, 0.8, order=o, mode="nearest")[3]
    ...                                   for o in range(3)]))
    True
    """
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=float)
    phi = np.exp(-0.5 * x**2 / sigma**2)
    phi /= phi.sum()
    kernels = np.stack([phi, -x / sigma**2 * phi, (x**2 / sigma**4 - 1 / sigma**2) * phi])
    # scipy correlates with the reversed kernel; samples past either end repeat the edge one ("nearest")
    positions = np.clip(centre + x.astype(int), 0, length - 1)
    weights = np.stack([np.bincount(positions, kernel[::-1], minlength=length) for kernel in kernels])
    weights.flags.writeable = False
    return weights


def _hessian_eigenvalues(crop: np.ndarray, centre: np.ndarray, spacing: np.ndarray, scale_mm: float) -> list[float]:
    """Sorted eigenvalues of the scale-normalised Hessian (per mm², times scale²) at ``centre``.

    Gaussian derivatives read at ``centre`` alone, as separable weights (:func:`gaussian_point_weights`): what
    ``ndimage.gaussian_filter(crop, sigma, order, mode="nearest")[centre]`` gives, without filtering the crop.
    """
    weights = [gaussian_point_weights(float(scale_mm / h), int(c), int(n)) for h, c, n in zip(spacing, centre, crop.shape)]
    # derivatives[o0, o1, o2]: the smoothed crop differentiated o_a times along axis a, at the centre
    along_0 = (weights[0] @ crop.reshape(len(crop), -1)).reshape(3, *crop.shape[1:])
    derivatives = weights[1] @ (along_0 @ weights[2].T)
    hessian = np.zeros((3, 3))
    for a in range(3):
        for b in range(a, 3):
            order = [0, 0, 0]
            order[a] += 1
            order[b] += 1
            hessian[a, b] = hessian[b, a] = derivatives[tuple(order)] * scale_mm**2 / (spacing[a] * spacing[b])
    return sorted(np.linalg.eigvalsh(hessian).tolist())


def _outline_growth(image: np.ndarray, labels: np.ndarray, label: int, box: tuple[slice, ...],
                    spacing: np.ndarray) -> float:
    """Log of the size ratio of candidate ``label`` redrawn at half signal loss to itself (0: not redrawn)."""
    around = lesion_box(box, spacing, labels.shape)
    local_labels = labels[around]
    inside = local_labels == label
    region = half_loss_region(image[around], inside, (local_labels == 0) | inside)
    return float(np.log(region.sum() / inside.sum())) if region is not None else 0.0


def candidate_features(
    image: np.ndarray, probability: np.ndarray, labels: np.ndarray, spacing_kji: Sequence[float]
) -> np.ndarray:
    """One row of :data:`FEATURE_NAMES` per candidate label 1..n of ``labels`` (all ``[k, j, i]`` arrays)."""
    spacing = np.asarray(spacing_kji, dtype=float)
    image = np.asarray(image, dtype=np.float32)
    half = np.ceil(CROP_MM / spacing).astype(int)
    rows = []
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            rows.append([np.nan] * len(FEATURE_NAMES))
            continue
        inside = labels[box] == label
        region_probability = probability[box][inside]
        darkest = np.unravel_index(np.argmin(np.where(inside, image[box], np.inf)), inside.shape)
        centre = np.array([s.start for s in box]) + darkest
        window = _crop(image.shape, centre, half)
        # Intensities relative to the local median: scanner scaling and coil shading cancel out.
        crop = image[window] / max(float(np.median(image[window])), _EPS)
        local_centre = centre - [s.start for s in window]
        background = float(np.median(crop))  # once for both dark levels
        rows.append([
            _logit(float(region_probability.max())),
            _logit(float(region_probability.mean())),
            float(np.log(inside.sum() * spacing.prod())),
            float(inside.any(axis=(1, 2)).sum() * spacing[0]),
            1.0 - float(crop[tuple(local_centre)]),
            *(v for level in DARK_LEVELS.values()
              for v in _dark_structure(crop, local_centre, spacing, level, background)),
            *(v for s in HESSIAN_SCALES_MM for v in _hessian_eigenvalues(crop, local_centre, spacing, s)),
            _outline_growth(image, labels, label, box, spacing),
        ])  # fmt: skip
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))
