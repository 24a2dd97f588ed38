"""The job store: one claim per job across concurrent workers, restart recovery, retention."""

from __future__ import annotations

import threading

from CMBDetectionLib.service.audit import AuditLog
from CMBDetectionLib.service.jobs import MAX_ATTEMPTS, JobStore
from CMBDetectionLib.service.layout import DataDir
from CMBDetectionLib.service.retention import DAY_S, purge_expired


def new_job(store: JobStore, owner: str = "token 1"):
    return store.create(owner=owner, method="unet", options={"mars": True}, input_name="a.nii.gz")


def test_concurrent_workers_never_claim_the_same_job(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    created = {new_job(store).id for _ in range(40)}
    claimed: list[str] = []

    def worker(name: str) -> None:
        while (job := store.claim(name)) is not None:
            claimed.append(job.id)

    threads = [threading.Thread(target=worker, args=(f"w{index}",)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(created)


def test_recovery_requeues_an_interrupted_job_then_gives_up(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    job = new_job(store)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert store.claim("w").id == job.id
        (recovered,) = store.recover()
        if attempt < MAX_ATTEMPTS:
            assert recovered.status == "queued" and recovered.note.startswith("re-queued")
    assert recovered.status == "failed" and "not tried again" in recovered.error
    assert store.finish(job.id, "w", lesions=1) is None  # the old worker's late answer changes nothing


def test_a_cancelled_job_is_no_longer_its_workers(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    job = new_job(store)
    store.claim("w")
    assert store.still_running(job.id, "w")
    assert store.cancel(job.id).status == "cancelled"
    assert not store.still_running(job.id, "w")
    assert store.finish(job.id, "w", lesions=2) is None
    assert store.get(job.id).status == "cancelled"


def test_retention_deletes_old_finished_jobs_with_their_files_only(tmp_path):
    data = DataDir(tmp_path / "data").create()
    store = JobStore(data.database)
    old, running = new_job(store), new_job(store)
    store.claim("w")
    store.finish(old.id, "w", lesions=0)
    store.claim("w")
    for job in (old, running):
        data.results(job.id).mkdir(parents=True)
    audit = AuditLog(data.audit_log)
    assert purge_expired(store, data, keep_days=1, audit=audit, now=store.get(old.id).finished + 0.5 * DAY_S) == 0
    assert purge_expired(store, data, keep_days=1, audit=audit, now=store.get(old.id).finished + 2 * DAY_S) == 1
    assert store.get(old.id) is None and not data.job(old.id).exists()
    assert store.get(running.id).status == "running" and data.job(running.id).exists()
    assert '"event": "expired"' in data.audit_log.read_text()
