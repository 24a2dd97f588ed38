"""Output files reload with SimpleITK / slicerio on the input's geometry; CSV and markups match the mask."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from synthetic_cmb import synthetic_subject

from CMBDetectionLib.lesions.extraction import extract_lesions, label_components
from CMBDetectionLib.outputs.files import write_outputs
from CMBDetectionLib.results import DetectionResult
from CMBDetectionLib.imageio.volumes import index_to_ras, lps_to_ras


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    image, mask, _ = synthetic_subject(4, direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
    probability = sitk.GetArrayFromImage(mask).astype(np.float32) * 0.9
    labels, lesions = extract_lesions(probability, image, 0.5)
    mars = [{"region": "lobar", "definite": 2, "possible": 1}]
    result = DetectionResult(image, probability, labels, lesions, {"mars_counts": mars})
    paths = write_outputs(result, tmp_path_factory.mktemp("out"), "sub-01_swi")
    return image, mask, result, paths


def test_mask_is_uint8_on_the_input_grid(written):
    image, mask, _, paths = written
    out = sitk.ReadImage(str(paths["mask"]))
    assert paths["mask"].name == "sub-01_swi_cmb.nii.gz"
    assert out.GetPixelID() == sitk.sitkUInt8
    assert out.GetSize() == image.GetSize()
    np.testing.assert_allclose(out.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(out.GetSpacing(), image.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(out.GetDirection(), image.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(mask))


def test_csv_centres_match_the_mask_components(written):
    image, mask, _, paths = written
    rows = list(csv.DictReader(open(paths["lesions_csv"])))
    labels, count = label_components(sitk.GetArrayFromImage(mask))
    assert len(rows) == count == 3
    for row in rows:
        kji = np.argwhere(labels == int(row["label"])).mean(axis=0)
        ijk = kji[::-1]
        np.testing.assert_allclose([float(row[f"centre_{a}"]) for a in "ijk"], ijk, atol=1e-3)
        np.testing.assert_allclose([float(row[f"centre_{a}"]) for a in "RAS"], index_to_ras(image, ijk), atol=1e-3)
    assert {"region", "side", "category", "certainty"} <= set(rows[0])


def test_segmentation_reads_back_with_slicerio(written):
    image, mask, result, paths = written
    seg = slicerio.read_segmentation(str(paths["segmentation"]))
    assert [s["name"] for s in seg["segments"]] == [f"CMB {l.label}" for l in result.lesions]
    assert seg["segments"][0]["terminology"]["type"][1] == "50960005"
    assert seg["segments"][0]["terminology"]["anatomicRegion"][1] == "12738006"
    ijk_to_lps = np.asarray(seg["ijkToLPS"])
    expected = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    np.testing.assert_allclose(ijk_to_lps[:3, :3], expected, atol=1e-5)
    np.testing.assert_allclose(ijk_to_lps[:3, 3], image.GetOrigin(), atol=1e-5)
    voxels = seg["voxels"]  # [i, j, k]
    np.testing.assert_array_equal(voxels.transpose(2, 1, 0) > 0, sitk.GetArrayFromImage(mask) > 0)
    for segment in seg["segments"]:
        lesion = next(l for l in result.lesions if f"CMB {l.label}" == segment["name"])
        assert np.count_nonzero(voxels == segment["labelValue"]) == lesion.n_voxels


def test_markups_points_are_lesion_centres_in_lps(written):
    _, _, result, paths = written
    doc = json.loads(paths["markups"].read_text())
    markup = doc["markups"][0]
    assert markup["type"] == "Fiducial" and markup["coordinateSystem"] == "LPS"
    points = markup["controlPoints"]
    assert [p["label"] for p in points] == [f"CMB {l.label}" for l in result.lesions]
    for point, lesion in zip(points, result.lesions):
        np.testing.assert_allclose(lps_to_ras(point["position"]), lesion.centre_ras, atol=1e-3)


def test_mars_table_written_when_rated(written):
    _, _, _, paths = written
    rows = list(csv.DictReader(open(paths["mars_csv"])))
    assert rows == [{"region": "lobar", "definite": "2", "possible": "1"}]


def test_no_lesions_still_gives_valid_files(tmp_path):
    image, _, _ = synthetic_subject(5, n_cmbs=1)
    probability = np.zeros(image.GetSize()[::-1], np.float32)
    labels, lesions = extract_lesions(probability, image, 0.5)
    paths = write_outputs(DetectionResult(image, probability, labels, lesions), tmp_path, "empty")
    assert "mars_csv" not in paths
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(paths["mask"]))).max() == 0
    assert list(csv.DictReader(open(paths["lesions_csv"]))) == []
    assert slicerio.read_segmentation(str(paths["segmentation"]))["segments"] == []
    assert json.loads(paths["markups"].read_text())["markups"][0]["controlPoints"] == []
