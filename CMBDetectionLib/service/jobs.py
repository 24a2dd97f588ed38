"""The job queue of ``cmb-serve``: one SQLite table in ``--data-dir`` that the web server and every worker
process share, so a restart loses no job.

A job moves ``queued -> running -> done | failed | cancelled``. A worker claims the oldest queued job in one
statement (no two workers get the same job). Cancelling a running job only marks it; the worker notices through
``detect()``'s ``cancel`` callable. After a crash, :meth:`JobStore.recover` puts jobs left ``running`` back in
the queue, or fails them when the server already stopped twice while running them.

>>> import tempfile, pathlib
>>> store = JobStore(pathlib.Path(tempfile.mkdtemp()) / "jobs.sqlite")
>>> job = store.create(owner="t0", method="unet", options={"mars": False}, input_name="a.nii.gz")
>>> store.claim("worker-1").id == job.id, store.claim("worker-2")
(True, None)
>>> store.finish(job.id, "worker-1", lesions=3).status
'done'
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
#: a job interrupted by this many server stops is failed instead of re-queued (it may be what kills the server)
MAX_ATTEMPTS = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    error TEXT,
    note TEXT,
    lesions INTEGER,
    method TEXT NOT NULL,
    options TEXT NOT NULL,
    input_name TEXT NOT NULL,
    worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, seq);
"""


@dataclass(frozen=True)
class Job:
    """One row of the table; ``options`` are further keyword arguments of ``detect()`` (threshold, mars ...);
    ``input_name`` is the stored file's name (never shown in logs)."""

    id: str
    seq: int
    owner: str
    status: str
    progress: float
    error: str | None
    note: str | None
    lesions: int | None
    method: str
    options: dict[str, Any]
    input_name: str
    worker: str | None
    attempts: int
    created: float
    started: float | None
    finished: float | None

    def public(self) -> dict[str, Any]:
        """The JSON a client sees: no owner, worker or stored file name; ``error`` only when failed,
        ``lesions`` only when done, ``note`` when the job was re-queued."""
        shown: dict[str, Any] = {"id": self.id, "status": self.status, "progress": self.progress,
                                 "method": self.method, **self.options,
                                 "created": self.created, "started": self.started, "finished": self.finished}
        if self.status == FAILED:
            shown["error"] = self.error
        if self.status == DONE:
            shown["lesions"] = self.lesions
        if self.note:
            shown["note"] = self.note
        return shown


