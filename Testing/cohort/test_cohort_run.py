"""``cmb-cohort`` end to end on a real Dask ``LocalCluster``: a BIDS-like folder of two small whole-head phantoms
and one broken file. The run is killed after its first finished subject, resumed, then re-run with nothing to do.

The phantoms (128 x 128 x 30 at 1.5 x 1.5 x 4 mm) cover the whole brain, so MARS can rate their lesions.
"""

import base64
import re
import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path

import psutil
import pytest
from matplotlib.image import imread
from repo_paths import REPO_ROOT

from CMBDetectionLib.cohort.table import CERTAINTY_COLUMNS, read_table
from CMBDetectionLib.model_store import load_card
from CMBDetectionLib.outputs.lesion_csv import read_lesions_csv

pytestmark = pytest.mark.slow
GOOD = ("sub-01", "sub-02_ses-1")
SHIPPED_VERSION = load_card(REPO_ROOT / "models" / "unet")["version"]
BROKEN = "sub-03"
RUN_TIMEOUT_S = 600


def _cohort(bids: Path, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "CMBDetectionLib.cli.cohort", str(bids), "-o", str(out), "--workers", "1", "-q"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _records(out: Path) -> dict[str, int]:
    """Subject key -> mtime (ns) of its completion record."""
    return {path.parent.name: path.stat().st_mtime_ns for path in out.glob("*/completion.json")}


def _make_bids(root: Path) -> Path:
    phantoms = root / "phantoms"
    subprocess.run([sys.executable, "-m", "CMBDetectionLib.cli.phantom", "-q", "-o", str(phantoms), "--n", "2",
                    "--seed", "720", "--size", "128", "--spacing", "1.5", "--slices", "30", "--slice-thickness", "4"],
                   check=True)
    bids = root / "bids"
    for source, target in (("phantom_00720_swi.nii.gz", "sub-01/anat/sub-01_swi.nii.gz"),
                           ("phantom_00721_swi.nii.gz", "sub-02/ses-1/anat/sub-02_ses-1_swi.nii.gz")):
        (bids / target).parent.mkdir(parents=True)
        (phantoms / source).rename(bids / target)
    broken = bids / "sub-03/anat/sub-03_T2starw.nii.gz"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"\x1f\x8b not really a gzipped NIfTI" * 50)
    return bids


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants at once (Dask's nanny starts workers in sessions of their own)."""
    parent = psutil.Process(pid)
    processes = [parent, *parent.children(recursive=True)]
    for process in processes:
        process.kill()
    psutil.wait_procs(processes, timeout=30)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Kill run 1 (the client, scheduler and workers) once a subject is finished, then
    run 2 to the end, then run 3 with nothing left to detect. Returns what each stage observed."""
    root = tmp_path_factory.mktemp("cohort")
    bids, out = _make_bids(root), root / "out"
    first = _cohort(bids, out)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not _records(out) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    _kill_tree(first.pid)
    first.communicate()
    before_resume = _records(out)
    second = _cohort(bids, out)
    _, second_err = second.communicate(timeout=RUN_TIMEOUT_S)
    after_resume, rows_after_resume = _records(out), read_table(out)
    outputs = {path: path.stat().st_mtime_ns for path in out.glob("sub-*/*") if path.is_file()}
    third = _cohort(bids, out)
    _, third_err = third.communicate(timeout=RUN_TIMEOUT_S)
    return {"out": out, "before_resume": before_resume, "after_resume": after_resume, "second_rc": second.returncode,
            "second_err": second_err, "rows_after_resume": rows_after_resume, "outputs": outputs,
            "third_rc": third.returncode, "third_err": third_err}


def test_killed_run_resumes_without_redoing_finished_subjects(cohort):
    finished_first = cohort["before_resume"]
    assert len(finished_first) == 1, "run 1 was killed with exactly one subject finished"
    (key, mtime), = finished_first.items()
    assert cohort["after_resume"][key] == mtime, "the subject finished before the kill was not redone"
    statuses = {row["key"]: row["status"] for row in cohort["rows_after_resume"]}
    assert statuses[key] == "skipped"
    (other,) = set(GOOD) - {key}
    assert statuses[other] == "done" and other in cohort["after_resume"]


def test_broken_subject_is_isolated_and_fails_the_run(cohort):
    assert cohort["second_rc"] == 1
    rows = {row["key"]: row for row in cohort["rows_after_resume"]}
    assert rows[BROKEN]["status"] == "failed"
    assert "sub-03_T2starw.nii.gz" in rows[BROKEN]["error"] and "\n" not in rows[BROKEN]["error"]
    assert BROKEN not in cohort["after_resume"], "a failed subject has no completion record"
    assert all(rows[key]["status"] != "failed" and rows[key]["error"] == "" for key in GOOD)
    assert "1 subject(s) failed (sub-03)" in cohort["second_err"]


def test_table_agrees_with_each_lesion_list(cohort):
    rows = {row["key"]: row for row in cohort["rows_after_resume"]}
    for key in GOOD:
        (lesions_csv,) = (cohort["out"] / key).glob("*_lesions.csv")
        lesions = [record.lesion for record in read_lesions_csv(lesions_csv) if record.accepted]
        assert rows[key]["n_lesions"] == len(lesions)
        rated = any((cohort["out"] / key).glob("*_mars.csv"))  # a bool: a generator would be spent on the first column
        for column in CERTAINTY_COLUMNS:
            category, certainty = column.rsplit("_", 1)
            expected = sum(les.category == category and les.certainty == certainty for les in lesions)
            assert rows[key][column] == (expected if rated else ""), (key, column)
        assert rows[key]["model_version"] == SHIPPED_VERSION
    assert sum(rows[key]["n_lesions"] for key in GOOD) > 0, "the phantoms' CMBs were found (a vacuous table otherwise)"


def test_noop_rerun_detects_nothing(cohort):
    assert cohort["third_rc"] == 1  # the broken subject is tried again, and fails again
    assert "2 of 3 subject(s) finished earlier" in cohort["third_err"]
    rows = {row["key"]: row["status"] for row in read_table(cohort["out"])}
    assert rows == {"sub-01": "skipped", "sub-02_ses-1": "skipped", "sub-03": "failed"}
    unchanged = {path: path.stat().st_mtime_ns for path in cohort["outputs"]}
    assert unchanged == cohort["outputs"], "no subject file was written again"


def _embedded_pngs(html: str) -> list:
    return [imread(BytesIO(base64.b64decode(data)), format="png")
            for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_reports_exist_and_embed_their_images(cohort):
    out = cohort["out"]
    rows = {row["key"]: row for row in read_table(out)}
    for key in GOOD:
        html = (out / key / "report.html").read_text(encoding="utf-8")
        images = _embedded_pngs(html)
        # the montage, one gallery picture per lesion, and the registration overlay when MARS registered it
        assert len(images) == 1 + rows[key]["n_lesions"] + (rows[key]["brain_coverage"] != "")
        assert all(picture.ndim == 3 and min(picture.shape[:2]) > 50 for picture in images)
        assert "http://" not in html and "https://" not in html, "the report opens offline"
    cohort_html = (out / "cohort_report.html").read_text(encoding="utf-8")
    assert len(_embedded_pngs(cohort_html)) >= 1  # the count distribution (and lesions by region when rated)
    assert 'href="sub-01/report.html"' in cohort_html and "sub-03_T2starw.nii.gz" in cohort_html
