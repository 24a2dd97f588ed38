"""``cmb-serve`` end to end: a real server process on a free local port, real engine, real HTTP.

One server serves the whole module (two workers, 6 MiB upload limit); the last test kills and restarts it.
"""

from __future__ import annotations

import csv
import io
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from service_harness import TOKENS, ServeProcess, small_volume, submit, wait_for

from CMBDetectionLib.cli.detect import demo_volume
from CMBDetectionLib.cli.detect import main as cmb_detect
from CMBDetectionLib.outputs.files import SUFFIXES

MAX_UPLOAD_MB = 6


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServeProcess(tmp_path_factory.mktemp("serve"), "--workers", "2", "--max-upload-mb", str(MAX_UPLOAD_MB))
    yield process.start()
    process.stop()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return small_volume(tmp_path_factory.mktemp("volumes") / "crop_swi.nii.gz")


def lesion_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_health_needs_no_token_and_names_models_and_device(server):
    answer = server.client(token=None).get("/v1/health")
    assert answer.status_code == 200
    health = answer.json()
    assert health["status"] == "ok" and health["device"] == "cpu" and health["workers"] == 2
    unet = next(model for model in health["models"] if model["method"] == "unet")
    assert unet["name"] and unet["version"]


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789abcdef"])
def test_jobs_endpoints_refuse_a_missing_or_wrong_token(server, small, token):
    client = server.client(token=token)
    assert client.get("/v1/jobs/anything").status_code == 401
    before = set((server.data_dir / "jobs").iterdir())
    with open(small, "rb") as volume:
        refused = client.post("/v1/jobs", files={"volume": (small.name, volume)})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert "token" in refused.json()["detail"]
    assert set((server.data_dir / "jobs").iterdir()) == before  # nothing stored for an unknown caller


def test_the_demo_end_to_end_with_its_files_downloaded(server, tmp_path):
    client = server.client()
    job_id = submit(client, demo_volume())
    job, progress = wait_for(client, job_id)
    assert job["status"] == "done", job
    assert job["progress"] == 1.0 and progress == sorted(progress) and all(0 <= p <= 1 for p in progress)
    listed = {entry["name"] for entry in client.get(f"/v1/jobs/{job_id}/files").json()["files"]}
    # the names cmb-detect writes for this input (no probability map, not DICOM), the report as cmb-cohort writes
    # it; the MARS table when rating ran
    always = {f"demo_swi{SUFFIXES[kind]}" for kind in ("mask", "lesions_csv", "segmentation", "markups")}
    always.add("report.html")
    assert always <= listed <= always | {f"demo_swi{SUFFIXES['mars_csv']}"}
    for name in listed:
        answer = client.get(f"/v1/jobs/{job_id}/files/{name}")
        assert answer.status_code == 200
        (tmp_path / name).write_bytes(answer.content)
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text(encoding="utf-8")
    rows = lesion_rows((tmp_path / "demo_swi_lesions.csv").read_text())
    assert len(rows) == job["lesions"] > 0
    labels = np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "demo_swi_cmb.nii.gz"))))
    assert len(labels) - 1 == job["lesions"]
    assert client.get(f"/v1/jobs/{job_id}/files/../../jobs.sqlite").status_code == 404


def test_a_text_file_sent_as_a_volume_fails_with_the_cli_one_line_message(server, tmp_path, capsys):
    notes = tmp_path / "notes.nii.gz"
    notes.write_text("Patient notes, not an image.\n")
    client = server.client()
    job, _ = wait_for(client, submit(client, notes))
    assert job["status"] == "failed"
    assert "\n" not in job["error"] and str(server.data_dir) not in job["error"]
    cmb_detect([str(notes), "-o", str(tmp_path / "out"), "-q"])
    cli_line = capsys.readouterr().err.splitlines()[0]
    assert cli_line.removeprefix("cmb-detect: error: ").replace(str(notes), "notes.nii.gz") == job["error"]

    text = tmp_path / "notes.txt"
    text.write_text("not a volume")
    with open(text, "rb") as volume:
        refused = client.post("/v1/jobs", files={"volume": (text.name, volume)})
    assert refused.status_code == 415
    assert refused.json()["detail"].startswith("notes.txt: not a supported volume")


