"""What every inference backend of the slice UNet offers: a name, a device and ``predict``.

A backend turns a batch of preprocessed slices ``(n, 256, 256, 1) float32`` into sigmoid probabilities of the
same shape. Any object with these members will do (a test's fake, a backend reused across volumes); the
implementations are :mod:`.keras_backends` and :mod:`.onnxruntime_backend`, and :func:`.choice.make_backend`
picks one.

>>> class Zeros:
...     name, device = "zeros", "CPU"
...     def predict(self, batch): return np.zeros_like(batch)
>>> backend: InferenceBackend = Zeros()
>>> backend.predict(np.ones((2, 256, 256, 1), np.float32)).shape
(2, 256, 256, 1)
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

DEVICES = ("auto", "cpu", "gpu")


class InferenceBackend(Protocol):
    name: str  # "tensorflow", "onnxruntime" or "keras"
    device: str  # what it runs on, e.g. "CPU", "GPU:0", "CUDAExecutionProvider"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """``(n, H, W, 1) float32`` normalised slices -> ``(n, H, W, 1) float32`` probabilities."""
        ...
