"""Run detection on a ``cmb-serve`` detection service instead of this computer ("Process on: server").

:class:`RemoteDetection` has the interface of :class:`.background_run.BackgroundDetection` (``start``, ``poll``,
``cancel``, ``outputs``, ``cleanup``, ``target``), so the widget polls it the same way and
``DetectionLogic.finish_background`` turns its files into the same result nodes. A thread does the HTTP work
(standard library only: nothing to install in Slicer): it checks the server, uploads the volume, follows the
job's progress, and downloads the result files into a temporary folder. MRML is never touched off the main
thread. The server's address and token come from the caller (the widget keeps them in Slicer's settings,
never in the scene).

>>> server = ServerSettings("https://cmb.example.org", token)          # doctest: +SKIP
>>> run = RemoteDetection(image, DetectionSettings(), server)          # doctest: +SKIP
>>> run.start(); ...; lesions, label_map = run.outputs()               # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.outputs.files import read_outputs
from CMBDetectionLib.results import Lesion

from .background_run import INPUT_STEM, RunUpdate, TargetedRun
from .parameters import DetectionSettings

#: seconds between two status requests
POLL_S = 1.0
#: seconds one request may take before the server counts as unreachable (uploads get longer)
REQUEST_TIMEOUT_S = 30.0
UPLOAD_TIMEOUT_S = 600.0
CHUNK = 1 << 20


@dataclass(frozen=True)
class ServerSettings:
    """Where the detection service is and the token to show it (``Authorization: Bearer``)."""

    url: str
    token: str

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"server address {self.url!r} is not an http(s) URL; enter e.g. https://cmb.example.org "
                             "or http://127.0.0.1:8000.")
        if not self.token.strip():
            raise ValueError("no token for the detection server; paste the token its administrator gave you.")


class ServerError(RuntimeError):
    """The server could not be reached, refused the request, or the job failed; the message says what to do."""


class _Client:
    """The few requests of the service's API, with one-line errors for the user."""

    def __init__(self, server: ServerSettings) -> None:
        self.base = server.url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {server.token.strip()}"}

    def _open(self, method: str, path: str, data: Any = None, headers: dict[str, str] | None = None,
              timeout: float = REQUEST_TIMEOUT_S, missing_ok: bool = False):
        """The answer to one request; None for a 404 when ``missing_ok``."""
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={**self.headers, **(headers or {})})
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            if missing_ok and exc.code == 404:
                return None
            raise ServerError(_refusal(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerError(f"cannot reach the detection server at {self.base} ({reason}); check the server address "
                              "and that cmb-serve runs there, or choose Process on: this computer.") from None

    def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        with self._open(method, path, **kwargs) as answer:
            return json.loads(answer.read().decode("utf-8"))

    def download(self, path: str, target: Path) -> None:
        with self._open("GET", path) as answer, open(target, "wb") as file:
            shutil.copyfileobj(answer, file, CHUNK)

    def check_token(self) -> None:
        """Ask for a job that does not exist: 404 means the token is accepted. Done before an upload because a
        server that refuses the token mid-upload closes the connection, and the client then sees only a broken pipe."""
        answer = self._open("GET", f"/v1/jobs/{uuid.uuid4().hex}", missing_ok=True)
        if answer is not None:
            answer.close()

    def submit(self, volume: Path, fields: dict[str, str]) -> str:
        """Upload ``volume`` with ``fields``, streamed (never read whole into memory); returns the job id."""
        self.check_token()
        boundary = uuid.uuid4().hex
        head = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
                        for name, value in fields.items())
        head += (f'--{boundary}\r\nContent-Disposition: form-data; name="volume"; filename="{volume.name}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def body() -> Iterator[bytes]:
            yield head
            with open(volume, "rb") as file:
                while chunk := file.read(CHUNK):
                    yield chunk
            yield tail

        length = len(head) + volume.stat().st_size + len(tail)
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(length)}
        return self.json("POST", "/v1/jobs", data=body(), headers=headers, timeout=UPLOAD_TIMEOUT_S)["id"]


def _refusal(exc: urllib.error.HTTPError) -> str:
    """The user's message for an HTTP error answer."""
    if exc.code == 401:
        return ("the detection server refused the token (401 Unauthorized); check the token in the module's server "
                "settings.")
    try:
        detail = json.loads(exc.read().decode("utf-8")).get("detail", "")
    except (ValueError, AttributeError, OSError):
        detail = ""
    return f"the detection server answered {exc.code} {exc.reason}" + (f": {detail}" if detail else ".")


def job_fields(settings: DetectionSettings) -> dict[str, str]:
    """The form fields of the service's ``POST /v1/jobs`` for ``settings`` (the server chooses the device).

    >>> job_fields(DetectionSettings(threshold=0.2, lesion_filter=False))["lesion_filter"]
    'false'
    """
    return {"method": settings.method, "threshold": f"{settings.threshold:g}",
            "lesion_filter": str(settings.lesion_filter).lower(),
            "redraw_outlines": str(settings.redraw_outlines).lower()}


class RemoteDetection(TargetedRun):
    """One run of the engine on a detection server, for one image."""

    def __init__(self, image: sitk.Image, settings: DetectionSettings, server: ServerSettings, *,
                 target: Any = None, poll_s: float = POLL_S) -> None:
        super().__init__(target, "CMBDetection-remote-")
        self.image = image
        self.settings = settings
        self.server = server
        self._client = _Client(server)
        self._poll_s = poll_s
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._fraction: float | None = None
        self._message = "contacting the detection server..."
        self._returncode: int | None = None
        self._device = ""
        self.job_id: str | None = None
        self.cancelled = False

    def reported_device(self) -> dict[str, str]:
        """Provenance of the run for the result nodes: the server and the device it ran on."""
        return {"runner": f"cmb-serve {self._client.base}",
                **({"device_used": f"{self._device} on {self._client.base}"} if self._device else {})}

    def start(self) -> None:
        volume = self._folder / f"{INPUT_STEM}.nii.gz"
        sitk.WriteImage(self.image, str(volume), useCompression=True)
        self._thread = threading.Thread(target=self._run, args=(volume,), daemon=True)
        self._thread.start()

    def _run(self, volume: Path) -> None:
        try:
            self._device = str(self._client.json("GET", "/v1/health").get("device", ""))
            self._message = "uploading the volume to the detection server..."
            self.job_id = self._client.submit(volume, job_fields(self.settings))
            job = self._follow()
            if job is None:
                self._finish(1, "detection cancelled; earlier results kept.")
                return
            if job["status"] == "done":
                self._download()
            self._forget()
            if job["status"] == "done":
                self._finish(0, f"{job['lesions']} microbleed candidates found on the server.")
            else:
                self._finish(1, f"detection failed on the server: {job.get('error') or job['status']}")
        except ServerError as exc:
            self._finish(1, str(exc))

    def _forget(self) -> None:
        """Delete the finished job on the server: the scan and its results need not stay there."""
        try:
            self._client.json("DELETE", f"/v1/jobs/{self.job_id}")
        except ServerError:
            pass  # the server's retention (--keep-days) removes it later

    def _follow(self) -> dict[str, Any] | None:
        """Poll the job until it ends; None when cancelled here (the server is told to stop)."""
        while True:
            if self.cancelled:
                self._client.json("DELETE", f"/v1/jobs/{self.job_id}")
                return None
            job = self._client.json("GET", f"/v1/jobs/{self.job_id}")
            if job["status"] in ("done", "failed", "cancelled"):
                return job
            self._fraction = float(job["progress"])
            self._message = ("waiting in the server's queue..." if job["status"] == "queued"
                             else f"detecting on the server ({self._device or 'remote'})...")
            self._wake.wait(self._poll_s)

    def _download(self) -> None:
        self._message = "downloading the results..."
        out = self._folder / "out"
        out.mkdir()
        for entry in self._client.json("GET", f"/v1/jobs/{self.job_id}/files")["files"]:
            name = Path(entry["name"]).name  # a bare file name whatever the server says
            self._client.download(f"/v1/jobs/{self.job_id}/files/{urllib.parse.quote(name)}", out / name)

    def _finish(self, returncode: int, message: str) -> None:
        self._message = message
        if returncode == 0:
            self._fraction = 1.0
        self._returncode = returncode

    def poll(self) -> RunUpdate:
        if self._thread is None:
            return RunUpdate(False, None, "not started", None)
        return RunUpdate(self._returncode is None, self._fraction, self._message, self._returncode)

    def wait(self, timeout: float | None = None) -> int | None:
        if self._thread is not None:
            self._thread.join(timeout)
        return self._returncode

    def cancel(self) -> None:
        """Ask the server to stop the job; the run ends at the next poll and its files are discarded."""
        self.cancelled = True
        self._wake.set()

    def log_tail(self) -> str:
        return self._message

    def outputs(self) -> tuple[list[Lesion], np.ndarray]:
        """The finished run's lesions and label map; ``RuntimeError`` with the reason when it failed."""
        update = self.poll()
        if update.running:
            raise RuntimeError("the detection run has not finished yet.")
        if update.returncode != 0:
            raise RuntimeError(update.message)
        files = read_outputs(self._folder / "out", INPUT_STEM, self.image)
        return files.lesions, files.label_map

    def cleanup(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)
