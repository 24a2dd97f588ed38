"""A small client of Orthanc's REST API (standard library only): list series, download and upload DICOM files.

Every failure becomes a one-line :class:`errors.PacsError` saying what to check.

>>> client = OrthancClient("http://localhost:8042", "cmb", "secret")     # doctest: +SKIP
>>> [s["MainDicomTags"].get("SeriesDescription") for s in client.all_series()]  # doctest: +SKIP
['SWI', 'T1 MPRAGE']
>>> OrthancClient("localhost:8042")
Traceback (most recent call last):
...
CMBDetectionLib.errors.PacsError: localhost:8042: not an http(s) URL; give Orthanc's address, like http://localhost:8042.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from CMBDetectionLib.errors import PacsError


class OrthancClient:
    """Orthanc at ``url`` (``http(s)://host:port``), with HTTP basic authentication when ``username`` is given."""

    def __init__(self, url: str, username: str | None = None, password: str | None = None, timeout_s: float = 120):
        if not url.startswith(("http://", "https://")):
            raise PacsError(f"{url}: not an http(s) URL; give Orthanc's address, like http://localhost:8042.")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {}
        if username is not None:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"

    def _request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> bytes:
        headers = dict(self._headers, **({"Content-Type": content_type} if content_type else {}))
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            hint = " (check --username and --password)" if exc.code in (401, 403) else ""
            raise PacsError(f"Orthanc at {self.url}: {method} {path} answered HTTP {exc.code} {exc.reason}{hint}."
                            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PacsError(f"Orthanc at {self.url}: cannot be reached ({reason}); check --orthanc and that Orthanc "
                            "is running.") from None

    def get_json(self, path: str) -> Any:
        """``GET path`` decoded from JSON."""
        try:
            return json.loads(self._request("GET", path))
        except json.JSONDecodeError:
            raise PacsError(f"Orthanc at {self.url}: GET {path} did not answer JSON; is this Orthanc's REST "
                            "port?") from None

    def all_series(self) -> list[dict[str, Any]]:
        """Every series, expanded (``MainDicomTags``, ``ParentStudy``, ``Instances``, ``IsStable``, ``LastUpdate``)."""
        return self.get_json("/series?expand")

    def instance_tags(self, instance_id: str) -> dict[str, Any]:
        """An instance's DICOM tags, by keyword (sequences as lists of dicts)."""
        return self.get_json(f"/instances/{instance_id}/tags?simplify")

    def download_series(self, series_id: str, folder: str | os.PathLike) -> list[Path]:
        """Save every instance of a series into ``folder`` as ``<n>.dcm``; returns the files."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for n, instance in enumerate(self.get_json(f"/series/{series_id}/instances")):
            path = folder / f"{n:05d}.dcm"
            path.write_bytes(self._request("GET", f"/instances/{instance['ID']}/file"))
            files.append(path)
        return files

    def upload(self, path: str | os.PathLike) -> str:
        """Store a DICOM file; returns its Orthanc instance ID."""
        answer = json.loads(self._request("POST", "/instances", Path(path).read_bytes(), "application/dicom"))
        return str(answer["ID"])

    def delete_series(self, series_id: str) -> None:
        self._request("DELETE", f"/series/{series_id}")
