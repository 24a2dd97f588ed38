"""TensorFlow and ONNX Runtime backends compute the same UNet: same probabilities (1e-4) and the same lesions.

A seeded, randomly initialised paper UNet is saved as a model folder (float16 weights + card) and exported to
ONNX once per module; the shipped model is compared too when it exists.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import SimpleITK as sitk
from synthetic_cmb import synthetic_subject

from CMBDetectionLib.errors import BackendUnavailable
from CMBDetectionLib.lesions.extraction import extract_lesions
from CMBDetectionLib.model_store import CARD_NAME, WEIGHTS_NAME, model_dir, save_weights_npz, write_card
from CMBDetectionLib.probability.backends.choice import make_backend
from CMBDetectionLib.probability.backends.keras_backends import KerasBackend, TensorFlowBackend
from CMBDetectionLib.probability.backends.onnxruntime_backend import (
    OnnxRuntimeBackend,
    choose_providers,
    physical_cores,
)
from CMBDetectionLib.probability.unet.inference import predict_probability
from CMBDetectionLib.probability.unet.network import ENCODER_FILTERS, build_unet
from CMBDetectionLib.probability.unet.slicing import model_slices
from CMBDetectionLib.training.onnx_export import ONNX_NAME, add_onnx_to_model_dir

TOLERANCE = 1e-4
LOGIT_GAIN = 300.0


@pytest.fixture(scope="module")
def random_model_dir(tmp_path_factory):
    """A model folder holding a seeded random paper UNet, its card and its ONNX export."""
    folder = tmp_path_factory.mktemp("unet")
    keras.utils.set_random_seed(7)
    model = build_unet()
    # Random weights give probabilities within 0.5 +- 0.01; sharpening the logits spreads them over 0..1 so
    # thresholding yields real components.
    head = model.get_layer("cmb_probability")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * LOGIT_GAIN, bias])
    save_weights_npz(model, folder / WEIGHTS_NAME)
    card = {"name": "random-test-unet", "architecture": {"encoder_filters": list(ENCODER_FILTERS)}}
    write_card(folder, card, [WEIGHTS_NAME])
    add_onnx_to_model_dir(folder)
    return folder


def _shipped_model_dir():
    folder = model_dir("unet")
    if not (folder / CARD_NAME).is_file() or "onnx" not in json.loads((folder / CARD_NAME).read_text()):
        pytest.skip("no shipped UNet with an ONNX export in models/unet yet")
    return folder


@pytest.fixture(scope="module", params=["random", "shipped"])
def backend_pair(request, random_model_dir):
    """Both backends on one model, and a volume on which that model finds lesions: the random model fires on
    synthetic blobs, the shipped one on a phantom head (a test seed)."""
    if request.param == "random":
        folder = random_model_dir
        volume, _, _ = synthetic_subject(3, shape_kji=(6, 96, 80), spacing_ijk=(0.9, 0.9, 2.0))
    else:
        from CMBDetectionLib.phantoms.generator import generate_subject

        folder = _shipped_model_dir()
        volume = sitk.Cast(generate_subject(303).image, sitk.sitkFloat32)
    return TensorFlowBackend(folder, device="cpu"), OnnxRuntimeBackend(folder, device="cpu"), volume


def _clear_threshold(probability: np.ndarray, margin: float) -> float:
    """A threshold from 0.5 up with no probability within ``margin``: differences below it cannot flip voxels."""
    for threshold in np.linspace(0.5, 0.9, 401):
        if not np.any(np.abs(probability - threshold) <= margin):
            return float(threshold)
    raise AssertionError(f"no threshold clear of the backends' differences ({margin:g})")


def test_export_lists_onnx_with_checksum_and_dynamic_batch(random_model_dir):
    card = json.loads((random_model_dir / CARD_NAME).read_text())
    assert card["onnx"] == ONNX_NAME
    assert len(card["files"][ONNX_NAME]) == 64 and WEIGHTS_NAME in card["files"]
    backend = OnnxRuntimeBackend(random_model_dir, device="cpu")
    for n in (1, 3):
        assert backend.predict(np.zeros((n, 256, 256, 1), np.float32)).shape == (n, 256, 256, 1)


def _model_slices(volume: sitk.Image, n: int = 6) -> np.ndarray:
    """``n`` preprocessed axial slices from the middle of ``volume``, as the models see them."""
    slices = model_slices(volume)
    picks = np.unique(np.linspace(0.3 * len(slices), 0.7 * (len(slices) - 1), n).astype(int))
    return slices[picks, ..., np.newaxis].astype(np.float32)


def test_same_probabilities_on_slices(backend_pair):
    tf_backend, ort_backend, volume = backend_pair
    batch = _model_slices(volume)
    tf_probs, ort_probs = tf_backend.predict(batch), ort_backend.predict(batch)
    assert ort_probs.dtype == np.float32 and ort_probs.shape == batch.shape
    assert tf_probs.std() > 1e-3  # a constant output would make the comparison vacuous
    np.testing.assert_allclose(ort_probs, tf_probs, atol=TOLERANCE, rtol=0)


def test_same_lesions_on_a_volume(backend_pair):
    tf_backend, ort_backend, subject = backend_pair
    tf_map = predict_probability(subject, backend=tf_backend)
    ort_map = predict_probability(subject, backend=ort_backend)
    np.testing.assert_allclose(ort_map, tf_map, atol=TOLERANCE, rtol=0)
    threshold = _clear_threshold(tf_map, margin=float(np.abs(ort_map - tf_map).max()))
    tf_labels, tf_lesions = extract_lesions(tf_map, subject, threshold)
    ort_labels, ort_lesions = extract_lesions(ort_map, subject, threshold)
    assert tf_lesions, "the comparison needs at least one lesion"
    np.testing.assert_array_equal(ort_labels, tf_labels)
    assert [lesion.centre_ijk for lesion in ort_lesions] == [lesion.centre_ijk for lesion in tf_lesions]


def test_auto_prefers_onnxruntime_and_falls_back_to_tensorflow_without_an_export(tmp_path, random_model_dir):
    assert make_backend("auto", random_model_dir, "cpu").name == "onnxruntime"
    assert make_backend("onnxruntime", random_model_dir, "cpu").device == "CPUExecutionProvider"
    (tmp_path / WEIGHTS_NAME).write_bytes((random_model_dir / WEIGHTS_NAME).read_bytes())
    write_card(tmp_path, {"name": "no-onnx"}, [WEIGHTS_NAME])
    with pytest.raises(BackendUnavailable, match="no ONNX export"):
        OnnxRuntimeBackend(tmp_path, device="cpu")
    assert make_backend("auto", tmp_path, "cpu").name == "tensorflow"


def test_keras_backend_computes_what_tensorflow_computes(random_model_dir):
    """The backend-neutral Keras path (used for evaluation on JAX/PyTorch training machines) is the same UNet."""
    batch = np.random.default_rng(1).random((3, 256, 256, 1), dtype=np.float32)
    keras_backend = make_backend("keras", random_model_dir)
    assert isinstance(keras_backend, KerasBackend) and keras_backend.device.startswith(keras.backend.backend())
    np.testing.assert_allclose(keras_backend.predict(batch), TensorFlowBackend(random_model_dir, "cpu").predict(batch),
                               atol=TOLERANCE, rtol=0)


def test_provider_choice():
    available = ["DmlExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("auto", available) == ["DmlExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(BackendUnavailable, match="no GPU execution provider"):
        choose_providers("gpu", ["CPUExecutionProvider"])
    assert 1 <= physical_cores()
