"""UNet method: a CMB probability map for a whole volume, predicted axial slice by axial slice.

Volume -> axial orientation -> intensity normalisation -> batches of 256x256 slices at the model's training
pixel size (:class:`slicing.SliceGrid`; tiles when a head is wider than the window) -> backend -> back to the
native slice grid -> original orientation. Results are deterministic (inference mode, no sampling).

Speed: slices that show no head (air above the vertex, below the skull base) are not fed to the network and
get probability 0; a worker thread resamples the next batch and stores the last one while the backend runs
(ONNX Runtime and TensorFlow release the GIL); slices already on the model grid are copied, not resampled.
Memory stays bounded by the volume, its probability map and a few batches.

>>> probability = predict_probability(image, device="cpu", backend="onnxruntime")   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.errors import DetectionCancelled
from CMBDetectionLib.model_store import CARD_NAME, load_card
from CMBDetectionLib.model_store import model_dir as find_model_dir
from CMBDetectionLib.probability.backends.choice import make_backend
from CMBDetectionLib.probability.backends.protocol import InferenceBackend
from CMBDetectionLib.probability.unet.slicing import (
    AXIAL_ORIENTATION,
    DEFAULT_PIXEL_MM,
    SliceGrid,
    brighter_than_air,
    from_axial,
    normalise_intensity,
    orientation_of,
    to_axial,
)

BATCH_SIZE = 8
# A slice is skipped when under 0.2 % of it is head: far less than the smallest brain section that could hold a CMB,
# far more than the few noise voxels of air above the Otsu level.
MIN_HEAD_FRACTION = 0.002
N_BUFFERS = 2  # the batch being predicted and the one being prepared


def head_slices(volume: np.ndarray, min_fraction: float = MIN_HEAD_FRACTION) -> np.ndarray:
    """Indices of the slices ``[k]`` of which at least ``min_fraction`` of the pixels are head (not air).

    >>> v = np.zeros((3, 32, 32), np.float32); v[1, 8:24, 8:24] = 1.0; v[2, 0, 0] = 1.0
    >>> head_slices(v).tolist()
    [1]
    """
    head_pixels = np.count_nonzero(brighter_than_air(volume).reshape(len(volume), -1), axis=1)
    return np.flatnonzero(head_pixels >= min_fraction * volume[0].size)


def model_pixel_mm(model_dir: str | os.PathLike | None = None) -> float:
    """In-plane pixel size (mm) the UNet was trained at: its card's ``pixel_mm``, else :data:`DEFAULT_PIXEL_MM`."""
    folder = find_model_dir("unet", model_dir)
    if not (folder / CARD_NAME).is_file():
        return DEFAULT_PIXEL_MM
    return float(load_card(folder).get("pixel_mm", DEFAULT_PIXEL_MM))


def _is_identity(grid: SliceGrid) -> bool:
    """True when native slices already are the model grid (256x256 at the model's pixel size): no resampling."""
    return (grid.native_shape == grid.plane_shape == (grid.size, grid.size) and grid.zoom == (1.0, 1.0)
            and grid.offset == (0.0, 0.0))


class _SliceBatches:
    """Fills preallocated ``(batch_size * n_tiles, 256, 256, 1)`` buffers with model-grid tiles and stores predictions."""

    def __init__(self, volume: np.ndarray, grid: SliceGrid, probability: np.ndarray, batch_size: int):
        self.volume, self.grid, self.probability = volume, grid, probability
        self.identity = _is_identity(grid)
        self.n_tiles = len(grid.tile_origins)
        self.buffers = np.zeros((N_BUFFERS, batch_size * self.n_tiles, grid.size, grid.size, 1), np.float32)

    def prepare(self, n: int, index: np.ndarray) -> np.ndarray:
        """Batch ``n`` (slices ``index``) in buffer ``n % N_BUFFERS``; returns the filled part."""
        batch = self.buffers[n % N_BUFFERS, : len(index) * self.n_tiles]
        slices = self.volume[index]
        batch[..., 0] = slices if self.identity else self.grid.cut(self.grid.to_model(slices))
        return batch

    def store(self, index: np.ndarray, predicted: np.ndarray) -> None:
        """Write ``(m * n_tiles, 256, 256, 1)`` predictions to the slices ``index`` of the probability map."""
        slices = predicted[..., 0]
        self.probability[index] = slices if self.identity else self.grid.to_native(self.grid.stitch(slices))


def predict_slices(
    volume: np.ndarray,
    grid: SliceGrid,
    backend: InferenceBackend,
    *,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Normalised ``[k, rows, cols]`` array -> probabilities on the same grid (0 on slices without head)."""
    probability = np.zeros(volume.shape, dtype=np.float32)
    indices = head_slices(volume)
    chunks = [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]
    batches = _SliceBatches(volume, grid, probability, batch_size)
    # One worker, so its queue keeps order: prepare(n + 1) runs while the backend predicts batch n.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cmb-slices") as worker:
        ready = worker.submit(batches.prepare, 0, chunks[0]) if chunks else None
        stored: Future | None = None
        for n, index in enumerate(chunks):
            if cancel is not None and cancel():
                raise DetectionCancelled("detection cancelled")
            batch = ready.result()
            if n + 1 < len(chunks):  # into the buffer of batch n - 1, whose prediction has returned
                ready = worker.submit(batches.prepare, n + 1, chunks[n + 1])
            predicted = backend.predict(batch)
            if stored is not None:
                stored.result()  # re-raises a failed store
            stored = worker.submit(batches.store, index, predicted)
            if progress is not None:
                progress((n + 1) / len(chunks))
        if stored is not None:
            stored.result()
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
    axial = image if orientation == AXIAL_ORIENTATION else to_axial(image)  # reorienting copies: only when needed
    volume = normalise_intensity(sitk.GetArrayViewFromImage(axial))
    grid = SliceGrid.for_image(axial, model_pixel_mm(model_dir))
    probability = predict_slices(volume, grid, runner, batch_size=batch_size, progress=progress, cancel=cancel)
    if orientation == AXIAL_ORIENTATION:
        return probability
    result = sitk.GetImageFromArray(probability)
    result.CopyInformation(axial)
    return sitk.GetArrayFromImage(from_axial(result, orientation))
