"""Candidate features: the Hessian read at one point equals the whole-crop Gaussian filtering it replaces."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from CMBDetectionLib.lesions.features import (
    CROP_MM,
    FEATURE_NAMES,
    HESSIAN_SCALES_MM,
    candidate_features,
    gaussian_point_weights,
)


def _filtered_hessian(crop: np.ndarray, centre: tuple[int, ...], spacing: np.ndarray, scale_mm: float) -> list[float]:
    """The former computation: six Gaussian-derivative filterings of the whole crop, read at ``centre``."""
    hessian = np.zeros((3, 3))
    for a in range(3):
        for b in range(a, 3):
            order = [0, 0, 0]
            order[a] += 1
            order[b] += 1
            value = ndimage.gaussian_filter(crop, scale_mm / spacing, order=order, mode="nearest")[centre]
            hessian[a, b] = hessian[b, a] = value * scale_mm**2 / (spacing[a] * spacing[b])
    return sorted(np.linalg.eigvalsh(hessian).tolist())


@pytest.mark.parametrize("centre", [(3, 5, 7), (0, 0, 0), (6, 10, 1)])  # inside, and on the crop's edges
def test_point_weights_give_the_filtered_value_on_every_axis(centre):
    volume = np.random.default_rng(1).normal(1.0, 0.3, (7, 11, 13))
    sigmas = (0.5, 1.1, 2.2)
    weights = [gaussian_point_weights(s, c, n) for s, c, n in zip(sigmas, centre, volume.shape)]
    for orders in [(0, 0, 0), (2, 0, 0), (0, 1, 1), (1, 0, 1), (0, 0, 2)]:
        expected = ndimage.gaussian_filter(volume, sigmas, order=orders, mode="nearest")[centre]
        found = np.einsum("kji,k,j,i->", volume, *(w[o] for w, o in zip(weights, orders)))
        assert found == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_candidate_hessian_features_equal_whole_crop_filtering():
    """Candidates in the middle of a volume and against its edge: the crop is cut short there."""
    rng = np.random.default_rng(2)
    spacing = np.array([2.0, 0.9, 0.9])
    image = rng.normal(100, 8, (16, 40, 40)).astype(np.float32)
    labels = np.zeros(image.shape, np.int32)
    for label, (k, j, i) in enumerate([(8, 20, 20), (1, 3, 36)], start=1):
        image[k, j - 1 : j + 2, i - 1 : i + 2] = 20
        image[k, j, i] = 10  # the darkest voxel: the features' centre
        labels[k, j - 1 : j + 2, i - 1 : i + 2] = label
    table = candidate_features(image, labels * 0.5, labels, spacing)
    half = np.ceil(CROP_MM / spacing).astype(int)
    for row, centre in zip(table, [(8, 20, 20), (1, 3, 36)]):
        window = tuple(slice(max(c - h, 0), min(c + h + 1, n)) for c, h, n in zip(centre, half, image.shape))
        crop = image[window] / np.float32(np.median(image[window]))
        local = tuple(c - s.start for c, s in zip(centre, window))
        for scale in HESSIAN_SCALES_MM:
            columns = [FEATURE_NAMES.index(f"hessian_{scale:g}mm_{k}") for k in ("low", "mid", "high")]
            assert row[columns] == pytest.approx(_filtered_hessian(crop, local, spacing, scale), rel=1e-5, abs=1e-6)
