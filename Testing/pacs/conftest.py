"""A real Orthanc (Debian's ``orthanc`` package, installed by ``.ci/run``) on free local ports, with authentication.

Each module using the ``orthanc`` fixture gets its own server with its storage and index in a temporary folder;
it listens on the loopback only and is stopped after the module.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

USERNAME, PASSWORD = "cmb", "s3cret-pacs"
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/system", timeout=2)  # unauthenticated: 401 means it is up
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False
    return False


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """``{"url", "username", "password"}`` of a running Orthanc; fails (never skips) when Orthanc is not installed."""
    binary = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")
    if binary is None:
        pytest.fail("Orthanc is not installed: run `apt-get install orthanc` (.ci/run installs it).")
    root = tmp_path_factory.mktemp("orthanc")
    http_port = free_port()
    config = {
        "Name": "cmb-test", "HttpPort": http_port, "DicomPort": free_port(), "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True, "RegisteredUsers": {USERNAME: PASSWORD},
        "StorageDirectory": str(root / "storage"), "IndexDirectory": str(root / "index"),
        "StableAge": 1, "Plugins": [], "HttpThreadsCount": 4,
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = open(root / "orthanc.log", "w")
    process = subprocess.Popen([binary, str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"Orthanc did not start on port {http_port}:\n" + (root / "orthanc.log").read_text()[-2000:])
        time.sleep(0.2)
    yield {"url": url, "username": USERNAME, "password": PASSWORD}
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
