"""Lesion outlines redrawn at half signal loss: grown to the blob, trimmed off bright tissue, held back on veins."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.special import erfc

from CMBDetectionLib.evaluation.metrics import voxel_metrics
from CMBDetectionLib.lesions.extraction import lesions_from_labels
from CMBDetectionLib.lesions.outline import MAX_GROWTH, VEIN_GROWTH, VEIN_MAX_SCORE, outline_lesions, vein_like

SPACING = (2.0, 0.9, 0.9)  # k, j, i in mm, as the phantoms


def _distance_mm(shape, centre_kji) -> np.ndarray:
    grids = np.indices(shape, dtype=float)
    return np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre_kji, SPACING)))


def _blurred_blob(shape=(15, 40, 40), centre=(7, 20, 20), radius_mm=3.0, noise=4.0, seed=0):
    """Tissue 400 with a dark blob whose signal falls to half exactly at ``radius_mm`` (blurred edge), and its
    true extent (voxels within the radius)."""
    distance = _distance_mm(shape, centre)
    loss = 0.5 * erfc((distance - radius_mm) / 1.0)  # 1 at the centre, 0.5 at the radius, 0 far out
    image = 400.0 * (1 - 0.9 * loss) + np.random.default_rng(seed).normal(0, noise, shape)
    return image.astype(np.float32), distance <= radius_mm


def _in_plane_core(truth: np.ndarray) -> np.ndarray:
    """``truth`` less its outer in-plane ring of voxels: an outline drawn one voxel short on every slice."""
    ring = np.zeros((3, 3, 3), bool)
    ring[1] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_erosion(truth, ring)


def test_an_undersized_detection_grows_to_the_blob_outline():
    image, truth = _blurred_blob(radius_mm=3.5)
    detected = _in_plane_core(truth).astype(np.int32) * 4  # label 4
    outlined, _ = outline_lesions(image, detected, SPACING)
    assert set(np.unique(outlined)) == {0, 4}
    before, after = voxel_metrics(truth, detected)["dice"], voxel_metrics(truth, outlined)["dice"]
    assert before < 0.75 and after > 0.9


def test_a_detection_on_a_vein_keeps_its_outline_and_reports_the_growth():
    image = np.full((15, 40, 40), 400.0, np.float32)
    image[7, 19:22, 2:38] = 60.0  # a dark tube along i, 3 voxels wide
    detected = np.zeros(image.shape, np.int32)
    detected[7, 20, 20] = 1  # the detector flagged one voxel of it: the redraw would take its 4 in-plane neighbours
    outlined, growth = outline_lesions(image, detected, SPACING)
    assert 5 > MAX_GROWTH and growth.tolist() == [5.0]
    np.testing.assert_array_equal(outlined, detected)
    assert vein_like(growth, np.array([0.1])) == [1] and vein_like(growth, np.array([0.9])) == []


def test_a_detection_spilling_onto_bright_tissue_is_trimmed():
    image, truth = _blurred_blob(radius_mm=2.0)
    detected = (_distance_mm(image.shape, (7, 20, 20)) <= 4.0).astype(np.int32)
    outlined, _ = outline_lesions(image, detected, SPACING)
    assert outlined.sum() < detected.sum()
    assert voxel_metrics(truth, outlined)["dice"] > voxel_metrics(truth, detected)["dice"] + 0.2


def test_neighbouring_lesions_keep_their_labels_and_their_voxels():
    image = np.full((9, 30, 30), 400.0, np.float32)
    image[4, 10:20, 10:15] = 40.0  # one dark slab, detected as two touching lesions
    image[4, 10:20, 15:20] = 40.0
    detected = np.zeros(image.shape, np.int32)
    detected[4, 10:20, 10:15], detected[4, 10:20, 15:20] = 1, 2
    outlined, _ = outline_lesions(image, detected, SPACING)
    np.testing.assert_array_equal(outlined, detected)  # each already fills its half; neither takes the other's


def test_a_detection_on_tissue_that_is_not_dark_stands():
    image = np.full((9, 30, 30), 400.0, np.float32)
    image[4, 14:17, 14:17] = 700.0  # bright, not a microbleed: no half-loss edge to draw
    detected = np.zeros(image.shape, np.int32)
    detected[4, 13:18, 13:18] = 1
    np.testing.assert_array_equal(outline_lesions(image, detected, SPACING)[0], detected)


def test_lesion_probabilities_come_from_the_detectors_voxels():
    image, truth = _blurred_blob(radius_mm=3.5)
    detected = _in_plane_core(truth).astype(np.int32)
    probability = np.where(detected > 0, 0.8, 0.0).astype(np.float32)  # a lesion score on the detected voxels
    outlined, _ = outline_lesions(image, detected, SPACING)
    reference = sitk.GetImageFromArray(image)
    reference.SetSpacing(SPACING[::-1])
    [lesion] = lesions_from_labels(outlined, probability, reference, scored_labels=detected)
    assert lesion.n_voxels == int(outlined.sum()) > int(detected.sum())
    assert lesion.mean_probability == pytest.approx(0.8) and lesion.max_probability == pytest.approx(0.8)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        outline_lesions(np.zeros((4, 5, 6), np.float32), np.zeros((4, 5, 5), np.int32), SPACING)


def test_detect_redraws_outlines_by_default_and_keeps_the_lesions():
    from synthetic_cmb import synthetic_subject

    from CMBDetectionLib.pipeline import detect

    # A subject whose CMBs the shipped model scores above VEIN_MAX_SCORE at its 0.9 mm pixel size, so that the
    # vein check keeps them all and only the outlines change.
    image, _, _ = synthetic_subject(71, shape_kji=(10, 96, 96))
    redrawn = detect(image, device="cpu", mars=False)
    detector = detect(image, device="cpu", mars=False, redraw_outlines=False)
    assert (redrawn.provenance["outlines"], detector.provenance["outlines"]) == ("half signal loss", "detector")
    assert [lesion.label for lesion in redrawn.lesions] == [lesion.label for lesion in detector.lesions]
    assert redrawn.lesions, "the shipped model finds the synthetic CMBs"
    for new, old in zip(redrawn.lesions, detector.lesions):  # same lesions, same scores, edges moved
        assert np.linalg.norm(np.subtract(new.centre_ras, old.centre_ras)) < 2.0
        assert new.max_probability == old.max_probability
    expected, growth = outline_lesions(sitk.GetArrayFromImage(image), detector.label_map, image.GetSpacing()[::-1])
    assert not vein_like(growth, np.array([lesion.max_probability for lesion in detector.lesions]))
    np.testing.assert_array_equal(redrawn.label_map, expected)


def test_outlined_lesions_drop_vein_segments_the_detector_is_unsure_of_and_renumber():
    from CMBDetectionLib.pipeline import outlined_lesions

    array = np.full((15, 40, 40), 400.0, np.float32)
    array[7, 19:22, 2:38] = 60.0  # a vein
    array[3:6, 30:33, 30:33] = 40.0  # a microbleed
    probability = np.zeros(array.shape, np.float32)
    probability[7, 20, 20] = VEIN_MAX_SCORE / 2  # a faint detection on the vein (growth 5 > VEIN_GROWTH)
    probability[4, 31, 31] = 0.9  # a confident one on the microbleed
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING[::-1])
    labels, lesions = outlined_lesions(image, probability, 0.05)
    assert 5 > VEIN_GROWTH and len(lesions) == 1 and lesions[0].label == 1
    assert lesions[0].centre_ijk == (31.0, 31.0, 4.0) and lesions[0].max_probability == pytest.approx(0.9)
    assert set(np.unique(labels)) == {0, 1} and labels[4, 31, 31] == 1 and labels[7, 20, 20] == 0
    probability[7, 20, 20] = 2 * VEIN_MAX_SCORE  # confident: kept, with the detector's outline
    assert len(outlined_lesions(image, probability, 0.05)[1]) == 2


def test_threshold_choice_scores_the_lesions_detect_reports(tmp_path):
    """The filter's operating threshold is chosen on what detect() outputs: evaluate_maps applies the lesion stage."""
    from synthetic_cmb import write_dataset

    from CMBDetectionLib.training.data import find_pairs
    from CMBDetectionLib.training.validation_scores import evaluate_maps

    pairs = find_pairs(write_dataset(tmp_path / "data", 1, shape_kji=(8, 48, 48)))
    truth_map = lambda image: (sitk.GetArrayFromImage(image) < 200).astype(np.float32)  # noqa: E731  CMBs and air
    plain = evaluate_maps(pairs, truth_map, (0.5,))[0.5][0]
    emptied = evaluate_maps(pairs, truth_map, (0.5,), lesion_mask=lambda image, m, t: np.zeros(m.shape, bool))[0.5][0]
    assert plain["lesion_sensitivity"] == 1.0 and plain["n_pred"] >= 3
    assert emptied["n_pred"] == 0 and emptied["lesion_sensitivity"] == 0.0
