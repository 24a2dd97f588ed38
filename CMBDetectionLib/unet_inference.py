"""UNet method: a CMB probability map for a whole volume, predicted axial slice by axial slice.

Volume -> axial orientation -> intensity normalisation -> batches of 256x256 slices -> backend -> back to the
native slice grid -> original orientation. Memory stays bounded by the batch size (plus the volume itself);
results are deterministic (inference mode, no sampling).

>>> probability = predict_probability(image, device="cpu", backend="tensorflow")   # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import SimpleITK as sitk

from .backends import InferenceBackend, make_backend
from .preprocessing import SliceGrid, from_axial, normalise_intensity, orientation_of, to_axial

BATCH_SIZE = 8


def predict_slices(
    volume: np.ndarray,
    grid: SliceGrid,
    backend: InferenceBackend,
    *,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Normalised ``[k, rows, cols]`` array -> probabilities on the same grid, ``batch_size`` slices at a time."""
    from .pipeline import DetectionCancelled

    probability = np.zeros(volume.shape, dtype=np.float32)
    n_slices = len(volume)
    for start in range(0, n_slices, batch_size):
        if cancel is not None and cancel():
            raise DetectionCancelled("detection cancelled")
        stop = min(start + batch_size, n_slices)
        batch = grid.to_model(volume[start:stop])[..., np.newaxis]
        probability[start:stop] = grid.to_native(backend.predict(batch)[..., 0])
        if progress is not None:
            progress(stop / n_slices)
    return np.clip(probability, 0.0, 1.0, out=probability)


def predict_probability(
    image: sitk.Image,
    *,
    device: str = "auto",
    backend: str | InferenceBackend = "auto",
    progress: Callable[[float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    model_dir: str | os.PathLike | None = None,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """CMB probability ``[k, j, i] float32`` on ``image``'s own grid.

    ``backend`` is a name for :func:`backends.make_backend` or a ready backend (reused across volumes).
    """
    runner = make_backend(backend, model_dir, device) if isinstance(backend, str) else backend
    orientation = orientation_of(image)
    axial = to_axial(sitk.Cast(image, sitk.sitkFloat32))
    volume = normalise_intensity(sitk.GetArrayFromImage(axial))
    probability = predict_slices(
        volume, SliceGrid.for_image(axial), runner, batch_size=batch_size, progress=progress, cancel=cancel
    )
    result = sitk.GetImageFromArray(probability)
    result.CopyInformation(axial)
    return sitk.GetArrayFromImage(from_axial(result, orientation))
