"""The self-test's stand-in detector: dark blobs as lesions, with only what Slicer itself ships.

"Reload and Test" and the extension's ctest run before any package is installed, so this uses numpy, scipy and
SimpleITK (all shipped with Slicer 5.10+) and not scikit-image (which the engine's ``lesions.extraction`` needs).
The module's own behaviour (nodes, corrections, export) is what the self-test checks, not a model.

>>> result = dark_blob_detector(image, method="unet", threshold=0.5, device="cpu")   # doctest: +SKIP
>>> [lesion.label for lesion in result.lesions]                                       # doctest: +SKIP
[1, 2, 3]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from CMBDetectionLib.imageio.volumes import index_to_ras
from CMBDetectionLib.results import DetectionResult, Lesion

DARK_BELOW = 20.0


def _lesion(label: int, voxels_kji: np.ndarray, image: sitk.Image) -> Lesion:
    centre_ijk = voxels_kji.mean(axis=0)[::-1]
    extent_mm = (np.ptp(voxels_kji, axis=0)[::-1] + 1) * np.asarray(image.GetSpacing())
    centre_ras = index_to_ras(image, centre_ijk)
    return Lesion(
        label=label,
        centre_ras=tuple(float(v) for v in centre_ras),
        centre_ijk=tuple(float(v) for v in centre_ijk),
        diameter_mm=float(extent_mm.max()),
        volume_mm3=float(len(voxels_kji) * np.prod(image.GetSpacing())),
        n_voxels=len(voxels_kji),
        mean_probability=1.0,
        max_probability=1.0,
        region="frontal",
        category="lobar",
        side="right" if centre_ras[0] > 0 else "left",
        certainty="definite",
    )


def dark_blob_detector(image: sitk.Image, *, method: str, threshold: float, device: str, **_ignored: Any) -> DetectionResult:
    """Voxels darker than :data:`DARK_BELOW`, 26-connected, each component one lesion rated frontal/definite."""
    probability = (sitk.GetArrayViewFromImage(image) < DARK_BELOW).astype(np.float32)
    label_map, count = ndimage.label(probability >= threshold, structure=np.ones((3, 3, 3)))
    lesions = [_lesion(label, np.argwhere(label_map == label), image) for label in range(1, count + 1)]
    return DetectionResult(image, probability, label_map.astype(np.int32), lesions, {"method": method, "device": device})
