"""The audit log of ``cmb-serve``: who did what to which job, and when, one JSON object per line.

"Who" is the token's fingerprint (:func:`auth.fingerprint`), "what" an event name, plus the job id and a few
technical fields (method, upload size, status, the kind of file downloaded). File names, patient names or DICOM
tags never go in: an upload's name may carry a patient's name, so it is left out on purpose.

>>> import tempfile, pathlib, json
>>> log = AuditLog(pathlib.Path(tempfile.mkdtemp()) / "audit.log")
>>> log.record("submit", "token 1 (sha256 e213d1b5)", job="3f2a", method="unet", bytes=1024)
>>> json.loads(log.path.read_text())["event"]
'submit'
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

#: the only extra fields an entry may carry (anything else is a programming error, refused loudly)
ALLOWED_FIELDS = frozenset({"job", "method", "options", "bytes", "status", "kind", "client"})


class AuditLog:
    """Appends entries to a file; safe from several threads (one lock) and processes (one ``O_APPEND`` write)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, event: str, who: str, **fields: Any) -> None:
        """Append ``{"time", "event", "who", **fields}``; ``fields`` must be among :data:`ALLOWED_FIELDS`."""
        unknown = set(fields) - ALLOWED_FIELDS
        if unknown:
            raise ValueError(f"audit fields {sorted(unknown)} are not allowed; patient data must stay out of the log.")
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event, "who": who, **fields}
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        with self._lock:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, line)
            finally:
                os.close(descriptor)
