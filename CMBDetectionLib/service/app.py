"""The HTTP API of ``cmb-serve`` (FastAPI; OpenAPI docs at ``/docs``).

- ``GET /v1/health``: no token; status, models (name, version), device, workers.
- ``POST /v1/jobs``: multipart ``volume`` (+ the fields of :mod:`options`) -> 202 ``{"id", "status"}``.
- ``GET /v1/jobs/{id}``: status, progress 0..1, ``error`` when failed, ``lesions`` when done.
- ``GET /v1/jobs/{id}/files`` and ``/files/{name}``: the result files, named as ``cmb-detect`` names them.
- ``DELETE /v1/jobs/{id}``: cancels a queued or running job; deletes a finished one with its files.

Every ``/v1/jobs`` endpoint needs ``Authorization: Bearer <token>`` (401 otherwise), and a caller sees only the
jobs its own token submitted (another's answer 404, as if they did not exist). Errors are JSON
``{"detail": "<one line saying what to do>"}``.

>>> app = create_app(ServiceSettings(data_dir="data", token_file="tokens"))   # doctest: +SKIP
>>> uvicorn.run(app, host="127.0.0.1", port=8000)                            # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from CMBDetectionLib.service.audit import AuditLog
from CMBDetectionLib.service.auth import TokenFile
from CMBDetectionLib.service.jobs import FINISHED, Job, JobStore, new_job_id
from CMBDetectionLib.service.layout import DataDir
from CMBDetectionLib.service.options import METHODS, OptionError, job_options
from CMBDetectionLib.service.pool import WorkerPool
from CMBDetectionLib.service.retention import PURGE_INTERVAL_S, purge_expired
from CMBDetectionLib.service.uploads import ZIP_SUFFIX, UploadError, receive_upload, unpack_dicom_zip

log = logging.getLogger(__name__)

UNAUTHORIZED = ("missing or wrong token; send the header 'Authorization: Bearer <token>' with a token from the "
                "server's token file.")
#: the form of ``POST /v1/jobs`` for the OpenAPI docs (the body is parsed by :mod:`uploads`, streaming)
UPLOAD_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["volume"], "properties": {
        "volume": {"type": "string", "format": "binary",
                   "description": "NIfTI (.nii, .nii.gz), NRRD (.nrrd), MHA (.mha) or a zip of one DICOM series"},
        "method": {"type": "string", "enum": list(METHODS), "default": "unet"},
        "threshold": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1,
                      "description": "default: the model's operating threshold"},
        "mars": {"type": "boolean", "default": True, "description": "rate each lesion on the MARS scale"},
        "lesion_filter": {"type": "boolean", "default": True, "description": "the method's 3D false-positive filter"},
        "redraw_outlines": {"type": "boolean", "default": True,
                            "description": "redraw lesions at half signal loss, drop vein-like ones"}}}}}}}


@dataclass(frozen=True)
class ServiceSettings:
    data_dir: str | Path
    token_file: str | Path
    workers: int = 1
    max_upload_mb: float = 1024
    keep_days: float = 30
    device: str = "cpu"  # resolved by the command line: cpu or gpu


def model_list() -> list[dict[str, str]]:
    """Name and version of each method's shipped model, from its card (empty strings when unreadable)."""
    from CMBDetectionLib.pipeline import model_provenance

    return [{"method": method, "name": info["model_name"], "version": info["model_version"]}
            for method, info in ((method, model_provenance(method, None)) for method in METHODS)]


