"""Choosing the inference backend of the slice UNet (:class:`.protocol.InferenceBackend`) by name and device.

``make_backend("auto")`` tries the backends of :data:`AUTO_ORDER` that are registered in
:data:`BACKEND_FACTORIES` and takes the first that can run; each factory raises :class:`BackendUnavailable`
when it cannot (library or model file missing, device absent).

>>> backend = make_backend("tensorflow", model_dir)           # doctest: +SKIP
>>> probs = backend.predict(batch)                            # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from CMBDetectionLib.errors import BackendUnavailable
from CMBDetectionLib.probability.backends.keras_backends import KerasBackend, TensorFlowBackend
from CMBDetectionLib.probability.backends.onnxruntime_backend import OnnxRuntimeBackend
from CMBDetectionLib.probability.backends.protocol import DEVICES, InferenceBackend

log = logging.getLogger(__name__)

BackendFactory = Callable[..., InferenceBackend]
BACKEND_FACTORIES: dict[str, BackendFactory] = {
    "tensorflow": TensorFlowBackend, "onnxruntime": OnnxRuntimeBackend, "keras": KerasBackend,
}
AUTO_ORDER = ("onnxruntime", "tensorflow", "keras")


def _options(kind: str, threads: int | None) -> dict[str, int]:
    return {"threads": threads} if kind == "onnxruntime" and threads is not None else {}


def make_backend(
    kind: str = "auto", model_dir: str | os.PathLike | None = None, device: str = "auto", threads: int | None = None
) -> InferenceBackend:
    """Create the backend ``kind`` (``auto`` or a key of :data:`BACKEND_FACTORIES`) on ``device``.

    ``threads`` sets ONNX Runtime's intra-op threads (so that worker processes share the cores instead of each
    taking them all); TensorFlow reads its thread limits from the environment.
    """
    if device not in DEVICES:
        raise ValueError(f"device {device!r} unknown; choose one of {', '.join(DEVICES)}.")
    if kind != "auto":
        if kind not in BACKEND_FACTORIES:
            raise BackendUnavailable(
                f"backend {kind!r} is not available; choose one of auto, {', '.join(BACKEND_FACTORIES)}."
            )
        return BACKEND_FACTORIES[kind](model_dir=model_dir, device=device, **_options(kind, threads))
    reasons = []
    for name in AUTO_ORDER:
        if name not in BACKEND_FACTORIES:
            continue
        try:
            return BACKEND_FACTORIES[name](model_dir=model_dir, device=device, **_options(name, threads))
        except BackendUnavailable as exc:
            log.debug("backend %s unavailable: %s", name, exc)
            reasons.append(f"{name}: {exc}")
    raise BackendUnavailable("no inference backend can run: " + "; ".join(reasons))
