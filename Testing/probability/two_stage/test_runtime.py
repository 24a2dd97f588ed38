"""The two-stage classifier without TensorFlow: ONNX export, ONNX Runtime in a process where TensorFlow cannot
be imported, the same probability map as the TensorFlow path, and the model checks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from repo_paths import REPO_ROOT

from CMBDetectionLib.errors import BackendUnavailable, ModelError

SMALL_PHANTOM = dict(size=128, spacing=1.8, slice_thickness=3.0, n_slices=40)

# Runs two-stage detection with tensorflow and keras unimportable, and saves the probability map.
BLOCKED_TF = """
import sys
sys.modules["tensorflow"] = None
sys.modules["keras"] = None
import numpy as np, SimpleITK as sitk
from CMBDetectionLib.probability.two_stage.method import load_model, predict_probability
image = sitk.ReadImage(sys.argv[1], sitk.sitkFloat32)
print(load_model(sys.argv[2], "auto", "cpu")[0].name)
np.save(sys.argv[3], predict_probability(image, model_dir=sys.argv[2], device="cpu"))
"""


@pytest.fixture(scope="module")
def onnx_model_dir(tmp_path_factory):
    """An untrained 32-pixel ResNet50 saved with weights.npz and exported to ONNX (float16 storage)."""
    from CMBDetectionLib.probability.two_stage.classifier import build_classifier, save_classifier
    from CMBDetectionLib.probability.two_stage.method import StageSettings
    from CMBDetectionLib.training.two_stage_onnx import add_onnx_to_resnet_dir

    folder = tmp_path_factory.mktemp("resnet50_onnx")
    card = {"name": "resnet50", "version": "1.0", "input_shape": [32, 32, 3], **StageSettings(patch_size=32).card_sections()}
    save_classifier(build_classifier(32), folder, card)
    add_onnx_to_resnet_dir(folder)
    return folder


@pytest.fixture(scope="module")
def phantom_file(tmp_path_factory):
    from CMBDetectionLib.phantoms.generator import generate_subject

    path = tmp_path_factory.mktemp("phantom") / "phantom_swi.nii.gz"
    sitk.WriteImage(generate_subject(312, **SMALL_PHANTOM).image, str(path))
    return path


def test_export_lists_the_onnx_file_and_bumps_the_minor_version(onnx_model_dir):
    card = json.loads((onnx_model_dir / "model_card.json").read_text())
    assert card["version"] == "1.1" and card["onnx"] == "resnet50.onnx"
    assert set(card["files"]) == {"resnet50.onnx", "weights.npz"}
    assert card["onnx_check"]["max_abs_diff"] < 1e-3 and card["onnx_check"]["decisions_changed_at_0.5"] == 0
    npz, onnx_file = (onnx_model_dir / name for name in ("weights.npz", "resnet50.onnx"))
    assert onnx_file.stat().st_size < 1.3 * npz.stat().st_size  # float16 storage: about the npz's size


def test_detection_without_tensorflow_matches_the_tensorflow_path(onnx_model_dir, phantom_file, tmp_path):
    from CMBDetectionLib.probability.two_stage.method import predict_probability

    out = tmp_path / "probability.npy"
    run = subprocess.run([sys.executable, "-c", BLOCKED_TF, str(phantom_file), str(onnx_model_dir), str(out)],
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-1] == "onnxruntime"
    without_tf = np.load(out)
    image = sitk.ReadImage(str(phantom_file), sitk.sitkFloat32)
    with_tf = predict_probability(image, model_dir=onnx_model_dir, device="cpu", backend="tensorflow")
    assert without_tf.shape == with_tf.shape and (with_tf > 0).sum() > 0
    assert np.array_equal(without_tf > 0, with_tf > 0)  # the same candidates
    assert np.abs(without_tf - with_tf).max() < 1e-3


def test_backend_choice_and_damaged_onnx_file(onnx_model_dir, tmp_path):
    from CMBDetectionLib.probability.two_stage.runtime import open_classifier

    assert open_classifier(onnx_model_dir, "onnxruntime", "cpu")[0].name == "onnxruntime"
    assert open_classifier(onnx_model_dir, "tensorflow", "cpu")[0].name == "tensorflow"
    keras_only = tmp_path / "keras_only"
    shutil.copytree(onnx_model_dir, keras_only)
    card = json.loads((keras_only / "model_card.json").read_text())
    card.pop("onnx")
    card["files"].pop("resnet50.onnx")
    (keras_only / "model_card.json").write_text(json.dumps(card))
    assert open_classifier(keras_only, "auto", "cpu")[0].name == "tensorflow"
    with pytest.raises(BackendUnavailable, match="no ONNX export"):
        open_classifier(keras_only, "onnxruntime", "cpu")
    damaged = tmp_path / "damaged"
    shutil.copytree(onnx_model_dir, damaged)
    with open(damaged / "resnet50.onnx", "r+b") as handle:
        handle.seek(5000)
        handle.write(b"\0" * 64)
    with pytest.raises(ModelError, match="checksum does not match"):
        open_classifier(damaged, "auto", "cpu")


def test_int8_storage_halves_the_file_and_keeps_the_probabilities(onnx_model_dir, tmp_path):
    import onnx

    from CMBDetectionLib.probability.two_stage.classifier import load_classifier, to_network_input
    from CMBDetectionLib.probability.two_stage.runtime import open_classifier
    from CMBDetectionLib.training.two_stage_onnx import requantise_folder

    folder = tmp_path / "int8"
    shutil.copytree(onnx_model_dir, folder)
    float16_size = (folder / "resnet50.onnx").stat().st_size
    network_input = to_network_input(np.random.default_rng(3).random((16, 32, 32, 3), dtype=np.float32))
    record = requantise_folder(folder, network_input)
    card = json.loads((folder / "model_card.json").read_text())
    assert card["version"] == "1.2" and card["int8_storage"] == record and record["patches"] == 16
    assert (folder / "resnet50.onnx").stat().st_size < 0.6 * float16_size
    graph = onnx.load(str(folder / "resnet50.onnx")).graph
    assert sum(node.op_type == "DequantizeLinear" for node in graph.node) > 10
    runner = open_classifier(folder, "onnxruntime", "cpu")[0]  # the card's new checksum verifies
    reference = load_classifier(onnx_model_dir)[0].predict_on_batch(network_input).reshape(-1)  # float32 TensorFlow
    assert np.abs(runner.predict(network_input) - reference).max() < 0.02
    with pytest.raises(ValueError, match="int8 already"):  # a second pass changes nothing, and says so
        requantise_folder(folder, network_input)
    assert json.loads((folder / "model_card.json").read_text())["version"] == "1.2"
