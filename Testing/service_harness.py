"""A real ``cmb-serve`` for tests: a subprocess on a free local port, with its own token file and data folder,
that can be killed and started again on the same folder and port.

>>> server = ServeProcess(tmp_path).start()                 # doctest: +SKIP
>>> server.client().get("/v1/jobs/x").status_code           # doctest: +SKIP
404
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import SimpleITK as sitk

from CMBDetectionLib.cli.detect import demo_volume

#: two callers: jobs of one are invisible to the other
TOKENS = ("test-token-alpha-0123456789abcdef", "test-token-beta-0123456789abcdef")
START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_command() -> list[str]:
    """The installed ``cmb-serve`` script beside this Python (the real entry point), else the module."""
    script = shutil.which("cmb-serve", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "CMBDetectionLib.cli.serve"]


class ServeProcess:
    """``cmb-serve`` over ``folder/data`` with ``folder/tokens``; ``extra`` are further command-line options."""

    def __init__(self, folder: Path, *extra: str) -> None:
        self.folder = Path(folder)
        self.data_dir = self.folder / "data"
        self.token_file = self.folder / "tokens"
        self.token_file.write_text("# test tokens\n" + "\n".join(TOKENS) + "\n")
        self.extra = extra
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log = self.folder / "serve.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServeProcess:
        """Start the server and wait until ``/v1/health`` answers with its workers up."""
        command = [*serve_command(), "--port", str(self.port), "--token-file", str(self.token_file),
                   "--data-dir", str(self.data_dir), "--device", "cpu", *self.extra]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"cmb-serve exited: {self.log.read_text()[-2000:]}"
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).json()["status"] == "ok":
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"cmb-serve did not start in {START_TIMEOUT_S} s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """Kill the server process alone, as a crash would (its workers notice and stop by themselves)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(30)

    def stop(self) -> None:
        """Stop the server and everything it started."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def client(self, token: str | None = TOKENS[0]) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def submit(client: httpx.Client, path: Path, **fields: str) -> str:
    """Upload ``path`` as a job's volume; returns the job id (asserting 202 and ``queued``)."""
    with open(path, "rb") as volume:
        answer = client.post("/v1/jobs", files={"volume": (path.name, volume)}, data=fields)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "queued"
    return answer.json()["id"]


def wait_for(client: httpx.Client, job_id: str, until: tuple[str, ...] = ("done", "failed", "cancelled"),
             timeout_s: float = 300.0) -> tuple[dict, list[float]]:
    """Poll a job until its status is in ``until``; returns its last answer and the progress values seen."""
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        seen.append(job["progress"])
        if job["status"] in until:
            return job, seen
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout_s} s")


def small_volume(path: Path) -> Path:
    """An 80 x 80 x 14 crop of the demo phantom holding one CMB: a job of a few seconds without MARS."""
    sitk.WriteImage(sitk.ReadImage(str(demo_volume()))[88:168, 72:152, 16:30], str(path), useCompression=True)
    return path
