"""Process on: server. A real ``cmb-serve`` on a free local port runs the engine; the Logic uploads the volume,
follows the job, downloads the files and fills the same result nodes as a local run."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
import SimpleITK as sitk
from service_harness import TOKENS, ServeProcess, free_port, small_volume
from slicer_fixtures import count_by_side, fake_locator
from slicer_harness import slicer, slicer_harness  # noqa: F401 (fixture)

from CMBDetectionLib.cli.detect import demo_volume
from CMBDetectionLib.pipeline import detect
from CMBDetectionLogic import DetectionLogic, DetectionSettings, RunStatus
from CMBDetectionLogic.remote_run import ServerSettings


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServeProcess(tmp_path_factory.mktemp("serve"), "--workers", "1")
    yield process.start()
    process.stop()


@pytest.fixture
def scene(slicer_harness):  # noqa: F811
    slicer_harness.clear()
    return slicer_harness.scene


def volume_from(scene, image: sitk.Image, name: str = "swi"):
    """A scalar volume node holding ``image`` (axis-aligned LPS, as the phantoms are) with its geometry."""
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    volume.SetSpacing(*image.GetSpacing())
    x, y, z = image.GetOrigin()
    volume.SetOrigin(-x, -y, z)
    volume.SetIJKToRASDirections(-1, 0, 0, 0, -1, 0, 0, 0, 1)
    slicer.util.updateVolumeFromArray(volume, sitk.GetArrayFromImage(image))
    return volume


def finish(logic, run, seconds: float = 300.0):
    """Poll like the widget's timer, then load; returns the outcome and the progress values seen."""
    deadline = time.monotonic() + seconds
    fractions = []
    while (update := run.poll()).running:
        fractions.append(update.fraction)
        assert time.monotonic() < deadline, "remote run did not finish"
        time.sleep(0.1)
    return logic.finish_background(run), fractions


def new_logic() -> DetectionLogic:
    return DetectionLogic(locate_factory=fake_locator, count_table=count_by_side)


def test_a_remote_run_fills_the_same_nodes_as_a_local_one(server, scene, tmp_path):
    image = sitk.ReadImage(str(small_volume(tmp_path / "crop.nii.gz")))
    volume = volume_from(scene, image)
    logic = new_logic()
    run = logic.start_background(volume, DetectionSettings(), server=ServerSettings(server.url, TOKENS[0]))
    outcome, fractions = finish(logic, run)
    assert outcome.status is RunStatus.DONE, outcome.message
    local = detect(sitk.Cast(image, sitk.sitkFloat32), device="cpu", mars=False)
    nodes = outcome.results.nodes
    assert nodes.segmentation.GetSegmentation().GetNumberOfSegments() == len(local.lesions) > 0
    assert nodes.points.GetNumberOfControlPoints() == len(local.lesions)
    assert [round(f, 2) for f in fractions if f is not None] == sorted(round(f, 2) for f in fractions if f is not None)
    assert "on http://127.0.0.1" in outcome.message
    assert not run.folder.exists()  # the temporary download folder is removed
    # the server no longer keeps the scan once its results are downloaded
    assert httpx.get(f"{server.url}/v1/jobs/{run.job_id}", headers={"Authorization": f"Bearer {TOKENS[0]}"}
                     ).status_code == 404


def test_a_wrong_token_and_an_unreachable_server_get_clear_messages(server, scene):
    logic = new_logic()
    volume = volume_from(scene, sitk.ReadImage(str(demo_volume()))[100:140, 100:140, 30:36])
    wrong = logic.start_background(volume, DetectionSettings(), server=ServerSettings(server.url, "not-a-token-at-all"))
    outcome, _ = finish(logic, wrong)
    assert outcome.status is RunStatus.FAILED and "refused the token" in outcome.message
    nowhere = ServerSettings(f"http://127.0.0.1:{free_port()}", TOKENS[0])
    outcome, _ = finish(logic, logic.start_background(volume, DetectionSettings(), server=nowhere))
    assert outcome.status is RunStatus.FAILED and outcome.message.startswith("cannot reach the detection server")
    assert logic.results_for(volume) is None  # nothing shown for a run that failed


def test_a_job_that_fails_on_the_server_says_why(server, scene):
    logic = new_logic()
    blank = sitk.GetImageFromArray(np.full((8, 20, 20), 7, np.int16))
    outcome, _ = finish(logic, logic.start_background(volume_from(scene, blank), DetectionSettings(),
                                                      server=ServerSettings(server.url, TOKENS[0])))
    assert outcome.status is RunStatus.FAILED
    assert outcome.message.startswith("detection failed on the server: input.nii.gz: every voxel has the same value")


def test_cancelling_a_remote_run_stops_the_job_on_the_server(server, scene):
    logic = new_logic()
    volume = volume_from(scene, sitk.ReadImage(str(demo_volume())))
    run = logic.start_background(volume, DetectionSettings(), server=ServerSettings(server.url, TOKENS[0]))
    deadline = time.monotonic() + 120
    while not run.poll().message.startswith("detecting on the server"):
        assert time.monotonic() < deadline and run.poll().running, run.poll().message
        time.sleep(0.1)
    run.cancel()
    outcome, _ = finish(logic, run)
    assert outcome.status is RunStatus.CANCELLED
    job = httpx.get(f"{server.url}/v1/jobs/{run.job_id}", headers={"Authorization": f"Bearer {TOKENS[0]}"}).json()
    assert job["status"] == "cancelled"
