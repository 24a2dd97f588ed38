"""Inference backends for the slice UNet behind one interface.

A backend turns a batch of preprocessed slices ``(n, 256, 256, 1) float32`` into sigmoid probabilities of the
same shape. ``make_backend("auto")`` tries the backends of :data:`AUTO_ORDER` that are registered in
:data:`BACKEND_FACTORIES` and takes the first that can run; each factory raises :class:`BackendUnavailable`
when it cannot (library or model file missing, device absent).

>>> backend = make_backend("tensorflow", model_dir)           # doctest: +SKIP
>>> probs = backend.predict(batch)                            # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Protocol

import numpy as np

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "gpu")


class InferenceBackend(Protocol):
    name: str  # "tensorflow", "onnxruntime" or "keras"
    device: str  # what it runs on, e.g. "CPU", "GPU:0", "CUDAExecutionProvider"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """``(n, H, W, 1) float32`` normalised slices -> ``(n, H, W, 1) float32`` probabilities."""
        ...


class BackendUnavailable(ValueError):
    """This backend cannot run here; the message says why and what to do."""


def _import_tensorflow():
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise BackendUnavailable(f"TensorFlow is not installed ({exc}); pip install tensorflow, or use the onnxruntime backend.") from exc
    return tf


def tensorflow_device(device: str) -> str:
    """TensorFlow device string for ``auto|cpu|gpu`` (``auto``: the first GPU TensorFlow sees, else CPU)."""
    tf = _import_tensorflow()

    gpus = tf.config.list_logical_devices("GPU")
    if device == "gpu" and not gpus:
        raise BackendUnavailable(
            "--device gpu: TensorFlow sees no GPU here (install tensorflow[and-cuda] and a CUDA driver); "
            "use --device auto or cpu."
        )
    if device in ("gpu", "auto") and gpus:
        return "/GPU:0"
    return "/CPU:0"


class TensorFlowBackend:
    """The Keras UNet with the shipped weights, run by TensorFlow (eager model compiled with ``tf.function``)."""

    name = "tensorflow"

    def __init__(self, model_dir: str | os.PathLike | None = None, device: str = "auto"):
        from CMBDetectionLib.model_store import load_unet

        tf = _import_tensorflow()
        self.device = tensorflow_device(device)
        with tf.device(self.device):
            self._model = load_unet(model_dir)
        self._forward = tf.function(lambda x: self._model(x, training=False), reduce_retracing=True)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        with tf.device(self.device):
            return np.asarray(self._forward(tf.convert_to_tensor(batch, tf.float32)), dtype=np.float32)


class KerasBackend:
    """The Keras UNet run by whichever Keras backend is active (TensorFlow, JAX or PyTorch; ``KERAS_BACKEND``).

    For machines whose Keras runs on JAX or PyTorch, e.g. a GPU training box without TensorFlow; Keras places
    the model on its backend's default device, so ``device`` is only recorded.
    """

    name = "keras"

    def __init__(self, model_dir: str | os.PathLike | None = None, device: str = "auto"):
        try:
            import keras
        except ImportError as exc:  # keras imports its backend (TensorFlow by default) on import
            raise BackendUnavailable(f"Keras cannot start ({exc}); install its backend or set KERAS_BACKEND.") from exc
        from CMBDetectionLib.model_store import load_unet

        self._model = load_unet(model_dir)
        self.device = f"{keras.backend.backend()} default device"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        # Pad to a power of two: each new batch size makes Keras trace and compile the model again.
        n = len(batch)
        padded = np.zeros((1 << max(n - 1, 0).bit_length(), *batch.shape[1:]), np.float32)
        padded[:n] = batch
        return np.asarray(self._model.predict_on_batch(padded), dtype=np.float32)[:n]


BackendFactory = Callable[..., InferenceBackend]


def _onnxruntime_backend(**kwargs) -> InferenceBackend:
    from CMBDetectionLib.probability.backends.onnxruntime_backend import OnnxRuntimeBackend  # imported on use: it imports this module

    return OnnxRuntimeBackend(**kwargs)


BACKEND_FACTORIES: dict[str, BackendFactory] = {
    "tensorflow": TensorFlowBackend, "onnxruntime": _onnxruntime_backend, "keras": KerasBackend,
}
AUTO_ORDER = ("onnxruntime", "tensorflow", "keras")


def make_backend(kind: str = "auto", model_dir: str | os.PathLike | None = None, device: str = "auto") -> InferenceBackend:
    """Create the backend ``kind`` (``auto`` or a key of :data:`BACKEND_FACTORIES`) on ``device``."""
    if device not in DEVICES:
        raise ValueError(f"device {device!r} unknown; choose one of {', '.join(DEVICES)}.")
    if kind != "auto":
        if kind not in BACKEND_FACTORIES:
            raise BackendUnavailable(
                f"backend {kind!r} is not available; choose one of auto, {', '.join(BACKEND_FACTORIES)}."
            )
        return BACKEND_FACTORIES[kind](model_dir=model_dir, device=device)
    reasons = []
    for name in AUTO_ORDER:
        if name not in BACKEND_FACTORIES:
            continue
        try:
            return BACKEND_FACTORIES[name](model_dir=model_dir, device=device)
        except BackendUnavailable as exc:
            log.debug("backend %s unavailable: %s", name, exc)
            reasons.append(f"{name}: {exc}")
    raise BackendUnavailable("no inference backend can run: " + "; ".join(reasons))
