"""Which ONNX Runtime build to install into Slicer's Python, from what the workstation has.

Only one ONNX Runtime distribution may be installed at a time (they all provide the ``onnxruntime`` module):

- an NVIDIA GPU (Linux or Windows, x86-64): ``onnxruntime-gpu`` with its ``cuda`` and ``cudnn`` extras, the CUDA
  and cuDNN runtime wheels from the package index, so that no system CUDA is needed (the engine calls
  ``onnxruntime.preload_dlls()`` before it opens a CUDA session);
- Windows without one: ``onnxruntime-directml`` (any DirectX 12 GPU);
- macOS: plain ``onnxruntime``, whose macOS wheels include the CoreML provider (Apple silicon GPU/Neural Engine);
- anything else: plain ``onnxruntime`` (CPU).

>>> onnxruntime_requirement(Workstation("Linux", "x86_64", nvidia_gpu=True))
'onnxruntime-gpu[cuda,cudnn]>=1.21'
>>> onnxruntime_requirement(Workstation("Windows", "AMD64", nvidia_gpu=False))
'onnxruntime-directml>=1.17'
>>> onnxruntime_requirement(Workstation("Darwin", "arm64", nvidia_gpu=False))
'onnxruntime>=1.17'
"""

from __future__ import annotations

import functools
import platform
import shutil
import subprocess
from dataclasses import dataclass

#: every distribution that provides the ``onnxruntime`` module; installing one means removing the others
ONNXRUNTIME_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml")
_X86_64 = ("x86_64", "amd64")


@dataclass(frozen=True)
class Workstation:
    system: str  # platform.system(): "Linux", "Windows", "Darwin"
    machine: str  # platform.machine(): "x86_64", "AMD64", "arm64", "aarch64"
    nvidia_gpu: bool


def has_nvidia_gpu() -> bool:
    """True when ``nvidia-smi`` (installed with the NVIDIA driver) lists at least one GPU."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return False
    try:
        listed = subprocess.run([executable, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return listed.returncode == 0 and "GPU" in listed.stdout


@functools.lru_cache(maxsize=1)  # nvidia-smi takes up to 10 s and the hardware does not change during a session
def detect_workstation() -> Workstation:
    return Workstation(platform.system(), platform.machine(), has_nvidia_gpu())


def onnxruntime_requirement(workstation: Workstation) -> str:
    """The requirement string of the ONNX Runtime build that uses this workstation's GPU (see the module text)."""
    x86_64 = workstation.machine.lower() in _X86_64
    if workstation.nvidia_gpu and x86_64 and workstation.system in ("Linux", "Windows"):
        return "onnxruntime-gpu[cuda,cudnn]>=1.21"
    if workstation.system == "Windows" and x86_64:
        return "onnxruntime-directml>=1.17"
    return "onnxruntime>=1.17"