def result_files(folder: Path) -> list[Path]:
    """The files a finished run left (hidden lock or staging entries excluded), by name."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.is_file() and not path.name.startswith("."))


def create_app(settings: ServiceSettings) -> FastAPI:
    """The service over ``settings.data_dir``: recovers interrupted jobs, purges expired ones and starts the
    workers when it starts; stops the workers (their jobs back in the queue) when it stops."""
    data = DataDir(settings.data_dir).create()
    tokens = TokenFile(settings.token_file)
    store = JobStore(data.database)
    audit = AuditLog(data.audit_log)
    pool = WorkerPool(data, settings.workers, settings.device)
    max_bytes = int(settings.max_upload_mb * 2**20)
    models = model_list()

    async def purge_periodically() -> None:
        while True:
            await run_in_threadpool(purge_expired, store, data, settings.keep_days, audit)
            await asyncio.sleep(PURGE_INTERVAL_S)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for job in store.recover():
            audit.record("recovered", "server", job=job.id, status=job.status)
        purging = asyncio.create_task(purge_periodically())
        pool.start()
        yield
        purging.cancel()
        await run_in_threadpool(pool.stop)

    app = FastAPI(title="CMBDetection service", version="1", lifespan=lifespan,
                  description="Cerebral microbleed detection on SWI volumes, as a job queue. Research use only.")

    def caller(request: Request) -> str:
        who = tokens.caller(request.headers.get("authorization"))
        if who is None:
            audit.record("denied", "anonymous", client=request.client.host if request.client else "")
            raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
        return who

    def own_job(job_id: str, who: str) -> Job:
        job = store.get(job_id)
        if job is None or job.owner != who:
            raise HTTPException(404, f"no job {job_id} for this token; it was deleted, expired or never existed.")
        return job

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        """Whether the service runs, with its models and device; needs no token."""
        return {"status": "ok" if pool.alive() else "starting", "models": models, "device": settings.device,
                "workers": pool.count}

    @app.post("/v1/jobs", status_code=202, openapi_extra=UPLOAD_FORM)
    async def submit(request: Request, who: str = Depends(caller)) -> dict[str, str]:
        """Queue a detection job on the uploaded volume."""
        job_id = new_job_id()
        try:
            upload = await receive_upload(request.headers.get("content-type"), request.headers.get("content-length"),
                                          request.stream(), data.inputs(job_id), max_bytes)
            method, options = job_options(upload.fields)
            stored = upload.path
            if stored.name.endswith(ZIP_SUFFIX):
                stored = await run_in_threadpool(unpack_dicom_zip, stored,
                                                 stored.with_name(stored.name[: -len(ZIP_SUFFIX)]), max_bytes)
        except OptionError as exc:
            shutil.rmtree(data.job(job_id), ignore_errors=True)
            raise HTTPException(422, str(exc)) from None
        except UploadError as exc:
            shutil.rmtree(data.job(job_id), ignore_errors=True)
            audit.record("refused", who, status=str(exc.status))  # the message may name the file: not logged
            raise HTTPException(exc.status, str(exc)) from None
        except BaseException:
            shutil.rmtree(data.job(job_id), ignore_errors=True)
            raise
        job = await run_in_threadpool(lambda: store.create(job_id=job_id, owner=who, method=method,
                                                           options=options, input_name=stored.name))
        audit.record("submit", who, job=job.id, method=job.method, options=job.options, bytes=upload.size)
        return {"id": job.id, "status": job.status}

    @app.get("/v1/jobs/{job_id}")
    def status(job_id: str, who: str = Depends(caller)) -> dict[str, Any]:
        """A job's status, progress, and its error (failed) or lesion count (done)."""
        return own_job(job_id, who).public()

    @app.get("/v1/jobs/{job_id}/files")
    def files(job_id: str, who: str = Depends(caller)) -> dict[str, Any]:
        """The result files of a done job: name and size in bytes."""
        job = own_job(job_id, who)
        if job.status != "done":
            raise HTTPException(409, f"job {job_id} is {job.status}; its files are listed once it is done.")
        return {"id": job_id, "files": [{"name": path.name, "bytes": path.stat().st_size}
                                        for path in result_files(data.results(job_id))]}

    @app.get("/v1/jobs/{job_id}/files/{name}")
    def download(job_id: str, name: str, who: str = Depends(caller)) -> FileResponse:
        """One result file (its name as listed by ``/files``)."""
        job = own_job(job_id, who)
        found = {path.name: path for path in result_files(data.results(job_id))} if job.status == "done" else {}
        if name not in found:
            raise HTTPException(404, f"job {job_id} has no file {name!r}; GET /v1/jobs/{job_id}/files lists them.")
        audit.record("download", who, job=job_id, kind=name.rsplit("_", 1)[-1])
        return FileResponse(found[name], filename=name, media_type="application/octet-stream")

    @app.delete("/v1/jobs/{job_id}")
    def delete(job_id: str, who: str = Depends(caller)) -> dict[str, Any]:
        """Cancel a queued or running job; delete a finished one with its files."""
        job = own_job(job_id, who)
        if job.status not in FINISHED:
            cancelled = store.cancel(job_id)
            if cancelled is not None:
                audit.record("cancel", who, job=job_id)
                return {"id": job_id, "status": cancelled.status}
        shutil.rmtree(data.job(job_id), ignore_errors=True)
        store.delete(job_id)
        audit.record("delete", who, job=job_id)
        return {"id": job_id, "deleted": True}

    return app
