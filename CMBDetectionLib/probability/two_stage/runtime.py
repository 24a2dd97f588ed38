"""Running the two-stage classifier: the exported ONNX file with ONNX Runtime, or the Keras ResNet50 with TensorFlow.

Detection needs no TensorFlow: ``backend="auto"`` takes the model folder's ONNX file (card key ``onnx``, its
sha256 checked like every listed file) when ONNX Runtime is installed, and the Keras weights otherwise. Both
runners take the network input of :func:`.classifier.to_network_input` and return one probability per patch.

>>> runner, card = open_classifier(device="cpu")          # the shipped models/resnet50: ONNX Runtime
>>> runner.name, runner.predict(np.zeros((2, 64, 64, 3), np.float32)).shape
('onnxruntime', (2,))
"""

from __future__ import annotations

import logging
import os
from typing import Any, Protocol

import numpy as np

from CMBDetectionLib.errors import BackendUnavailable, ModelError
from CMBDetectionLib.probability.backends.protocol import DEVICES

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "tensorflow")


class ClassifierRunner(Protocol):
    name: str  # "onnxruntime" or "tensorflow"

    def predict(self, network_input: np.ndarray) -> np.ndarray:
        """``(n, p, p, 3) float32`` network input -> ``(n,) float32`` CMB probabilities."""
        ...


class OnnxClassifier:
    """The exported classifier run by ONNX Runtime (provider and threads as the UNet's ONNX backend)."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, device: str = "auto"):
        from CMBDetectionLib.probability.backends.onnxruntime_backend import OnnxRuntimeBackend

        self._backend = OnnxRuntimeBackend(path=path, device=device)

    def predict(self, network_input: np.ndarray) -> np.ndarray:
        return np.asarray(self._backend.predict(network_input), dtype=np.float32).reshape(-1)


class KerasClassifier:
    """A Keras classifier (trained or loaded from ``weights.npz``) run by TensorFlow on ``device``."""

    name = "tensorflow"

    def __init__(self, model, device: str = "auto"):
        from CMBDetectionLib.probability.backends.keras_backends import tensorflow_device

        self.model, self.device = model, tensorflow_device(device)

    def predict(self, network_input: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        with tf.device(self.device):
            scores = self.model.predict_on_batch(np.asarray(network_input, dtype=np.float32))
        return np.asarray(scores, dtype=np.float32).reshape(-1)


def check_choice(backend: str, device: str) -> None:
    """ValueError naming the choices when ``backend`` or ``device`` is unknown (before any long work)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not available for the two-stage method; use {', '.join(BACKENDS)}.")
    if device not in DEVICES:
        raise ValueError(f"device {device!r} unknown; use {', '.join(DEVICES)}.")


def open_classifier(
    folder: str | os.PathLike | None = None, backend: str = "auto", device: str = "auto"
) -> tuple[ClassifierRunner, dict[str, Any]]:
    """(runner, verified card) of the ResNet50 model in ``folder`` (default: the shipped ``models/resnet50``)."""
    from CMBDetectionLib.model_store import model_dir, verified_card
    from CMBDetectionLib.probability.two_stage.classifier import MODEL_NAME, load_classifier

    check_choice(backend, device)
    path = model_dir(MODEL_NAME, folder)
    card = verified_card(path, "resnet50")
    onnx_name = card.get("onnx")
    if backend in ("auto", "onnxruntime"):
        if onnx_name:
            try:
                return OnnxClassifier(path / onnx_name, device), card
            except BackendUnavailable as exc:
                if backend == "onnxruntime":
                    raise
                log.debug("ONNX Runtime unavailable for the classifier: %s", exc)
        elif backend == "onnxruntime":
            raise BackendUnavailable(f"{path}: the model has no ONNX export; run `python -m "
                                     f"CMBDetectionLib.training.two_stage_onnx {path}` or use --backend tensorflow.")
    if not card.get("weights"):
        raise ModelError(f"{path}: the model ships only {onnx_name} and ONNX Runtime cannot run here; "
                         "pip install onnxruntime (TensorFlow needs weights.npz, see the model card).")
    model, card = load_classifier(path)
    return KerasClassifier(model, device), card
