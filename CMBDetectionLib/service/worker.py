"""A ``cmb-serve`` worker process: claims queued jobs from the job database and runs them with the engine.

The worker keeps the UNet loaded between jobs (a warm process: the model is read once, not per job). Each job
reads its input with the engine's reader, runs :func:`CMBDetectionLib.pipeline.detect` and writes the same files
as ``cmb-detect`` through :func:`CMBDetectionLib.outputs.files.write_outputs` (written aside, then moved in as a
set). Only then is the job marked done, so a done job always has all its files. Progress goes to the database;
``detect()``'s ``cancel`` asks the database whether the job is still this worker's (a client's ``DELETE`` makes
it not), and whether the server is stopping (the job then goes back to the queue).

"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from CMBDetectionLib.errors import CMBDetectionError, DetectionCancelled, one_line
from CMBDetectionLib.service.jobs import Job, JobStore
from CMBDetectionLib.service.layout import DataDir

log = logging.getLogger(__name__)

#: seconds an idle worker waits before asking the queue again
IDLE_POLL_S = 0.3
#: seconds between two progress writes or cancel checks (each is one SQLite statement)
CHECK_INTERVAL_S = 0.5
#: failures of the input or the engine that end a job as failed with their own one-line message
JOB_ERRORS = (CMBDetectionError, ValueError, RuntimeError, OSError, MemoryError)


def unet_backend(device: str, threads: int) -> Any:
    """The UNet's backend on ``device``, ONNX Runtime with ``threads`` intra-op threads when it can run (so that
    ``--workers`` processes share the cores instead of each taking them all)."""
    from CMBDetectionLib.probability.backends.choice import make_backend

    return make_backend("auto", None, device, threads=threads)


class WarmEngine:
    """The engine with its UNet loaded once and reused for every job of this worker."""

    def __init__(self, device: str, threads: int) -> None:
        self.device = device
        self.threads = threads
        self._unet: Any = None

    def backend(self, method: str) -> Any:
        if method != "unet":
            return "auto"  # the two-stage classifier loads its own model
        if self._unet is None:
            self._unet = unet_backend(self.device, self.threads)
        return self._unet

    def detect(self, image: Any, job: Job, progress: Callable[[float], None], cancel: Callable[[], bool]) -> Any:
        from CMBDetectionLib.pipeline import detect

        return detect(image, method=job.method, device=self.device, backend=self.backend(job.method),
                      progress=progress, cancel=cancel, **job.options)


class _JobChecks:
    """``progress`` and ``cancel`` for ``detect()``, each touching the database at most every CHECK_INTERVAL_S."""

    def __init__(self, store: JobStore, job: Job, worker: str, stopping: Callable[[], bool]) -> None:
        self.store, self.job, self.worker, self.stopping = store, job, worker, stopping
        self._last_progress = self._last_check = 0.0
        self._wanted = True

    def progress(self, fraction: float) -> None:
        now = time.monotonic()
        if now - self._last_progress >= CHECK_INTERVAL_S or fraction >= 1.0:
            self._last_progress = now
            self.store.set_progress(self.job.id, self.worker, fraction)

    def cancel(self) -> bool:
        if self.stopping():
            return True
        now = time.monotonic()
        if now - self._last_check >= CHECK_INTERVAL_S:
            self._last_check = now
            self._wanted = self.store.still_running(self.job.id, self.worker)
        return not self._wanted


def run_job(store: JobStore, data: DataDir, job: Job, worker: str, engine: WarmEngine,
            stopping: Callable[[], bool]) -> None:
    """Run one claimed job to its end: done with its files, failed with a one-line error, cancelled, or
    back in the queue when the server is stopping."""
    from CMBDetectionLib.imageio.volumes import read_volume_and_headers, volume_stem
    from CMBDetectionLib.outputs.files import write_outputs
    from CMBDetectionLib.reports.subject_report import report_detection

    stored = data.inputs(job.id) / job.input_name
    results = data.results(job.id)
    checks = _JobChecks(store, job, worker, stopping)
    try:
        image, datasets = read_volume_and_headers(stored)  # the headers for the DICOM SEG and SR, as cmb-detect
        result = engine.detect(image, job, checks.progress, checks.cancel)
        write_outputs(result, results, volume_stem(job.input_name), dicom_datasets=datasets)
        report_detection(result, volume_stem(job.input_name), job.input_name, results)  # as cmb-cohort writes it
    except DetectionCancelled:
        shutil.rmtree(results, ignore_errors=True)
        if stopping():
            store.requeue(job.id, worker, "re-queued: the server was stopped while this job ran")
        return
    except JOB_ERRORS as exc:
        shutil.rmtree(results, ignore_errors=True)
        store.fail(job.id, worker, one_line(exc).replace(str(stored), job.input_name))  # the upload's own name
        log.warning("job %s failed (%s)", job.id, type(exc).__name__)  # the message may hold the file name: not logged
        return
    except Exception as exc:  # a bug, not the input: the client gets one line, the log the traceback
        shutil.rmtree(results, ignore_errors=True)
        log.exception("job %s: unexpected error", job.id)
        store.fail(job.id, worker, f"internal error ({type(exc).__name__}) in the detection service; its log has "
                                   "the details. Report it to the server's administrator.")
        return
    if store.finish(job.id, worker, len(result.lesions)) is None:  # cancelled or deleted at the last moment
        shutil.rmtree(results, ignore_errors=True)


def serve_jobs(root: str, worker: str, device: str, threads: int, stop: Connection) -> None:
    """A worker process's main loop (the target of ``multiprocessing``): load the model, then claim and run
    jobs until ``stop`` turns readable: the server closed its end to stop us, or the server died."""
    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s: [{worker}] %(message)s")
    data = DataDir(root)
    store = JobStore(data.database)
    engine = WarmEngine(device, threads)
    try:
        engine.backend("unet")
    except JOB_ERRORS as exc:  # each UNet job will fail with this message; two-stage jobs can still run
        log.error("the UNet could not be loaded: %s", exc)
    while not stop.poll():
        job = store.claim(worker)
        if job is None:
            stop.poll(IDLE_POLL_S)
            continue
        run_job(store, data, job, worker, engine, stop.poll)
