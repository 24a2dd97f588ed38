"""Load test of ``cmb-serve`` on this machine: many clients submit jobs at once, the server is killed and started
again in the middle, and every job must end done exactly once.

Run: ``python scripts/load_test.py [--clients 20] [--jobs 40] [--workers 2] [--restart-after 10] [--mars]``.
It makes small phantoms (``cmb-phantom --size 128 --slices 40``), starts a real ``cmb-serve`` on a free port of
127.0.0.1 (only this machine's addresses are used), and reports jobs per hour, p50/p95 latency (submission to
done, as a client sees it), the peak memory of the server and its workers (summed resident memory, sampled from
/proc: Linux), and whether any job was lost or duplicated. Jobs run without MARS unless ``--mars``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "Testing"))
from service_harness import TOKENS, ServeProcess  # noqa: E402 (the tests' server harness, one implementation)

SAMPLE_S = 0.5


def make_phantoms(folder: Path, count: int) -> list[Path]:
    subprocess.run([sys.executable, "-m", "CMBDetectionLib.cli.phantom", "-q", "-o", str(folder), "--n", str(count),
                    "--seed", "700", "--size", "128", "--slices", "40"], check=True)
    return sorted(folder.glob("*_swi.nii.gz"))


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (Linux /proc)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total


class MemoryPeak:
    """Samples the server's process tree in a thread; ``peak`` in bytes (follows a restarted server)."""

    def __init__(self, server: ServeProcess) -> None:
        self.server, self.peak, self._done = server, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(SAMPLE_S):
            if self.server.process is not None:
                self.peak = max(self.peak, tree_rss_bytes(self.server.process.pid))

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def request(server: ServeProcess, method: str, path: str, **kwargs) -> httpx.Response:
    """One request, retried while the server is down (the restart): clients must ride it out."""
    while True:
        try:
            with server.client(TOKENS[0]) as client:
                return client.request(method, path, **kwargs)
        except httpx.TransportError:
            time.sleep(0.5)


def one_client(server: ServeProcess, volumes: list[Path], fields: dict[str, str], start: threading.Barrier,
               record: dict[str, dict]) -> None:
    """Submit ``volumes`` at once (after every client is ready), then poll each job until it ends."""
    start.wait()
    submitted = {}
    for volume in volumes:
        with open(volume, "rb") as file:
            answer = request(server, "POST", "/v1/jobs", files={"volume": (volume.name, file)}, data=fields)
        assert answer.status_code == 202, answer.text
        submitted[answer.json()["id"]] = time.monotonic()
    while submitted:
        for job_id, sent in list(submitted.items()):
            job = request(server, "GET", f"/v1/jobs/{job_id}").json()
            if job["status"] in ("done", "failed", "cancelled"):
                record[job_id] = {"status": job["status"], "latency_s": time.monotonic() - sent,
                                  "note": job.get("note", ""), "done_at": time.monotonic()}
                del submitted[job_id]
        time.sleep(1.0)


def restart_when(server: ServeProcess, record: dict, after: int, log: list[str]) -> None:
    """Kill the server (as a crash would) once ``after`` jobs are done, then start it again."""
    while len(record) < after:
        time.sleep(0.2)
    server.kill()
    log.append(f"killed the server after {len(record)} jobs had finished")
    began = time.monotonic()
    server.start()
    log.append(f"restarted in {time.monotonic() - began:.1f} s")


def audit_submissions(data_dir: Path) -> int:
    lines = (data_dir / "audit.log").read_text().splitlines()
    return sum(json.loads(line)["event"] == "submit" for line in lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--restart-after", type=int, default=10, help="finished jobs before the kill (0: no restart)")
    parser.add_argument("--mars", action="store_true", help="rate MARS too (slower; fails on these partial heads)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cmb-load-"))
    phantoms = make_phantoms(folder / "phantoms", 4)
    server = ServeProcess(folder, "--workers", str(args.workers), "--quiet").start()
    memory = MemoryPeak(server)
    record: dict[str, dict] = {}
    start = threading.Barrier(args.clients)
    shares = np.array_split(np.arange(args.jobs), args.clients)
    fields = {"mars": str(args.mars).lower()}
    clients = [threading.Thread(target=one_client, args=(server, [phantoms[i % len(phantoms)] for i in share],
                                                         fields, start, record)) for share in shares]
    began = time.monotonic()
    for client in clients:
        client.start()
    events: list[str] = []
    restarter = threading.Thread(target=restart_when, args=(server, record, args.restart_after, events), daemon=True)
    if args.restart_after:
        restarter.start()
    for client in clients:
        client.join()
    elapsed = max(entry["done_at"] for entry in record.values()) - began
    memory.stop()
    with sqlite3.connect(server.data_dir / "jobs.sqlite") as db:
        rows = db.execute("SELECT id, status FROM jobs").fetchall()
    server.stop()
    latencies = np.array([entry["latency_s"] for entry in record.values()])
    statuses = [entry["status"] for entry in record.values()]
    result_folders = [path for path in (server.data_dir / "jobs").iterdir() if (path / "results").is_dir()]
    report = {
        "clients": args.clients, "jobs": args.jobs, "workers": args.workers, "cores": os.cpu_count(),
        "volume": "cmb-phantom --size 128 --slices 40 (128 x 128 x 40, 0.9 x 0.9 x 2 mm)", "mars": args.mars,
        "elapsed_s": round(elapsed, 1), "jobs_per_hour": round(3600 * len(record) / elapsed, 1),
        "latency_p50_s": round(float(np.percentile(latencies, 50)), 1),
        "latency_p95_s": round(float(np.percentile(latencies, 95)), 1),
        "peak_memory_mib": round(memory.peak / 2**20), "restart": events,
        "re_queued_by_restart": sum(bool(entry["note"]) for entry in record.values()),
        "done": statuses.count("done"), "not_done": len(statuses) - statuses.count("done"),
        "lost": args.jobs - len(record), "rows_in_database": len(rows),
        "submissions_in_audit_log": audit_submissions(server.data_dir),
        "result_folders": len(result_folders),
    }
    report["no_job_lost_or_duplicated"] = (report["lost"] == 0 and report["done"] == args.jobs
                                           == report["rows_in_database"] == report["submissions_in_audit_log"]
                                           == report["result_folders"] == len({row[0] for row in rows}))
    print(json.dumps(report, indent=2))
    return 0 if report["no_job_lost_or_duplicated"] else 1


if __name__ == "__main__":
    sys.exit(main())
