"""Run the engine's ``cmb-detect`` in a separate Python process so that Slicer's GUI never freezes.

The input volume is written to a temporary folder, the process writes its result files there, and a reader
thread follows its output (tqdm's ``NN%|`` gives the progress). The caller polls :meth:`poll` from a timer on
the main thread and loads the files once the run has finished; MRML is never touched off the main thread.
Cancel kills the whole process tree: TensorFlow and ONNX Runtime may start worker processes, and killing only
the parent would leave them holding memory (the same reason as SlicerMONAIAuto3DSeg's ``process.py``).

>>> run = BackgroundDetection(image, DetectionSettings()); run.start()     # doctest: +SKIP
>>> while run.poll().running: time.sleep(0.5)                              # doctest: +SKIP
>>> lesions, label_map = run.outputs()                                    # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.outputs.files import read_outputs
from CMBDetectionLib.results import Lesion

from .parameters import DetectionSettings

INPUT_STEM = "input"
_PERCENT = re.compile(r"(\d{1,3})%\|")
#: the engine's line naming what the UNet runs on (``cli/detect.py``), e.g. "inference on CUDAExecutionProvider"
_DEVICE = re.compile(r"inference on (\S+)")

#: (python executable, input file, output folder, settings) -> command line
CommandBuilder = Callable[[str, Path, Path, DetectionSettings], Sequence[str]]


def python_executable() -> str:
    """Slicer's ``PythonSlicer`` when running in Slicer (``sys.executable`` is Slicer itself there), else this Python."""
    return shutil.which("PythonSlicer") or sys.executable


def engine_command(python: str, input_path: Path, out_dir: Path, settings: DetectionSettings) -> list[str]:
    """``cmb-detect`` through the interpreter, so that no console script has to be on PATH."""
    code = "import sys; from CMBDetectionLib.cli.detect import main; sys.exit(main())"
    return [python, "-c", code, str(input_path), "-o", str(out_dir), *settings.cli_args()]


@dataclass(frozen=True)
class RunUpdate:
    running: bool
    fraction: float | None
    message: str
    returncode: int | None


class TargetedRun:
    """What every run (local or on a server) keeps: the volume node and scene its results belong to (read only on
    the main thread), and the temporary folder its files arrive in."""

    def __init__(self, target: Any, folder_prefix: str) -> None:
        self.target = target
        self._scene = target.GetScene() if target is not None else None
        self._folder = Path(tempfile.mkdtemp(prefix=folder_prefix))

    @property
    def folder(self) -> Path:
        return self._folder

    def target_present(self) -> bool:
        """True while the volume the run started on is still in the scene it was in (not removed, scene not closed)."""
        scene = self.target.GetScene() if self.target is not None else None
        return scene is not None and scene is self._scene and bool(scene.IsNodePresent(self.target))


class BackgroundDetection(TargetedRun):
    """One background run of the engine on one image."""

    def __init__(
        self,
        image: sitk.Image,
        settings: DetectionSettings,
        *,
        command: CommandBuilder = engine_command,
        python: str | None = None,
        target: Any = None,
    ) -> None:
        super().__init__(target, "CMBDetection-")
        self.image = image
        self.settings = settings
        self._device: str | None = None
        self._command = command
        self._python = python or python_executable()
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._lines: deque[str] = deque(maxlen=40)
        self._fraction: float | None = None
        self.cancelled = False

    def reported_device(self) -> dict[str, str]:
        """``{"device_used": ...}`` when the engine said what it ran on, else empty."""
        return {"device_used": self._device} if self._device else {}

    def start(self) -> None:
        input_path = self._folder / f"{INPUT_STEM}.nii.gz"
        sitk.WriteImage(self.image, str(input_path), useCompression=True)
        env = dict(os.environ)
        # The engine package sits beside this module in Slicer's qt-scripted-modules folder (or is pip-installed).
        engine_root = str(Path(__import__("CMBDetectionLib").__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (engine_root, env.get("PYTHONPATH"))))
        command = list(self._command(self._python, input_path, self._folder / "out", self.settings))
        new_group = (
            {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)}
            if os.name == "nt"
            else {"start_new_session": True}
        )
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, **new_group
        )
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        """Split the output on newlines and tqdm's carriage returns; keep the last lines and the last percentage."""
        assert self._process is not None and self._process.stdout is not None
        buffer = b""
        while chunk := self._process.stdout.read1(4096):
            buffer += chunk
            *complete, buffer = re.split(rb"[\r\n]", buffer)
            for raw in complete:
                self._take_line(raw.decode("utf-8", "replace").strip())
        self._take_line(buffer.decode("utf-8", "replace").strip())

    def _take_line(self, line: str) -> None:
        if not line:
            return
        match = _PERCENT.search(line)
        if match:
            self._fraction = min(int(match.group(1)), 100) / 100.0
            return
        device = _DEVICE.search(line)
        if device:
            self._device = device.group(1)
        self._lines.append(line)

    def poll(self) -> RunUpdate:
        if self._process is None:
            return RunUpdate(False, None, "not started", None)
        code = self._process.poll()
        if code is not None and self._reader is not None:
            self._reader.join(timeout=5)
        message = self._lines[-1] if self._lines else "running detection..."
        return RunUpdate(code is None, self._fraction, message, code)

    def wait(self, timeout: float | None = None) -> int:
        assert self._process is not None
        code = self._process.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout=5)
        return code

    def cancel(self) -> None:
        """Kill the process and its children; the run's files are discarded."""
        self.cancelled = True
        if self._process is None or self._process.poll() is not None:
            return
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(self._process.pid)], capture_output=True, check=False)
        else:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._process.wait(timeout=10)

    def log_tail(self) -> str:
        return "\n".join(self._lines)

    def outputs(self) -> tuple[list[Lesion], np.ndarray]:
        """The finished run's lesions and label map; raises ``RuntimeError`` with the run's last output on failure."""
        update = self.poll()
        if update.running:
            raise RuntimeError("the detection run has not finished yet.")
        if update.returncode != 0:
            raise RuntimeError(f"detection failed (exit code {update.returncode}):\n{self.log_tail()}")
        files = read_outputs(self._folder / "out", INPUT_STEM, self.image)
        return files.lesions, files.label_map

    def cleanup(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)
