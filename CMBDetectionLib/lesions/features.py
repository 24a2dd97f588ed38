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

from typing import Sequence

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


def _dark_structure(crop: np.ndarray, centre: np.ndarray, spacing: np.ndarray, level: float) -> list[float]:
    """Reach (mm), elongation, flatness, log volume and crop-leaving of the dark region around ``centre``."""
    background, darkest = float(np.median(crop)), float(crop[tuple(centre)])
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


def _hessian_eigenvalues(crop: np.ndarray, centre: np.ndarray, spacing: np.ndarray, scale_mm: float) -> list[float]:
    """Sorted eigenvalues of the scale-normalised Hessian (per mm², times scale²) at ``centre``."""
    sigma = scale_mm / spacing
    hessian = np.zeros((3, 3))
    for a in range(3):
        for b in range(a, 3):
            order = [0, 0, 0]
            order[a] += 1
            order[b] += 1
            value = ndimage.gaussian_filter(crop, sigma, order=order, mode="nearest")[tuple(centre)]
            hessian[a, b] = hessian[b, a] = value * scale_mm**2 / (spacing[a] * spacing[b])
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
        rows.append([
            _logit(float(region_probability.max())),
            _logit(float(region_probability.mean())),
            float(np.log(inside.sum() * spacing.prod())),
            float(inside.any(axis=(1, 2)).sum() * spacing[0]),
            1.0 - float(crop[tuple(local_centre)]),
            *(v for level in DARK_LEVELS.values() for v in _dark_structure(crop, local_centre, spacing, level)),
            *(v for s in HESSIAN_SCALES_MM for v in _hessian_eigenvalues(crop, local_centre, spacing, s)),
            _outline_growth(image, labels, label, box, spacing),
        ])  # fmt: skip
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))
