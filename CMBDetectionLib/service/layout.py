"""Where ``cmb-serve`` keeps things in ``--data-dir``: the job database, the audit log, and per job an
``input/`` folder (the upload, or the unpacked DICOM series) and a ``results/`` folder (the run's files).

>>> data = DataDir("/srv/cmb")
>>> data.database.name, data.results("3f2a").relative_to(data.root).as_posix()
('jobs.sqlite', 'jobs/3f2a/results')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataDir:
    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def database(self) -> Path:
        return self.root / "jobs.sqlite"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.log"

    def job(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def inputs(self, job_id: str) -> Path:
        return self.job(job_id) / "input"

    def results(self, job_id: str) -> Path:
        return self.job(job_id) / "results"

    def create(self) -> DataDir:
        """Make the folders (private to this user: uploads are patient scans)."""
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        return self
