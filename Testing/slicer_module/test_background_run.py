"""The background run: a separate process writes the engine's files, progress is read, cancel kills it.

The process here is a small stand-in engine script (no model needed) that writes its files with the engine's own
``CMBDetectionLib.outputs.files.write_outputs``; the real ``cmb-detect`` command line is checked separately.
"""

from __future__ import annotations

import sys
import time

import pytest
from slicer_fixtures import count_by_side, fake_locator, make_volume
from slicer_harness import slicer_harness  # noqa: F401 (fixture)

from CMBDetectionLogic import DetectionLogic, DetectionSettings, RunStatus
from CMBDetectionLogic.background_run import engine_command

STAND_IN_ENGINE = r"""
import sys, time
import numpy as np, SimpleITK as sitk
from CMBDetectionLib.lesions.extraction import extract_lesions
from CMBDetectionLib.outputs.files import write_outputs
from CMBDetectionLib.results import DetectionResult
from CMBDetectionLib.imageio.volumes import volume_stem

mode, source, out = sys.argv[1], sys.argv[2], sys.argv[4]
if mode == "fail":
    print("error: model weights are damaged", file=sys.stderr)
    sys.exit(1)
for percent in (10, 50, 90):
    print(f"detecting: {percent:3d}%|#####     | {percent}/100", end="\r", file=sys.stderr, flush=True)
    time.sleep(0.1)
if mode == "hang":
    time.sleep(600)
image = sitk.ReadImage(source)
probability = (sitk.GetArrayFromImage(image) < 20).astype(np.float32)
labels, lesions = extract_lesions(probability, image, 0.5)
write_outputs(DetectionResult(image, probability, labels, lesions, {}), out, volume_stem(source))
print("done")
"""


def stand_in(tmp_path, mode: str):
    script = tmp_path / "engine.py"
    script.write_text(STAND_IN_ENGINE)
    return lambda python, input_path, out_dir, settings: [sys.executable, str(script), mode, str(input_path), "-o", str(out_dir)]


def run_with(tmp_path, scene, mode: str):
    logic = DetectionLogic(locate_factory=fake_locator, count_table=count_by_side, command=stand_in(tmp_path, mode))
    volume = make_volume(scene)
    return logic, volume


@pytest.fixture
def scene(slicer_harness):  # noqa: F811
    slicer_harness.clear()
    return slicer_harness.scene


