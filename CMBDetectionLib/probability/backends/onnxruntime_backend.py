"""ONNX Runtime backend: the exported UNet (``unet.onnx`` next to the Keras weights) without TensorFlow.

The execution provider is the first installed one of :data:`GPU_PROVIDERS` (CUDA with ``onnxruntime-gpu``,
DirectML with ``onnxruntime-directml`` on Windows, CoreML on macOS) unless ``device="cpu"``; else the CPU.
Sessions use every graph optimisation and as many intra-op threads as the machine has physical cores
(hyper-threads only add contention to convolution kernels).

>>> backend = OnnxRuntimeBackend(device="cpu")  # the shipped models/unet
>>> backend.predict(np.zeros((2, 256, 256, 1), "float32")).shape
(2, 256, 256, 1)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from CMBDetectionLib.errors import BackendUnavailable, ModelError

log = logging.getLogger(__name__)

GPU_PROVIDERS = ("CUDAExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider")
CPU_PROVIDER = "CPUExecutionProvider"


def physical_cores() -> int:
    """Physical cores this process may use (logical CPUs when the topology is unknown).

    >>> physical_cores() >= 1
    True
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except ImportError:
        cores = _linux_physical_cores()
    return max(1, min(cores or usable, usable))


def _linux_physical_cores() -> int | None:
    """Distinct (physical id, core id) pairs of /proc/cpuinfo; None where there is no such file."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    cores = set()
    for block in text.split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {key.strip(): value.strip() for key, value in fields.items()}
        if "core id" in fields:
            cores.add((fields.get("physical id"), fields["core id"]))
    return len(cores) or None


def threads_per_worker(workers: int) -> int:
    """Intra-op threads for each of ``workers`` processes: the physical cores shared out, at least one.

    >>> threads_per_worker(10**6)
    1
    """
    return max(1, physical_cores() // max(1, workers))


def choose_providers(device: str, available: list[str]) -> list[str]:
    """Execution providers to ask for, best first, for ``device`` in ``auto|cpu|gpu``.

    >>> choose_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    ['CUDAExecutionProvider', 'CPUExecutionProvider']
    >>> choose_providers("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    ['CPUExecutionProvider']
    """
    if device == "cpu":
        return [CPU_PROVIDER]
    gpus = [name for name in GPU_PROVIDERS if name in available]
    if device == "gpu" and not gpus:
        raise BackendUnavailable(
            "--device gpu: ONNX Runtime has no GPU execution provider here (install onnxruntime-gpu for CUDA, "
            "onnxruntime-directml on Windows); use --device auto or cpu."
        )
    return gpus[:1] + [CPU_PROVIDER]


def fallback_warning(asked: list[str], running: str) -> str | None:
    """What to tell the user when a GPU provider was asked for but the session runs on another (the CPU).

    >>> fallback_warning(["CUDAExecutionProvider", "CPUExecutionProvider"], "CPUExecutionProvider")
    'GPU provider CUDAExecutionProvider could not start (driver or CUDA/cuDNN libraries missing?); running on the CPU.'
    >>> fallback_warning(["CPUExecutionProvider"], "CPUExecutionProvider") is None
    True
    """
    if asked[0] == running or asked[0] == CPU_PROVIDER:
        return None
    return f"GPU provider {asked[0]} could not start (driver or CUDA/cuDNN libraries missing?); running on the CPU."


def session_options(threads: int | None = None):
    """All graph optimisations, ``threads`` (default: physical cores) intra-op threads, one inter-op thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1  # the UNet is one chain of layers: nothing runs in parallel across ops
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle pool threads sleep instead of spinning, leaving the cores to the thread preparing the next batch.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Weights stored as int8 (DequantizeLinear on an initialiser, float32 arithmetic) are then dequantised once when
    # the session starts instead of at every batch; the shipped models hold no quantised activations this would slow.
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    return options


def onnx_path(model_dir: str | os.PathLike | None = None) -> Path:
    """The verified ONNX file of the ``unet`` model; :class:`BackendUnavailable` when there is none, and
    :class:`ModelError` (never a silent fall-back to another backend) when the model is damaged or unsupported."""
    from CMBDetectionLib.model_store import model_dir as find_model_dir
    from CMBDetectionLib.model_store import verified_card

    folder = find_model_dir("unet", model_dir)
    card = verified_card(folder, "unet")
    name = card.get("onnx")
    if not name or not (folder / name).is_file():
        raise BackendUnavailable(
            f"{folder}: the model has no ONNX export; run `python -m CMBDetectionLib.training.onnx_export {folder}` "
            "or use --backend tensorflow."
        )
    return folder / name


class OnnxRuntimeBackend:
    """The exported UNet run by ONNX Runtime (an :class:`.protocol.InferenceBackend`).

    ``path`` names an ONNX file directly (tests, benchmarks); otherwise the model folder's card gives it.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        device: str = "auto",
        *,
        path: str | os.PathLike | None = None,
        threads: int | None = None,
    ):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(
                "onnxruntime is not installed (pip install onnxruntime); use --backend tensorflow."
            ) from exc
        model_path = Path(path) if path is not None else onnx_path(model_dir)
        providers = choose_providers(device, ort.get_available_providers())
        if "CUDAExecutionProvider" in providers and hasattr(ort, "preload_dlls"):
            ort.preload_dlls()  # CUDA and cuDNN from the nvidia-* wheels of onnxruntime-gpu[cuda,cudnn], if installed
        try:
            self._session = ort.InferenceSession(str(model_path), session_options(threads), providers=providers)
        except Exception as exc:  # ORT's own classes (InvalidProtobuf, Fail, ...) share no base but Exception
            raise ModelError(f"{model_path}: ONNX Runtime cannot load this model ({str(exc).splitlines()[0]}); "
                             "the file is damaged: reinstall the model or export it again.") from None
        # A listed provider whose libraries are missing is silently dropped by ORT: report what really runs.
        self.device = self._session.get_providers()[0]
        if device == "gpu" and self.device == CPU_PROVIDER:
            raise BackendUnavailable(
                f"--device gpu: {providers[0]} could not start (CUDA/driver libraries missing?); use --device cpu."
            )
        if (warning := fallback_warning(providers, self.device)) is not None:
            log.warning(warning)
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        log.debug("onnxruntime session on %s from %s", self.device, model_path)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """``(n, 256, 256, 1) float32`` -> probabilities of the same shape (ONNX Runtime releases the GIL)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self._session.run([self._output], {self._input: batch})[0]
