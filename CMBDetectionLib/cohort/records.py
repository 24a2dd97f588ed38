"""Completion records: ``OUT/<key>/completion.json``, written last, once a subject's files are all in place.

A record holds what the results depend on: the input's checksum (sha256 of the file, or of every file of a DICOM
folder with its name), the detection settings and the model (name, version, sha256 of its card, which lists the
sha256 of every model file). A re-run skips a subject whose record matches all three and redoes it otherwise.
The record also keeps the subject's row of ``cohort.csv`` (``summary``), so a skipped subject needs no reading.

Checking 10,000 inputs must take seconds, not an hour of hashing: like ``git status``, the record also keeps each
input's size and modification time, and the checksum is recomputed only when those changed (a file copied or
touched but identical is then still recognised as the same).

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "in.nii.gz").write_bytes(b"volume")
>>> record = new_record(fingerprint(folder / "in.nii.gz"), {"method": "unet"}, {"version": "0.6"}, {}, [])
>>> _ = write_record(folder, record)
>>> stale_reason(folder, folder / "in.nii.gz", {"method": "unet"}, {"version": "0.6"}) is None
True
>>> stale_reason(folder, folder / "in.nii.gz", {"method": "two-stage"}, {"version": "0.6"})
'settings changed'
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from CMBDetectionLib.reports.html import write_text_atomically

RECORD_NAME = "completion.json"
RECORD_VERSION = 1
_CHUNK = 1 << 20


def input_files(path: Path) -> list[Path]:
    """The files whose bytes make up an input: the file itself, or every file under a DICOM folder, by name."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def stat_signature(path: Path) -> list[list[Any]]:
    """(relative name, size, modification time in ns) of each input file: cheap to compare."""
    return [[str(f.relative_to(path)) if path.is_dir() else f.name, f.stat().st_size, f.stat().st_mtime_ns]
            for f in input_files(path)]


def checksum(path: Path) -> str:
    """sha256 over the input's files (their relative names too, for a folder)."""
    digest = hashlib.sha256()
    for file in input_files(path):
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
    return digest.hexdigest()


def fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """The input part of a record: its path, stat signature and checksum."""
    path = Path(path)
    return {"path": str(path), "stat": stat_signature(path), "sha256": checksum(path)}


def new_record(source: dict[str, Any], settings: dict[str, Any], model: dict[str, Any],
               summary: dict[str, Any], files: list[str]) -> dict[str, Any]:
    """A record for a subject finished now; ``files`` are the names of the files written into its folder."""
    return {"record_version": RECORD_VERSION, "input": source, "settings": settings, "model": model,
            "summary": summary, "files": files, "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def record_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / RECORD_NAME


def read_record(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The subject folder's record; None when there is none or it cannot be read (the subject is then redone)."""
    try:
        record = json.loads(record_path(folder).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("record_version") == RECORD_VERSION else None


def write_record(folder: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Write the record atomically, so a kill leaves the old one or the new one."""
    return write_text_atomically(json.dumps(record, indent=1), record_path(folder))


def remove_record(folder: str | os.PathLike) -> None:
    """Forget a subject's completion before redoing it: a run killed half-way must not look finished."""
    record_path(folder).unlink(missing_ok=True)


def stale_reason(folder: str | os.PathLike, source: str | os.PathLike, settings: dict[str, Any],
                 model: dict[str, Any]) -> str | None:
    """Why the subject in ``folder`` must be (re)done, or None when its record matches the input, settings and
    model, and the files it lists are still there."""
    record, folder = read_record(folder), Path(folder)
    if record is None:
        return "not done yet"
    if record["settings"] != settings:
        return "settings changed"
    if record["model"] != model:
        return "model changed"
    if not all((folder / name).is_file() for name in record["files"]):
        return "result files missing"
    source = Path(source)
    if not source.exists():
        return "input missing"
    if record["input"]["stat"] != stat_signature(source) and record["input"]["sha256"] != checksum(source):
        return "input changed"
    return None