def wait(run, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    fractions = []
    while (update := run.poll()).running:
        fractions.append(update.fraction)
        assert time.monotonic() < deadline, "background run did not finish"
        time.sleep(0.05)
    return update, fractions


def test_a_background_run_reports_progress_and_its_files_become_mrml(tmp_path, scene):
    logic, volume = run_with(tmp_path, scene, "ok")
    run = logic.start_background(volume, DetectionSettings())
    update, fractions = wait(run)
    assert update.returncode == 0
    assert update.fraction == pytest.approx(0.9)  # the last tqdm percentage printed
    assert all(f is None or 0 <= f <= 1 for f in fractions)
    outcome = logic.finish_background(run)
    assert outcome.status is RunStatus.DONE
    results = outcome.results
    assert results.accepted_labels() == [1, 2, 3]
    assert results.nodes.segmentation.GetSegmentation().GetNumberOfSegments() == 3
    assert results.nodes.points.GetNumberOfControlPoints() == 3
    assert all(lesion.n_voxels == 27 for lesion in results.lesions.values())
    assert not run.folder.exists()  # temporary files removed


def test_cancel_kills_the_process_and_keeps_earlier_results(tmp_path, scene):
    logic, volume = run_with(tmp_path, scene, "ok")
    run = logic.start_background(volume, DetectionSettings())
    wait(run)
    earlier = logic.finish_background(run).results
    earlier.reject(2)

    hanging = DetectionLogic(locate_factory=None, count_table=count_by_side, command=stand_in(tmp_path, "hang"))
    hanging._results = logic._results
    run = hanging.start_background(volume, DetectionSettings(), overwrite=True)
    while run.poll().fraction is None:
        time.sleep(0.05)
    started = time.monotonic()
    run.cancel()
    assert not run.poll().running and time.monotonic() - started < 5
    outcome = hanging.finish_background(run)
    assert outcome.status is RunStatus.CANCELLED
    assert outcome.results is earlier and earlier.accepted_labels() == [1, 3]


def test_a_failing_run_reports_the_engine_error(tmp_path, scene):
    logic, volume = run_with(tmp_path, scene, "fail")
    run = logic.start_background(volume, DetectionSettings())
    update, _ = wait(run)
    assert update.returncode == 1
    outcome = logic.finish_background(run)
    assert outcome.status is RunStatus.FAILED
    assert "model weights are damaged" in outcome.message
    assert logic.results_for(volume) is None


def test_starting_over_corrections_needs_confirmation(tmp_path, scene):
    from CMBDetectionLogic import CorrectionsWouldBeLost

    logic, volume = run_with(tmp_path, scene, "ok")
    run = logic.start_background(volume, DetectionSettings())
    wait(run)
    logic.finish_background(run).results.reject(1)
    with pytest.raises(CorrectionsWouldBeLost):
        logic.start_background(volume, DetectionSettings())


def test_the_engine_command_line_matches_cmb_detect(tmp_path):
    """The real command: parsed by the engine's own ``cmb-detect`` parser (``--help`` exits 0 without a model)."""
    import subprocess

    command = engine_command(sys.executable, tmp_path / "in.nii.gz", tmp_path / "out", DetectionSettings("two-stage", "cpu", 0.4))
    assert command[3:] == [str(tmp_path / "in.nii.gz"), "-o", str(tmp_path / "out"),
                           "--method", "two-stage", "--device", "cpu", "--threshold", "0.4"]
    completed = subprocess.run([*command[:3], "--help"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0
    for option in ("--method", "--device", "--threshold", "-o"):
        assert option in completed.stdout


def test_results_land_on_the_volume_the_run_started_on(tmp_path, scene):
    logic, volume = run_with(tmp_path, scene, "ok")
    run = logic.start_background(volume, DetectionSettings())
    other = make_volume(scene, "another swi")  # the user selects another volume while the run goes on
    wait(run)
    outcome = logic.finish_background(run)
    assert outcome.status is RunStatus.DONE and outcome.results.volume_node is volume
    assert logic.results_for(volume) is outcome.results and logic.results_for(other) is None


@pytest.mark.parametrize("how", ["volume removed", "scene closed"])
def test_results_of_a_vanished_volume_are_dropped_cleanly(tmp_path, scene, how):
    logic, volume = run_with(tmp_path, scene, "ok")
    run = logic.start_background(volume, DetectionSettings())
    wait(run)
    scene.RemoveNode(volume) if how == "volume removed" else scene.Clear(False)
    outcome = logic.finish_background(run)
    assert outcome.status is RunStatus.DROPPED and "dropped" in outcome.message
    assert not run.folder.exists()
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0


def test_the_device_the_engine_reports_reaches_the_status_and_the_nodes(tmp_path, scene):
    script = tmp_path / "engine.py"
    script.write_text(STAND_IN_ENGINE.replace('mode, source', 'print("cmb-detect: UNet inference on '
                                              'CUDAExecutionProvider (onnxruntime)", file=sys.stderr)\nmode, source'))
    command = lambda python, input_path, out_dir, settings: [sys.executable, str(script), "ok", str(input_path), "-o", str(out_dir)]  # noqa: E731
    logic = DetectionLogic(locate_factory=None, count_table=count_by_side, command=command)
    volume = make_volume(scene)
    run = logic.start_background(volume, DetectionSettings())
    wait(run)
    outcome = logic.finish_background(run)
    assert "ran on CUDAExecutionProvider" in outcome.message
    assert all(node.GetAttribute("CMBDetection.Device") == "CUDAExecutionProvider" for node in outcome.results.nodes)
