"""Retention: finished jobs older than ``--keep-days`` are deleted with their files (uploads are patient scans,
kept no longer than needed). Queued and running jobs are never deleted.

>>> purge_expired(store, data, keep_days=30, audit=audit)     # doctest: +SKIP
2
"""

from __future__ import annotations

import shutil
import time

from CMBDetectionLib.service.audit import AuditLog
from CMBDetectionLib.service.jobs import JobStore
from CMBDetectionLib.service.layout import DataDir

#: seconds between two purges while the server runs
PURGE_INTERVAL_S = 3600.0
DAY_S = 86400.0


def purge_expired(store: JobStore, data: DataDir, keep_days: float, audit: AuditLog,
                  now: float | None = None) -> int:
    """Delete every job that finished more than ``keep_days`` before ``now``; returns how many went."""
    cutoff = (time.time() if now is None else now) - keep_days * DAY_S
    expired = store.finished_before(cutoff)
    for job in expired:
        shutil.rmtree(data.job(job.id), ignore_errors=True)
        store.delete(job.id)
        audit.record("expired", "retention", job=job.id, status=job.status)
    return len(expired)