class JobStore:
    """The jobs table; safe to use from several threads and processes (WAL journal, one statement per change)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connection().executescript(_SCHEMA)

    def _db(self) -> _Transaction:
        """One transaction on this thread's connection."""
        return _Transaction(self._connection())

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (sqlite3 connections must not cross threads)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a finished job survives a power cut
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    def _one(self, sql: str, *params: Any) -> Job | None:
        with self._db() as db:
            row = db.execute(sql, params).fetchone()
        return Job(**{**dict(row), "options": json.loads(row["options"])}) if row is not None else None

    def create(self, *, owner: str, method: str, options: dict[str, Any], input_name: str,
               job_id: str | None = None) -> Job:
        """A new queued job (``job_id`` when the caller already stored its upload under that id)."""
        job_id = job_id or new_job_id()
        return self._one(
            "INSERT INTO jobs (id, seq, owner, status, method, options, input_name, created) "
            "VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ?, ?, ?, ?, ?, ?) RETURNING *",
            job_id, owner, QUEUED, method, json.dumps(options), input_name, time.time())

    def get(self, job_id: str) -> Job | None:
        return self._one("SELECT * FROM jobs WHERE id = ?", job_id)

    def claim(self, worker: str) -> Job | None:
        """The oldest queued job, now running on ``worker``; None when the queue is empty."""
        return self._one(
            "UPDATE jobs SET status = ?, worker = ?, started = ?, progress = 0, attempts = attempts + 1 "
            "WHERE id = (SELECT id FROM jobs WHERE status = ? ORDER BY seq LIMIT 1) RETURNING *",
            RUNNING, worker, time.time(), QUEUED)

    def still_running(self, job_id: str, worker: str) -> bool:
        """False once the job was cancelled, deleted or handed to another worker: stop working on it."""
        with self._db() as db:
            row = db.execute("SELECT 1 FROM jobs WHERE id = ? AND status = ? AND worker = ?",
                             (job_id, RUNNING, worker)).fetchone()
        return row is not None

    def set_progress(self, job_id: str, worker: str, fraction: float) -> None:
        with self._db() as db:
            db.execute("UPDATE jobs SET progress = ? WHERE id = ? AND status = ? AND worker = ?",
                       (min(max(fraction, 0.0), 1.0), job_id, RUNNING, worker))

    def _end(self, job_id: str, worker: str, status: str, **fields: Any) -> Job | None:
        """End a running job of ``worker``; None (nothing changed) when it is no longer that worker's."""
        assignments = ", ".join(f"{name} = ?" for name in fields)
        return self._one(
            f"UPDATE jobs SET status = ?, finished = ?, worker = NULL{', ' if fields else ''}{assignments} "
            "WHERE id = ? AND status = ? AND worker = ? RETURNING *",
            status, time.time(), *fields.values(), job_id, RUNNING, worker)

    def finish(self, job_id: str, worker: str, lesions: int) -> Job | None:
        return self._end(job_id, worker, DONE, progress=1.0, lesions=lesions)

    def fail(self, job_id: str, worker: str, error: str) -> Job | None:
        return self._end(job_id, worker, FAILED, error=error)

    def requeue(self, job_id: str, worker: str, note: str) -> Job | None:
        """Give a running job back to the queue (its worker is stopping)."""
        return self._one("UPDATE jobs SET status = ?, worker = NULL, progress = 0, note = ?, "
                         "attempts = MAX(attempts - 1, 0) WHERE id = ? AND status = ? AND worker = ? RETURNING *",
                         QUEUED, note, job_id, RUNNING, worker)

    def cancel(self, job_id: str) -> Job | None:
        """Mark a queued or running job cancelled (a running one's worker stops at its next check)."""
        return self._one("UPDATE jobs SET status = ?, finished = ?, worker = NULL WHERE id = ? AND status IN (?, ?) "
                         "RETURNING *", CANCELLED, time.time(), job_id, QUEUED, RUNNING)

    def delete(self, job_id: str) -> bool:
        with self._db() as db:
            return db.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount == 1

    def recover(self, worker: str | None = None) -> list[Job]:
        """Jobs left running (by ``worker``, or by anyone at start-up) go back to the queue, or fail after
        :data:`MAX_ATTEMPTS` interruptions; returns them as they are now."""
        which, params = ("AND worker = ?", (worker,)) if worker else ("", ())
        with self._db() as db:
            ids = [row["id"] for row in db.execute(f"SELECT id FROM jobs WHERE status = ? {which}", (RUNNING, *params))]
            db.execute(
                f"UPDATE jobs SET worker = NULL, progress = 0, "
                f"status = CASE WHEN attempts >= ? THEN ? ELSE ? END, "
                f"finished = CASE WHEN attempts >= ? THEN ? ELSE NULL END, "
                f"error = CASE WHEN attempts >= ? THEN ? ELSE NULL END, "
                f"note = ? WHERE status = ? {which}",
                (MAX_ATTEMPTS, FAILED, QUEUED, MAX_ATTEMPTS, time.time(), MAX_ATTEMPTS, _GAVE_UP, _REQUEUED,
                 RUNNING, *params))
        return [job for job in map(self.get, ids) if job is not None]

    def finished_before(self, cutoff: float) -> list[Job]:
        """Finished jobs that ended before ``cutoff`` (seconds since the epoch): retention's victims."""
        with self._db() as db:
            rows = db.execute(f"SELECT id FROM jobs WHERE status IN ({', '.join('?' * len(FINISHED))}) "
                              "AND finished < ?", (*FINISHED, cutoff)).fetchall()
        return [job for job in map(self.get, (row["id"] for row in rows)) if job is not None]


_REQUEUED = "re-queued: the server stopped while this job ran"
_GAVE_UP = (f"the server stopped {MAX_ATTEMPTS} times while this job ran; it was not tried again. "
            "Check the server's memory and log, then submit the volume again.")


class _Transaction:
    """``with`` block over a connection in autocommit mode: one ``BEGIN IMMEDIATE`` ... ``COMMIT``."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, value, traceback) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def new_job_id() -> str:
    """A random, unguessable job id (32 hex digits): ids are not secrets, but guessing one gains nothing.

    >>> len(new_job_id()), new_job_id() != new_job_id()
    (32, True)
    """
    return uuid.uuid4().hex
