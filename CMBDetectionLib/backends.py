"""Inference backends for the slice UNet behind one interface.

A backend turns a batch of preprocessed slices ``(n, 256, 256, 1) float32`` into sigmoid probabilities of the
same shape. ``make_backend("auto")`` picks the fastest one available (ONNX Runtime, then TensorFlow).

>>> backend = make_backend("tensorflow", model_dir)           # doctest: +SKIP
>>> probs = backend.predict(batch)                            # doctest: +SKIP
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class InferenceBackend(Protocol):
    name: str  # "tensorflow" or "onnxruntime"
    device: str  # what it runs on, e.g. "CPU", "GPU:0", "CUDAExecutionProvider"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """``(n, H, W, 1) float32`` normalised slices -> ``(n, H, W, 1) float32`` probabilities."""
        ...
