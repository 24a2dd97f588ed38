"""The worker processes of ``cmb-serve``: started with the server, watched, restarted if one dies, stopped last.

Processes rather than threads: a job that exhausts memory or crashes a native library takes down its worker,
not the server, and its job is put back in the queue (:meth:`JobStore.recover`). With a GPU there is one worker
(one GPU job at a time); on the CPU, ``--workers`` of them share the cores (each UNet gets its share of threads).

>>> pool = WorkerPool(DataDir("/tmp/cmb"), count=2, device="cpu")   # doctest: +SKIP
>>> pool.start(); ...; pool.stop()                                  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import uuid
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from CMBDetectionLib.probability.backends.onnxruntime_backend import threads_per_worker
from CMBDetectionLib.service.jobs import JobStore
from CMBDetectionLib.service.layout import DataDir
from CMBDetectionLib.service.worker import serve_jobs

log = logging.getLogger(__name__)

#: seconds between two looks at the workers
WATCH_INTERVAL_S = 1.0
#: seconds a stopping worker gets to put its job back in the queue before it is killed
STOP_GRACE_S = 20.0


def worker_count(requested: int, device: str) -> int:
    """How many jobs run at once: one on a GPU (models would compete for its memory), else ``requested``.

    >>> worker_count(4, "gpu"), worker_count(4, "cpu")
    (1, 4)
    """
    return 1 if device == "gpu" else max(1, requested)


class WorkerPool:
    """``count`` worker processes running :func:`worker.serve_jobs` on ``device``."""

    def __init__(self, data: DataDir, count: int, device: str) -> None:
        self.data = data
        self.count = worker_count(count, device)
        self.device = device
        self._context = multiprocessing.get_context("spawn")  # no fork of a server holding threads and sockets
        self._halt = threading.Event()
        # Per worker, the sending end of a pipe: closing it (or dying) tells the worker to stop.
        self._workers: dict[str, tuple[BaseProcess, Connection]] = {}
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        for _ in range(self.count):
            self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="cmb-serve-watcher", daemon=True)
        self._watcher.start()

    def _spawn(self) -> None:
        name = f"worker-{uuid.uuid4().hex[:8]}"
        receiver, sender = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=serve_jobs, name=name, daemon=True,
            args=(str(self.data.root), name, self.device, threads_per_worker(self.count), receiver))
        process.start()
        receiver.close()
        self._workers[name] = (process, sender)

    def _watch(self) -> None:
        """Replace a worker that died (killed for memory, crashed), giving its job back to the queue."""
        store = JobStore(self.data.database)
        while not self._halt.wait(WATCH_INTERVAL_S):
            for name, (process, sender) in list(self._workers.items()):
                if process.is_alive() or self._halt.is_set():
                    continue
                log.error("%s stopped unexpectedly (exit code %s); starting another", name, process.exitcode)
                sender.close()
                del self._workers[name]
                for job in store.recover(worker=name):
                    log.warning("job %s: %s", job.id, job.status)
                self._spawn()

    def alive(self) -> int:
        return sum(process.is_alive() for process, _ in self._workers.values())

    def stop(self) -> None:
        """Ask every worker to stop (a running job goes back to the queue), then kill those still running."""
        self._halt.set()
        if self._watcher is not None:
            self._watcher.join()
        for _, sender in self._workers.values():
            sender.close()
        for process, _ in self._workers.values():
            process.join(STOP_GRACE_S)
            if process.is_alive():
                process.kill()
                process.join()
        store = JobStore(self.data.database)
        for name in self._workers:
            store.recover(worker=name)
