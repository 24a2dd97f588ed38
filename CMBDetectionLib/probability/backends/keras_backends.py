"""The Keras UNet with the shipped weights, run by TensorFlow or by whichever backend Keras has.

Both import TensorFlow or Keras only when created, and raise :class:`~CMBDetectionLib.errors.BackendUnavailable`
when they cannot run (library missing, no GPU for ``device="gpu"``).

>>> backend = TensorFlowBackend(model_dir, device="cpu")      # doctest: +SKIP
>>> backend.predict(np.zeros((2, 256, 256, 1), "float32")).shape  # doctest: +SKIP
(2, 256, 256, 1)
"""

from __future__ import annotations

import os

import numpy as np

from CMBDetectionLib.errors import BackendUnavailable


def _import_tensorflow():
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise BackendUnavailable(
            f"TensorFlow is not installed ({exc}); pip install tensorflow, or use the onnxruntime backend."
        ) from exc
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
