"""The subjects of a cohort, listed from ``cmb-cohort``'s INPUT: a BIDS dataset, a folder, or a CSV.

- **BIDS**: a folder holding ``sub-*`` folders. Each ``sub-<s>/[ses-<t>/]anat/*_swi.nii.gz`` or ``*_T2starw.nii.gz``
  is one subject (phase images, ``part-phase``, are left out); subject and session come from the folder names.
  When one subject and session hold several such files (runs, echoes), each keeps its own BIDS name as its key.
- **Folder**: each volume file directly inside (``.nii.gz``, ``.nrrd``, ``.mha``...) and each sub-folder (a DICOM
  series) is a subject named after it; hidden entries are skipped.
- **CSV**: columns ``subject`` and ``path`` (and optionally ``session``); relative paths are read from the CSV's
  folder.

A subject's results go into ``OUT/<key>/``: ``key`` is ``<subject>`` or ``<subject>_<session>``.

>>> Subject("sub-01", "ses-1", Path("x_swi.nii.gz")).key, Subject("a", "", Path("a.nrrd")).key
('sub-01_ses-1', 'a')
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from CMBDetectionLib.errors import CohortError
from CMBDetectionLib.imageio.volumes import VOLUME_SUFFIXES, volume_stem
from CMBDetectionLib.outputs.csv_files import read_csv
from CMBDetectionLib.outputs.stems import safe_stem

BIDS_SUFFIXES = ("_swi.nii.gz", "_swi.nii", "_T2starw.nii.gz", "_T2starw.nii")
_PHASE = re.compile(r"_part-phase_")


@dataclass(frozen=True)
class Subject:
    """One volume of the cohort: a file, or a DICOM series folder."""

    subject: str
    session: str
    path: Path

    @property
    def key(self) -> str:
        """The subject's output folder name (safe on every file system)."""
        return safe_stem(f"{self.subject}_{self.session}" if self.session else self.subject)


def list_subjects(source: str | os.PathLike, output: str | os.PathLike | None = None) -> list[Subject]:
    """Every subject of ``source`` (a BIDS folder, a folder of volumes, or a CSV), sorted by key; the ``output``
    folder is never one of them (it may lie inside ``source``).

    Raises ``CohortError`` when ``source`` holds none, or two subjects would share an output folder.
    """
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        subjects = _from_csv(source)
    elif source.is_dir():
        subjects = _from_bids(source) if any(p.is_dir() for p in source.glob("sub-*")) else _from_folder(source)
    else:
        raise CohortError(f"{source}: not a folder or a .csv file; give a BIDS dataset, a folder of volumes or "
                          "DICOM folders, or a CSV with columns subject,path.")
    if output is not None:
        subjects = [s for s in subjects if s.path.resolve() != Path(output).resolve()]
    if not subjects:
        raise CohortError(f"{source}: no SWI volumes found; BIDS needs sub-*/[ses-*/]anat/*_swi.nii.gz or "
                          "*_T2starw.nii.gz, a folder needs volume files or DICOM series folders.")
    return _unique(sorted(subjects, key=lambda s: s.key))


def _from_bids(root: Path) -> list[Subject]:
    files = [path for suffix in BIDS_SUFFIXES for pattern in (f"sub-*/anat/*{suffix}", f"sub-*/ses-*/anat/*{suffix}")
             for path in root.glob(pattern) if not _PHASE.search(path.name)]
    subjects = []
    for path in sorted(files):
        session = path.parent.parent.name if path.parent.parent.name.startswith("ses-") else ""
        subject = (path.parents[2] if session else path.parents[1]).name
        subjects.append(Subject(subject, session, path))
    keys = [s.key for s in subjects]
    # Several files of one subject and session: each is named by its own BIDS entities (run, echo...).
    return [s if keys.count(s.key) == 1 else Subject(_bids_entities(s.path), "", s.path) for s in subjects]


def _bids_entities(path: Path) -> str:
    """``sub-01_ses-1_run-2`` from ``sub-01_ses-1_run-2_swi.nii.gz``."""
    return volume_stem(path).rsplit("_", 1)[0]


def _from_folder(folder: Path) -> list[Subject]:
    subjects = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() or entry.name.lower().endswith(VOLUME_SUFFIXES):
            subjects.append(Subject(volume_stem(entry), "", entry))
    return subjects


def _from_csv(table: Path) -> list[Subject]:
    columns, rows = read_csv(table)
    missing = {"subject", "path"} - set(columns)
    if missing:
        raise CohortError(f"{table}: column(s) {', '.join(sorted(missing))} missing; the header needs subject,path "
                          "(and optionally session).")
    subjects = []
    for line, row in enumerate(rows, start=2):
        if not row["subject"].strip() or not row["path"].strip():
            raise CohortError(f"{table}, line {line}: empty subject or path; fill it in or remove the line.")
        path = Path(row["path"].strip())
        subjects.append(Subject(row["subject"].strip(), row.get("session", "").strip(),
                                path if path.is_absolute() else table.parent / path))
    return subjects


def _unique(subjects: list[Subject]) -> list[Subject]:
    seen: dict[str, Subject] = {}
    for subject in subjects:
        other = seen.setdefault(subject.key.casefold(), subject)
        if other is not subject:
            raise CohortError(f"{other.path} and {subject.path} would both write into the folder {subject.key}; "
                              "give each subject (and session) a distinct name.")
    return subjects
