"""Running a cohort on Dask distributed: skip what is finished, submit the rest, collect rows, write the table.

Subjects whose completion record matches (``records``) are skipped without starting any worker, so a finished
cohort re-runs in seconds. The others go to a ``LocalCluster`` of ``workers`` processes (one Dask thread each,
``cores // workers`` threads per subject: see ``tasks``), or to the cluster at ``scheduler`` (``tcp://host:8786``,
for instance one started by ``dask-jobqueue`` on SLURM or PBS). Each subject is one task; a task never raises
(a failure is its row), and a worker that dies (killed, out of memory) fails only the subject it held. A kill of
the whole run loses the subjects in flight; their records were removed before work began, so the next run redoes
them.

>>> rows = run_cohort(list_subjects("bids/"), "out/", CohortSettings(), workers=2)      # doctest: +SKIP
>>> [row["status"] for row in rows]                                                     # doctest: +SKIP
['done', 'skipped', 'failed']
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from CMBDetectionLib.cohort.inputs import Subject
from CMBDetectionLib.cohort.records import read_record, stale_reason
from CMBDetectionLib.cohort.table import write_table
from CMBDetectionLib.cohort.tasks import (
    CohortSettings,
    DetectorPlugin,
    process_subject,
    subject_row,
)
from CMBDetectionLib.errors import CohortError, one_line
from CMBDetectionLib.probability.backends.onnxruntime_backend import physical_cores, threads_per_worker

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = "30s"


def default_workers(cores: int | None = None) -> int:
    """Workers of the local cluster when not given: half the physical cores, at least one (see ``tasks``).

    >>> default_workers(8), default_workers(1)
    (4, 1)
    """
    return max(1, (cores or physical_cores()) // 2)


def plan(subjects: Sequence[Subject], out_dir: str | os.PathLike, settings: CohortSettings,
         model: dict[str, str]) -> tuple[dict[str, dict[str, Any]], list[Subject]]:
    """(rows of the subjects finished earlier, with status ``skipped``; the subjects to run)."""
    skipped, todo = {}, []
    for subject in subjects:
        folder = Path(out_dir) / subject.key
        reason = stale_reason(folder, subject.path, settings.recorded(), model)
        if reason is None:
            skipped[subject.key] = {**read_record(folder)["summary"], "status": "skipped"}
        else:
            log.debug("%s: %s", subject.key, reason)
            todo.append(subject)
    return skipped, todo


@contextmanager
def dask_client(workers: int, scheduler: str | None) -> Iterator[Any]:
    """A client of the cluster at ``scheduler``, or of a new local cluster of ``workers`` one-thread processes."""
    from distributed import Client, LocalCluster

    # Dask's own start-up and shutdown lines at INFO would bury the progress bar; --verbose shows them.
    logging.getLogger("distributed").setLevel(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.WARNING)
    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise CohortError(f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({exc}); start one "
                              "(dask scheduler, or dask-jobqueue) or leave the option out to run locally.") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def run_cohort(subjects: Sequence[Subject], out_dir: str | os.PathLike, settings: CohortSettings,
               workers: int | None = None, scheduler: str | None = None, quiet: bool = False) -> list[dict[str, Any]]:
    """Detect every subject that is not finished, write ``cohort.csv`` and ``cohort_report.html`` into ``out_dir``
    and return the rows in subject order."""
    from CMBDetectionLib.pipeline import model_provenance
    from CMBDetectionLib.reports.cohort_report import write_cohort_report

    model = model_provenance(settings.method, settings.model_dir)
    rows, todo = plan(subjects, out_dir, settings, model)
    if rows:
        print(f"cmb-cohort: {len(rows)} of {len(subjects)} subject(s) finished earlier with this input, settings "
              "and model: skipped.", file=sys.stderr)
    if todo:
        workers = workers or default_workers()
        rows.update(_run_on_dask(todo, str(out_dir), settings, model, workers, scheduler, quiet))
    ordered = [rows[subject.key] for subject in subjects]
    write_table(ordered, out_dir)
    write_cohort_report(ordered, out_dir, settings.recorded(), model)
    return ordered


def _run_on_dask(todo: Sequence[Subject], out_dir: str, settings: CohortSettings, model: dict[str, str],
                 workers: int, scheduler: str | None, quiet: bool) -> dict[str, dict[str, Any]]:
    """Rows of ``todo``, by key, as the tasks finish; a progress bar with the time left on stderr."""
    from distributed import as_completed
    from tqdm import tqdm

    threads = None if scheduler else threads_per_worker(workers)
    rows = {}
    with dask_client(workers, scheduler) as client:
        if not quiet and client.dashboard_link:
            print(f"cmb-cohort: Dask dashboard at {client.dashboard_link}", file=sys.stderr)
        client.register_plugin(DetectorPlugin(settings, threads), name=DetectorPlugin.name)
        futures = client.map(process_subject, todo, out_root=out_dir, settings=settings, model=model, pure=False)
        subjects = dict(zip((future.key for future in futures), todo))
        with tqdm(total=len(todo), desc="cmb-cohort", unit="subject", disable=quiet, file=sys.stderr) as bar:
            for future in as_completed(futures):
                subject = subjects[future.key]
                try:
                    row = future.result()
                # The worker holding this subject died (killed, out of memory): only this subject fails.
                except Exception as exc:
                    row = subject_row(subject, "failed", model_version=model["model_version"], error=one_line(exc))
                rows[subject.key] = row
                bar.update(1)
                if row["status"] == "failed":
                    bar.write(f"cmb-cohort: {subject.key} failed: {row['error']}", file=sys.stderr)
    return rows
