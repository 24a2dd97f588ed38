"""Two-stage method: patches, augmentation, the ResNet50 classifier, training, and the detection contract."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from repo_paths import REPO_ROOT

from CMBDetectionLib.probability.two_stage.patches import augment, balanced_batch, extract_patches

MODELS = REPO_ROOT / "models" / "resnet50"
RESNET50_PARAMS = 23_587_712 + 2049  # keras ResNet50 without top (any input size) + a 2048->1 sigmoid unit


def _blob_volume() -> tuple[np.ndarray, tuple[float, float, float]]:
    volume = np.full((9, 60, 60), 0.6, np.float32)
    volume[3:6, 28:33, 38:43] = 0.1  # dark blob 3 slices thick around (4, 30, 40)
    return volume, (2.0, 0.9, 0.9)


def test_patch_is_centred_on_the_candidate_with_adjacent_slices_as_channels():
    volume, spacing = _blob_volume()
    volume[5] += 0.2  # make slice k+1 distinguishable from slice k-1
    patches = extract_patches(volume, np.array([[4.0, 30.0, 40.0]]), spacing, patch_size=32, field_of_view_mm=16.0)
    assert patches.shape == (1, 32, 32, 3)
    centre, corner = patches[0, 15:17, 15:17], patches[0, :3, :3]
    assert np.all(centre[..., 1] < 0.2) and np.all(corner[..., 1] > 0.5)
    assert np.all(patches[0, ..., 2] > patches[0, ..., 0])  # channel order k-1, k, k+1


def test_patch_outside_the_volume_is_zero_and_empty_input_gives_no_patches():
    volume, spacing = _blob_volume()
    patch = extract_patches(volume, np.array([[0.0, 0.0, 0.0]]), spacing, patch_size=32, field_of_view_mm=32.0)[0]
    assert patch[0, 0, 1] == 0.0 and patch[-1, -1, 1] > 0.5
    assert extract_patches(volume, np.zeros((0, 3)), spacing).shape == (0, 64, 64, 3)


def test_augmentation_keeps_shape_and_dark_centre_and_batches_are_balanced():
    volume, spacing = _blob_volume()
    patch = extract_patches(volume, np.array([[4.0, 30.0, 40.0]]), spacing, patch_size=32, field_of_view_mm=16.0)[0]
    rng = np.random.default_rng(0)
    outs = [augment(patch, rng) for _ in range(8)]
    assert all(o.shape == patch.shape and o.dtype == np.float32 for o in outs)
    assert all(o[14:18, 14:18, 1].mean() < 0.4 < o[:4, :4, 1].mean() for o in outs)  # rotation is about the centre
    assert len({o.tobytes() for o in outs}) == len(outs)
    labels = np.array([1] + [0] * 20)
    x, y = balanced_batch(np.repeat(patch[None], 21, axis=0), labels, 16, rng)
    assert x.shape == (16, 32, 32, 3) and y.sum() == 8
    with pytest.raises(ValueError, match="both classes"):
        balanced_batch(np.repeat(patch[None], 3, axis=0), np.zeros(3), 4, rng)


def test_network_input_is_keras_resnet50_preprocessing():
    from keras.applications.resnet50 import preprocess_input

    from CMBDetectionLib.probability.two_stage.classifier import to_network_input

    patches = np.random.default_rng(0).uniform(-0.2, 1.7, (2, 8, 8, 3)).astype(np.float32)
    expected = preprocess_input(np.clip(patches, 0.0, 1.5) * 255.0)
    assert np.allclose(to_network_input(patches), expected, atol=1e-4)


@pytest.fixture(scope="module")
def tiny_resnet():
    from CMBDetectionLib.probability.two_stage.classifier import build_classifier

    return build_classifier(32)


def test_classifier_is_resnet50_with_the_configured_input(tiny_resnet):
    assert tiny_resnet.input_shape == (None, 32, 32, 3)
    assert tiny_resnet.output_shape == (None, 1)
    assert tiny_resnet.count_params() == RESNET50_PARAMS
    names = {layer.name for layer in tiny_resnet.layers}
    assert {"conv1_conv", "conv5_block3_out", "avg_pool"} <= names
    with pytest.raises(ValueError, match="too small"):
        from CMBDetectionLib.probability.two_stage.classifier import build_classifier

        build_classifier(16)


def test_missing_imagenet_file_is_a_clear_error(tmp_path):
    from CMBDetectionLib.probability.two_stage.classifier import imagenet_weights_path

    with pytest.raises(FileNotFoundError, match="ImageNet weights file not found"):
        imagenet_weights_path(tmp_path / "nope.h5")


def test_a_short_training_run_lowers_the_loss(tiny_resnet):
    import keras

    from CMBDetectionLib.probability.two_stage.classifier import to_network_input

    volume, spacing = _blob_volume()
    cmb = extract_patches(volume, np.array([[4.0, 30.0, 40.0]]), spacing, patch_size=32, field_of_view_mm=16.0)
    background = extract_patches(volume, np.array([[4.0, 12.0, 12.0]]), spacing, patch_size=32, field_of_view_mm=16.0)
    rng = np.random.default_rng(1)
    x, y = balanced_batch(np.concatenate([cmb, background]), np.array([1, 0]), 8, rng)
    # Eager: tracing ResNet50's graph train step costs ~90 s on two cores, five eager steps far less.
    tiny_resnet.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", run_eagerly=True)
    losses = [float(tiny_resnet.train_on_batch(to_network_input(x), y)) for _ in range(5)]
    assert losses[-1] < 0.5 * losses[0], losses


SMALL_PHANTOM = dict(size=128, spacing=1.8, slice_thickness=3.0, n_slices=40)


@pytest.fixture(scope="module")
def tiny_model_dir(tiny_resnet, tmp_path_factory):
    """A model folder holding an (untrained) 32-pixel ResNet50, to test the output contract without shipped weights."""
    from CMBDetectionLib.probability.two_stage.classifier import save_classifier
    from CMBDetectionLib.probability.two_stage.method import StageSettings

    folder = tmp_path_factory.mktemp("resnet50")
    save_classifier(tiny_resnet, folder, {"input_shape": [32, 32, 3], **StageSettings(patch_size=32).card_sections()})
    return folder


@pytest.fixture(scope="module")
def small_phantom():
    from CMBDetectionLib.phantoms.generator import generate_subject

    return generate_subject(312, **SMALL_PHANTOM)


def test_detect_two_stage_gives_the_unet_output_contract(small_phantom, tiny_model_dir, tmp_path):
    from CMBDetectionLib.pipeline import detect
    from CMBDetectionLib.results import DetectionResult

    image = sitk.Cast(small_phantom.image, sitk.sitkFloat32)
    fractions = []
    result = detect(image, method="two-stage", model_dir=tiny_model_dir, mars=False, device="cpu", progress=fractions.append)
    assert isinstance(result, DetectionResult) and result.reference is image
    assert result.probability.shape == result.label_map.shape == sitk.GetArrayViewFromImage(image).shape
    assert result.probability.dtype == np.float32
    assert 0.0 <= result.probability.min() and result.probability.max() <= 1.0
    assert (result.probability > 0).sum() < 0.01 * result.probability.size  # only candidate voxels carry a score
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    for lesion in result.lesions:  # every lesion is a thresholded candidate: one score inside it
        assert lesion.max_probability >= 0.5 and lesion.mean_probability == pytest.approx(lesion.max_probability, abs=1e-3)
    assert result.provenance["method"] == "two-stage"
    from CMBDetectionLib.outputs.files import write_outputs

    paths = write_outputs(result, tmp_path, "phantom")
    mask = sitk.ReadImage(str(paths["mask"]))
    assert mask.GetSize() == image.GetSize() and mask.GetOrigin() == pytest.approx(image.GetOrigin(), abs=1e-3)
    assert paths["lesions_csv"].read_text().count("\n") == len(result.lesions) + 1


def test_two_stage_cancel_and_bad_arguments(small_phantom, tiny_model_dir):
    from CMBDetectionLib.errors import DetectionCancelled, ModelError
    from CMBDetectionLib.probability.two_stage.method import predict_probability

    image = sitk.Cast(small_phantom.image, sitk.sitkFloat32)
    with pytest.raises(DetectionCancelled):
        predict_probability(image, model_dir=tiny_model_dir, cancel=lambda: True)
    with pytest.raises(ValueError, match="backend 'jax' is not available"):
        predict_probability(image, model_dir=tiny_model_dir, backend="jax")
    with pytest.raises(ValueError, match="device 'tpu' unknown"):
        predict_probability(image, model_dir=tiny_model_dir, device="tpu")
    with pytest.raises(ModelError, match="no trained model here"):
        predict_probability(image, model_dir=tiny_model_dir.parent / "missing")


@pytest.mark.skipif(not (MODELS / "model_card.json").is_file(), reason="no shipped two-stage weights in models/resnet50 yet")
def test_shipped_two_stage_model_finds_the_cmbs_of_an_unseen_phantom():
    from CMBDetectionLib.evaluation.metrics import lesion_metrics
    from CMBDetectionLib.phantoms.generator import generate_subject
    from CMBDetectionLib.pipeline import detect

    subject = generate_subject(303)  # 15 CMBs; a test seed: never in training (1000-8999) or held-out (9000+) data
    image, truth = sitk.Cast(subject.image, sitk.sitkFloat32), sitk.GetArrayFromImage(subject.cmb_mask)
    spacing = subject.image.GetSpacing()[::-1]
    result = detect(image, method="two-stage", mars=False, device="cpu")
    scores = lesion_metrics(truth, result.mask, spacing)
    # v1.2 with its 3D filter (held-out 9200-9219: sensitivity 0.83, 0.95 FP/subject) finds 15 of 15 here, no FP;
    # the classifier alone 11 of 15 with 48 FP.
    assert scores["n_gt"] >= 10 and result.provenance["lesion_filter"]
    assert scores["lesion_sensitivity"] >= 0.8, scores
    assert scores["fp"] <= 3, scores
    paper = lesion_metrics(truth, detect(image, method="two-stage", mars=False, device="cpu", use_lesion_filter=False).mask,
                           spacing)
    assert paper["fp"] > 10 * max(scores["fp"], 1), (paper, scores)  # what the filter is for


def test_two_stage_lesion_filter_is_trained_on_stage_one_candidates_and_used_by_detect(tiny_model_dir, tmp_path):
    import shutil

    from synthetic_cmb import write_dataset

    from CMBDetectionLib.cli.train import main as train_main
    from CMBDetectionLib.lesions.filter import FILTER_FILE, load_lesion_filter
    from CMBDetectionLib.model_store import load_card, sha256_of
    from CMBDetectionLib.pipeline import detect
    from CMBDetectionLib.probability.two_stage.method import predict_probability
    from CMBDetectionLib.training.data import find_pairs, read_labelled
    from CMBDetectionLib.training.lesion_filter import FILTER_THRESHOLDS

    folder = shutil.copytree(tiny_model_dir, tmp_path / "resnet50")
    data = write_dataset(tmp_path / "fresh", 5, seed0=70, shape_kji=(12, 96, 96), n_cmbs=3, n_distractors=6)
    assert train_main([str(data), "-o", str(folder), "--method", "lesion-filter", "-q"]) == 0
    card = load_card(folder)
    record = card["lesion_filter"]
    assert "stage-one candidates" in record["method"] and card["files"][FILTER_FILE] == sha256_of(folder / FILTER_FILE)
    assert record["threshold"] in FILTER_THRESHOLDS and record["training_data"]["n_true_candidates"] >= 1
    assert record["confidence_shift"]["copies_per_subject"] == 0  # measured no help for this method (README)

    image, _ = read_labelled(find_pairs(data)[0])
    filtered = predict_probability(image, model_dir=folder, device="cpu")
    plain = predict_probability(image, model_dir=folder, device="cpu", lesion_filter=False)
    assert np.array_equal(filtered > 0, plain > 0)  # the same candidates, rescored
    assert not np.allclose(filtered, plain)
    result = detect(image, method="two-stage", model_dir=folder, mars=False, device="cpu")
    assert result.provenance["lesion_filter"] and result.provenance["threshold"] == load_lesion_filter(folder).threshold
    paper = detect(image, method="two-stage", model_dir=folder, mars=False, device="cpu", use_lesion_filter=False)
    assert not paper.provenance["lesion_filter"] and paper.provenance["threshold"] == 0.5