def test_an_upload_over_the_limit_gets_413_and_leaves_nothing(server, tmp_path):
    big = tmp_path / "big.nii.gz"
    big.write_bytes(np.random.default_rng(0).bytes((MAX_UPLOAD_MB + 1) * 2**20))
    before = set((server.data_dir / "jobs").iterdir())
    with open(big, "rb") as volume:
        answer = server.client().post("/v1/jobs", files={"volume": (big.name, volume)})
    assert answer.status_code == 413
    assert "--max-upload-mb" in answer.json()["detail"]
    assert set((server.data_dir / "jobs").iterdir()) == before
    assert server.client(token=None).get("/v1/health").json()["status"] == "ok"


def test_bad_fields_get_422(server, small):
    with open(small, "rb") as volume:
        answer = server.client().post("/v1/jobs", files={"volume": (small.name, volume)}, data={"threshold": "2"})
    assert answer.status_code == 422
    assert "between 0 and 1" in answer.json()["detail"]


def test_cancel_a_running_job_then_delete_it(server):
    client = server.client()
    job_id = submit(client, demo_volume())
    wait_for(client, job_id, until=("running",))
    answer = client.delete(f"/v1/jobs/{job_id}")
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{job_id}/files").status_code == 409
    assert client.delete(f"/v1/jobs/{job_id}").json() == {"id": job_id, "deleted": True}
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert not (server.data_dir / "jobs" / job_id).exists()


def test_two_clients_at_once_each_get_their_own_job(server, small):
    answers: dict[str, dict] = {}

    def one_client(token: str) -> None:
        client = server.client(token)
        answers[token] = wait_for(client, submit(client, small, mars="false"))[0]

    threads = [threading.Thread(target=one_client, args=(token,)) for token in TOKENS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = (answers[token] for token in TOKENS)
    assert first["status"] == second["status"] == "done"
    assert first["id"] != second["id"] and first["lesions"] == second["lesions"]
    # a token sees only its own jobs
    assert server.client(TOKENS[1]).get(f"/v1/jobs/{first['id']}").status_code == 404


def dicom_zip(volume: Path, folder: Path) -> Path:
    """``volume`` as a DICOM series (one file per slice, geometry in the tags), zipped in a sub-folder."""
    image = sitk.ReadImage(str(volume))
    direction = image.GetDirection()
    orientation = "\\".join(f"{value:g}" for value in (*direction[0::3], *direction[1::3]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()  # our series UID, not a new one per file
    with zipfile.ZipFile(folder / "series.zip", "w") as archive:
        for k in range(image.GetDepth()):
            plane = image[:, :, k]
            for tag, value in {"0008|0060": "MR", "0020|000d": "1.2.3.4", "0020|000e": "1.2.3.4.5", "0020|0052": "1.2.3.6",
                               "0008|0018": f"1.2.3.4.5.{k + 1}", "0020|0013": str(k + 1), "0020|0037": orientation,
                               "0020|0032": "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k)))),
                               "0018|0050": str(image.GetSpacing()[2])}.items():
                plane.SetMetaData(tag, value)
            path = folder / f"IM{k}.dcm"
            writer.SetFileName(str(path))
            writer.Execute(plane)
            archive.write(path, f"SWI/IM{k}.dcm")
    return folder / "series.zip"


def test_a_zip_of_one_dicom_series_gives_what_the_same_volume_gives(server, small, tmp_path):
    client = server.client()
    from_nifti, from_dicom = (submit(client, path, mars="false") for path in (small, dicom_zip(small, tmp_path)))
    nifti, dicom = (wait_for(client, job_id)[0] for job_id in (from_nifti, from_dicom))
    assert nifti["status"] == dicom["status"] == "done", dicom
    assert dicom["lesions"] == nifti["lesions"]
    names = {entry["name"] for entry in client.get(f"/v1/jobs/{from_dicom}/files").json()["files"]}
    assert {"series_lesions.csv", "series_cmb.seg.dcm", "series_cmb.sr.dcm"} <= names  # as cmb-detect writes


def test_a_restart_keeps_finished_jobs_and_runs_interrupted_ones(server, small):
    client = server.client()
    finished, _ = wait_for(client, submit(client, small, mars="false"))
    interrupted = submit(client, demo_volume(), mars="false")
    wait_for(client, interrupted, until=("running",))
    server.kill()
    server.start()
    client = server.client()
    again = client.get(f"/v1/jobs/{finished['id']}").json()
    assert again["status"] == "done" and again["lesions"] == finished["lesions"]
    files = client.get(f"/v1/jobs/{finished['id']}/files").json()["files"]
    assert client.get(f"/v1/jobs/{finished['id']}/files/{files[0]['name']}").status_code == 200
    resumed, _ = wait_for(client, interrupted)
    assert resumed["status"] == "done" and resumed["note"].startswith("re-queued")
