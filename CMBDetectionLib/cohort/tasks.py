"""One Dask task per subject, run on a worker that loaded the model once.

**Workers and threads.** A subject's detection is mostly the UNet (ONNX Runtime, which scales over a few intra-op
threads but not linearly), then single-threaded numpy/scipy work (lesion filter, outlines), with the MNI
registration (SimpleITK) in a second thread beside the network. Subjects are independent, so on a machine with
``C`` physical cores ``cmb-cohort`` runs ``N`` worker processes of one Dask thread each (one subject at a time per
worker) and gives each subject ``C // N`` threads for ONNX Runtime, SimpleITK and the BLAS/OpenMP pools: the cores
are neither idle nor oversubscribed (``N x C // N <= C``). The default ``N`` is ``C // 2`` (at least 1): two
threads per subject keep a core busy while the other waits on Python work (measured on 2 cores: 1 worker x 2 threads
beat 2 workers x 1 thread, 67 s against 83 s for 4 subjects), and halve the memory that one worker per
core would need (about 1.3 GB per worker for a 256x256x70 SWI, measured). On a cluster started elsewhere each subject gets
the worker's cores divided by its Dask threads.

:class:`DetectorPlugin` sets those limits and loads the detector when a worker starts (also on workers that join
later); :func:`process_subject` then finds it in the process's cache.

>>> settings = CohortSettings(method="unet", threshold=0.2)
>>> settings.recorded()["threshold"], "device" in settings.recorded()
(0.2, False)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin

from CMBDetectionLib.cohort.inputs import Subject
from CMBDetectionLib.cohort.records import fingerprint, new_record, remove_record, write_record
from CMBDetectionLib.cohort.table import lesion_counts
from CMBDetectionLib.errors import one_line
from CMBDetectionLib.imageio.volumes import volume_stem
from CMBDetectionLib.probability.backends.onnxruntime_backend import physical_cores, threads_per_worker

PLUGIN_NAME = "cmb-detector"
_DETECTORS: dict[tuple, Any] = {}  # this process's loaded backends, by (settings, threads)


@dataclass(frozen=True)
class CohortSettings:
    """How every subject is detected (``cmb-detect``'s options of the same names)."""

    method: str = "unet"
    threshold: float | None = None
    device: str = "auto"
    model_dir: str | None = None
    mars: bool = True
    use_lesion_filter: bool = True
    redraw_outlines: bool = True

    def recorded(self) -> dict[str, Any]:
        """The settings that change results, as kept in completion records (the device does not)."""
        return {name: value for name, value in dataclasses.asdict(self).items() if name != "device"}


def limit_threads(threads: int) -> None:
    """Hold this process's SimpleITK, BLAS and OpenMP pools (and TensorFlow's, if not yet loaded) to ``threads``."""
    import SimpleITK as sitk
    from threadpoolctl import threadpool_limits

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    threadpool_limits(threads)
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"


def detector(settings: CohortSettings, threads: int) -> Any:
    """The UNet backend for ``settings``, loaded once per process (the method's name for other methods)."""
    key = (settings, threads)
    if key not in _DETECTORS:
        if settings.method != "unet":
            _DETECTORS[key] = "auto"
        else:
            from CMBDetectionLib.probability.backends.choice import make_backend

            _DETECTORS[key] = make_backend("auto", settings.model_dir, settings.device, threads=threads)
    return _DETECTORS[key]


class DetectorPlugin(WorkerPlugin):
    """Sets each worker's thread limits and loads the detector when the worker starts.

    ``threads`` per subject; None: the worker's cores divided by its Dask threads.
    """

    name = PLUGIN_NAME

    def __init__(self, settings: CohortSettings, threads: int | None = None):
        self.settings = settings
        self.threads = threads

    def setup(self, worker) -> None:
        # A subject's warnings (MARS not rated...) go into its row and report; on the console they would bury
        # the progress bar of a 10,000-subject run.
        logging.getLogger("CMBDetectionLib").setLevel(logging.ERROR)
        threads = self.threads or threads_per_worker(worker.state.nthreads)
        os.environ["CMB_COHORT_THREADS"] = str(threads)
        limit_threads(threads)
        detector(self.settings, threads)


def _threads() -> int:
    """Threads per subject as the plugin set them (all physical cores outside a Dask worker)."""
    return int(os.environ.get("CMB_COHORT_THREADS", "0")) or physical_cores()


def subject_row(subject: Subject, status: str, **values: Any) -> dict[str, Any]:
    """A ``cohort.csv`` row for ``subject`` (columns of ``cohort.table.COLUMNS``; missing ones empty)."""
    from CMBDetectionLib.cohort.table import COLUMNS

    row = dict.fromkeys(COLUMNS, "")
    row.update(subject=subject.subject, session=subject.session, key=subject.key, status=status, **values)
    return row


def process_subject(subject: Subject, out_root: str, settings: CohortSettings, model: dict[str, str]) -> dict:
    """Detect one subject into ``out_root/<key>/`` (``cmb-detect``'s files, ``report.html``, then the completion
    record) and return its ``cohort.csv`` row. Never raises: a failure is returned as a ``failed`` row."""
    started = time.perf_counter()
    folder = Path(out_root) / subject.key
    try:
        folder.mkdir(parents=True, exist_ok=True)
        remove_record(folder)
        row = _detect_and_write(subject, folder, settings, model, started)
    # Whatever breaks one subject (an unreadable file, a volume that is not a brain, out of memory) is recorded
    # in its row and must not stop the cohort.
    except Exception as exc:
        return subject_row(subject, "failed", seconds=round(time.perf_counter() - started, 1),
                           model_version=model["model_version"], error=one_line(exc))
    return row


def _detect_and_write(subject: Subject, folder: Path, settings: CohortSettings, model: dict[str, str],
                      started: float) -> dict[str, Any]:
    from CMBDetectionLib.imageio.volumes import read_volume_and_headers
    from CMBDetectionLib.outputs.files import write_outputs
    from CMBDetectionLib.pipeline import detect
    from CMBDetectionLib.reports.subject_report import report_detection

    source = fingerprint(subject.path)  # before reading: the record must describe the bytes that were read
    image, datasets = read_volume_and_headers(subject.path)
    result = detect(image, method=settings.method, threshold=settings.threshold, device=settings.device,
                    backend=detector(settings, _threads()), model_dir=settings.model_dir, mars=settings.mars,
                    use_lesion_filter=settings.use_lesion_filter, redraw_outlines=settings.redraw_outlines)
    paths = write_outputs(result, folder, volume_stem(subject.path), dicom_datasets=datasets)
    report, qc = report_detection(result, subject.key, str(subject.path), folder)
    row = subject_row(subject, "done", **lesion_counts(result.lesions, result.mars_counts is not None),
                      seconds=round(time.perf_counter() - started, 1), model_version=model["model_version"],
                      snr="" if qc.snr is None else round(qc.snr, 1),
                      brain_coverage="" if qc.coverage is None else round(qc.coverage, 3),
                      warnings="; ".join(qc.warnings))
    files = sorted(path.name for path in [*paths.values(), report])
    write_record(folder, new_record(source, settings.recorded(), model, row, files))
    return row
