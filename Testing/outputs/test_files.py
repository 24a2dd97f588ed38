"""The set of a run's files: they reload with SimpleITK / slicerio on the input's geometry, agree with each
other, read back into what was written, and a re-run replaces the whole set of its stem."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from synthetic_cmb import synthetic_subject

from CMBDetectionLib.errors import OutputFileError
from CMBDetectionLib.imageio.volumes import index_to_ras, lps_to_ras
from CMBDetectionLib.lesions.extraction import extract_lesions, label_components
from CMBDetectionLib.mars.rating import count_table
from CMBDetectionLib.outputs.files import output_paths, read_outputs, write_outputs
from CMBDetectionLib.outputs.markups import read_markups
from CMBDetectionLib.outputs.segmentation import read_segmentation
from CMBDetectionLib.results import DetectionResult


def detection(seed: int = 4, rated: bool = True) -> tuple[sitk.Image, sitk.Image, DetectionResult]:
    """A synthetic subject detected perfectly (probability 0.9 inside each CMB), MARS-rated when ``rated``."""
    image, mask, _ = synthetic_subject(seed, direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
    probability = sitk.GetArrayFromImage(mask).astype(np.float32) * 0.9
    labels, lesions = extract_lesions(probability, image, 0.5)
    for lesion in lesions:
        lesion.region, lesion.category, lesion.certainty = "thalamus", "deep", "definite"
        lesion.side = "left" if lesion.centre_ras[0] < 0 else "right"
    counts = count_table(lesions) if rated else None
    return image, mask, DetectionResult(image, probability, labels, lesions, mars_counts=counts)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    image, mask, result = detection()
    paths = write_outputs(result, tmp_path_factory.mktemp("out"), "sub-01_swi", save_probability=True)
    return image, mask, result, paths


def test_mask_is_the_label_map_on_the_input_grid(written):
    image, mask, result, paths = written
    out = sitk.ReadImage(str(paths["mask"]))
    assert paths["mask"].name == "sub-01_swi_cmb.nii.gz"
    assert out.GetPixelID() == sitk.sitkUInt8
    assert out.GetSize() == image.GetSize()
    np.testing.assert_allclose(out.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(out.GetSpacing(), image.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(out.GetDirection(), image.GetDirection(), atol=1e-6)
    labels = sitk.GetArrayFromImage(out)
    np.testing.assert_array_equal(labels, result.label_map)
    np.testing.assert_array_equal(labels > 0, sitk.GetArrayFromImage(mask) > 0)  # > 0 is the CMB mask


def test_csv_centres_match_the_mask_components(written):
    image, mask, _, paths = written
    with open(paths["lesions_csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    labels, count = label_components(sitk.GetArrayFromImage(mask))
    assert len(rows) == count == 3
    mask_labels = sitk.GetArrayFromImage(sitk.ReadImage(str(paths["mask"])))
    for row in rows:
        assert row["schema_version"] == "1" and row["accepted"] == "1" and row["source"] == "model"
        ijk = np.argwhere(mask_labels == int(row["id"])).mean(axis=0)[::-1]
        np.testing.assert_allclose([float(row[f"centre_{a}"]) for a in "ijk"], ijk, atol=1e-3)
        np.testing.assert_allclose([float(row[f"centre_{a}"]) for a in "RAS"], index_to_ras(image, ijk), atol=1e-3)
        assert row["region"] == "thalamus" and row["side"] in ("left", "right")


def test_segmentation_reads_back_with_slicerio(written):
    image, mask, result, paths = written
    seg = slicerio.read_segmentation(str(paths["segmentation"]))
    assert [s["name"] for s in seg["segments"]] == [f"CMB {lesion.label}" for lesion in result.lesions]
    assert seg["segments"][0]["terminology"]["type"][1] == "50960005"
    assert seg["segments"][0]["terminology"]["anatomicRegion"][1] == "12738006"
    ijk_to_lps = np.asarray(seg["ijkToLPS"])
    expected = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    np.testing.assert_allclose(ijk_to_lps[:3, :3], expected, atol=1e-5)
    np.testing.assert_allclose(ijk_to_lps[:3, 3], image.GetOrigin(), atol=1e-5)
    labels, names = read_segmentation(paths["segmentation"], image)
    np.testing.assert_array_equal(labels, result.label_map)
    assert names == {lesion.label: f"CMB {lesion.label}" for lesion in result.lesions}
    for lesion in result.lesions:
        assert np.count_nonzero(labels == lesion.label) == lesion.n_voxels


def test_markups_points_are_lesion_centres_in_lps(written):
    _, _, result, paths = written
    markup = json.loads(paths["markups"].read_text())["markups"][0]
    assert markup["type"] == "Fiducial" and markup["coordinateSystem"] == "LPS"
    for point, lesion in zip(markup["controlPoints"], result.lesions, strict=True):
        np.testing.assert_allclose(lps_to_ras(point["position"]), lesion.centre_ras, atol=1e-3)
    assert [name for name, _ in read_markups(paths["markups"])] == [f"CMB {lesion.label}" for lesion in result.lesions]


def test_the_set_reads_back_as_written(written):
    image, _, result, paths = written
    files = read_outputs(paths["mask"].parent, "sub-01_swi", image)
    assert files.lesions == result.lesions
    np.testing.assert_array_equal(files.label_map, result.label_map)
    assert files.mars_counts == result.mars_counts
    assert files.mars_counts[-1]["total"] == 3
    np.testing.assert_allclose(files.probability, result.probability, atol=1e-6)


def test_no_lesions_still_gives_valid_files(tmp_path):
    image, _, _ = synthetic_subject(5, n_cmbs=1)
    probability = np.zeros(image.GetSize()[::-1], np.float32)
    labels, lesions = extract_lesions(probability, image, 0.5)
    paths = write_outputs(DetectionResult(image, probability, labels, lesions), tmp_path, "empty")
    assert sorted(paths) == ["lesions_csv", "markups", "mask", "segmentation"]
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(paths["mask"]))).max() == 0
    assert read_outputs(tmp_path, "empty", image).records == []
    assert slicerio.read_segmentation(str(paths["segmentation"]))["segments"] == []
    assert read_markups(paths["markups"]) == []


def test_a_rerun_replaces_the_whole_set_of_its_stem(tmp_path):
    _, _, rated = detection(4)
    _, _, unrated = detection(6, rated=False)
    write_outputs(rated, tmp_path, "S", save_probability=True)
    others = write_outputs(rated, tmp_path, "other")
    before = {path.name: path.read_bytes() for path in others.values()}
    paths = write_outputs(unrated, tmp_path, "S")  # like a --no-mars re-run without --save-probability
    assert sorted(paths) == ["lesions_csv", "markups", "mask", "segmentation"]
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert visible == sorted([*before, *(p.name for p in paths.values())])  # no stale S_mars.csv, S_prob.nii.gz
    assert {name: (tmp_path / name).read_bytes() for name in before} == before  # another stem is left alone
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no lock, staging or backup left
    assert len(read_outputs(tmp_path, "S", unrated.reference).records) == len(unrated.lesions)


def test_files_from_another_grid_or_run_are_refused(written, tmp_path):
    image, _, result, paths = written
    other, _, _ = synthetic_subject(4, spacing_ijk=(1.0, 1.0, 2.5))
    with pytest.raises(OutputFileError, match=r"not on the input volume's grid \(spacing .* differs"):
        read_outputs(paths["mask"].parent, "sub-01_swi", other)
    write_outputs(result, tmp_path, "S")
    rows = output_paths(tmp_path, "S")["lesions_csv"].read_text().splitlines()
    output_paths(tmp_path, "S")["lesions_csv"].write_text("\n".join(rows[:-1]) + "\n")  # one lesion's row lost
    with pytest.raises(OutputFileError, match=r"labels \[\d\] have no accepted row"):
        read_outputs(tmp_path, "S", image)
    with pytest.raises(OutputFileError, match="missing"):
        read_outputs(tmp_path, "nothing", image)
