"""The Slicer module's logic on a real (headless) MRML scene: results in MRML, corrections kept in sync, export.

Detection is a fast fake detector (dark blobs below an intensity) so the tests check the module, not a model.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
from slicer_fixtures import BLOBS_KJI, SHAPE, count_by_side, fake_detector, fake_locator, make_volume  # noqa: F401
from slicer_harness import slicer, slicer_harness  # noqa: F401 (fixture)

from CMBDetectionLib.imageio.volumes import index_to_ras, lps_to_ras
from CMBDetectionLogic import DetectionLogic, DetectionSettings, RunStatus
from CMBDetectionLogic.result_nodes import LESION_ID_TAG, TERMINOLOGY_ENTRY, segment_ids_by_lesion
from CMBDetectionLogic.volume_conversion import volume_to_image


@pytest.fixture
def scene(slicer_harness):  # noqa: F811
    slicer_harness.clear()
    return slicer_harness.scene


@pytest.fixture
def logic():
    messages: list[str] = []
    logic = DetectionLogic(fake_detector, locate_factory=fake_locator, count_table=count_by_side, notify=messages.append)
    logic.messages = messages
    return logic


@pytest.fixture
def detected(scene, logic):
    volume = make_volume(scene)
    outcome = logic.detect(volume, DetectionSettings(threshold=0.5))
    assert outcome.status is RunStatus.DONE
    return volume, outcome.results


def counted(results) -> int:
    table = results.nodes.mars_table
    return sum(int(table.GetCellText(r, c)) for r in range(table.GetNumberOfRows()) for c in (1, 2))


def consistent(results) -> list[int]:
    """Lesion ids present in all three views (asserting the views agree)."""
    segments = sorted(segment_ids_by_lesion(results.nodes.segmentation))
    points = results.nodes.points
    point_labels = sorted(int(points.GetNthControlPointLabel(i).split()[1]) for i in range(points.GetNumberOfControlPoints()))
    table = results.nodes.lesion_table
    accepted = table.GetColumnIndex("accepted")
    ticked = sorted(int(table.GetCellText(r, 0)) for r in range(table.GetNumberOfRows()) if table.GetCellText(r, accepted) == "1")
    assert segments == point_labels == ticked == results.accepted_labels()
    assert counted(results) == len(segments)
    return segments


def test_volume_geometry_round_trips(scene):
    volume = make_volume(scene)
    image = volume_to_image(volume)
    assert image.GetSize() == SHAPE[::-1]
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), slicer.util.arrayFromVolume(volume))
    ijk_to_ras = vtk_matrix(volume)
    for ijk in [(0, 0, 0), (49, 39, 29), (10, 20, 5)]:
        expected = (ijk_to_ras @ [*ijk, 1])[:3]
        np.testing.assert_allclose(index_to_ras(image, ijk), expected, atol=1e-6)


def vtk_matrix(volume) -> np.ndarray:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def test_detection_builds_three_linked_nodes(detected):
    volume, results = detected
    assert consistent(results) == [1, 2, 3]
    segmentation = results.nodes.segmentation.GetSegmentation()
    ras_to_ijk = np.linalg.inv(vtk_matrix(volume))
    for label, segment_id in segment_ids_by_lesion(results.nodes.segmentation).items():
        segment = segmentation.GetSegment(segment_id)
        assert segment.GetName() == f"CMB {label}"
        assert segment.GetTerminology() == TERMINOLOGY_ENTRY
        lesion = results.lesions[label]
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(results.nodes.segmentation, segment_id, volume)
        assert mask.sum() == lesion.n_voxels == 27
        i, j, k = np.round(ras_to_ijk @ [*lesion.centre_ras, 1])[:3].astype(int)
        assert (k, j, i) in BLOBS_KJI and mask[k, j, i] == 1
    points = results.nodes.points
    for n in range(points.GetNumberOfControlPoints()):
        label = int(points.GetNthControlPointLabel(n).split()[1])
        np.testing.assert_allclose(points.GetNthControlPointPosition(n), results.lesions[label].centre_ras, atol=1e-3)
    table = results.nodes.lesion_table
    assert table.GetColumnType("diameter") == 11 and table.GetColumnUnitLabel("diameter") == "mm"  # VTK_DOUBLE
    for node in results.nodes:
        assert node.GetAttribute("CMBDetection.Method") == "unet"
        assert node.GetAttribute("CMBDetection.ModelName") == "fake-dark-blobs"
        assert node.GetAttribute("CMBDetection.Threshold") == "0.5"
        assert node.GetAttribute("CMBDetection.LesionFilter") == "True"  # asked for (the fake detector reports none)
        assert node.GetAttribute("CMBDetection.Outlines") == "half signal loss"
        assert node.GetAttribute("CMBDetection.Date")


def test_terminology_is_known_to_slicer(slicer_harness, detected):  # noqa: F811
    terminologies = slicer_harness.logics["Terminologies"]
    entry = slicer.vtkSlicerTerminologyEntry()
    assert terminologies.DeserializeTerminologyEntry(TERMINOLOGY_ENTRY, entry)
    assert entry.GetTypeObject().GetCodeValue() == "50960005"
    assert entry.GetAnatomicRegionObject().GetCodeValue() == "12738006"


def test_deleting_a_point_rejects_the_lesion_everywhere(detected):
    _, results = detected
    points = results.nodes.points
    index = next(i for i in range(points.GetNumberOfControlPoints()) if points.GetNthControlPointLabel(i) == "CMB 2")
    points.RemoveNthControlPoint(index)
    assert consistent(results) == [1, 3]
    assert results.nodes.lesion_table.GetNumberOfRows() == 3  # the rejected row stays, unticked
    assert results.corrected


def test_deleting_a_segment_rejects_the_lesion_everywhere(detected):
    _, results = detected
    results.nodes.segmentation.GetSegmentation().RemoveSegment(segment_ids_by_lesion(results.nodes.segmentation)[1])
    assert consistent(results) == [2, 3]


def test_unticking_then_ticking_in_the_table_rejects_then_restores(detected):
    volume, results = detected
    table = results.nodes.lesion_table
    accepted = table.GetColumnIndex("accepted")
    table.SetCellText(2, accepted, "0")
    assert consistent(results) == [1, 2]
    table.SetCellText(2, accepted, "1")
    assert consistent(results) == [1, 2, 3]
    restored = segment_ids_by_lesion(results.nodes.segmentation)[3]
    assert slicer.util.arrayFromSegmentBinaryLabelmap(results.nodes.segmentation, restored, volume).sum() == 27


def test_placing_a_point_on_a_dark_blob_adds_a_grown_lesion(scene, detected):
    volume, results = detected
    results.reject(3)
    centre = results.lesions[3].centre_ras
    results.nodes.points.AddControlPoint([centre[0] + 0.5, centre[1], centre[2]], "")  # a click slightly off-centre
    assert consistent(results) == [1, 2, 4]
    added = results.lesions[4]
    assert added.n_voxels == 27 and results.source[4] == "rater" and added.certainty == "definite"
    assert added.region == "frontal" and added.side == results.lesions[3].side
    np.testing.assert_allclose(added.centre_ras, centre, atol=1e-3)
    assert np.isnan(added.mean_probability)


def test_placing_a_point_off_any_blob_is_refused_with_a_message(logic, detected):
    _, results = detected
    results.nodes.points.AddControlPoint(list(results.lesions[1].centre_ras + np.array([0.0, 0.0, 12.0])), "")
    assert consistent(results) == [1, 2, 3]
    assert logic.messages and "dark" in logic.messages[-1]


def test_editing_region_and_side_updates_the_counts(detected):
    _, results = detected
    table = results.nodes.lesion_table
    table.SetCellText(0, table.GetColumnIndex("region"), "thalamus")
    assert results.lesions[1].region == "thalamus" and results.lesions[1].category == "deep"
    assert table.GetCellText(0, table.GetColumnIndex("category")) == "deep"
    mars = results.nodes.mars_table
    regions = [mars.GetCellText(r, 0) for r in range(mars.GetNumberOfRows())]
    assert regions == ["frontal", "thalamus"]
    side = results.lesions[1].side
    other = "left" if side == "right" else "right"
    table.SetCellText(0, table.GetColumnIndex("side"), other)
    assert results.lesions[1].side == other
    row = regions.index("thalamus")
    assert mars.GetCellText(row, 1 if other == "left" else 2) == "1"
    consistent(results)


def test_an_invalid_edit_is_put_back(logic, detected):
    _, results = detected
    table = results.nodes.lesion_table
    table.SetCellText(0, table.GetColumnIndex("certainty"), "maybe")
    assert table.GetCellText(0, table.GetColumnIndex("certainty")) == "definite"
    assert "not a valid certainty" in logic.messages[-1]


def test_running_again_over_corrections_asks_first(logic, detected):
    volume, results = detected
    results.reject(1)
    outcome = logic.detect(volume, DetectionSettings())
    assert outcome.status is RunStatus.WOULD_OVERWRITE
    assert consistent(results) == [2, 3]
    outcome = logic.detect(volume, DetectionSettings(), overwrite=True)
    assert outcome.status is RunStatus.DONE and outcome.results is results
    assert consistent(results) == [1, 2, 3] and not results.corrected


@pytest.mark.parametrize("failure", ["error", "cancel"])
def test_a_failed_or_cancelled_run_keeps_earlier_results(scene, detected, failure):
    volume, results = detected
    results.reject(2)

    def broken(image, **kwargs):
        if failure == "cancel":
            from CMBDetectionLib.errors import DetectionCancelled

            raise DetectionCancelled("cancelled")
        raise RuntimeError("model file damaged")

    logic = DetectionLogic(broken, locate_factory=None, count_table=count_by_side)
    logic._results = {volume.GetID(): results}
    outcome = logic.detect(volume, DetectionSettings(), overwrite=True)
    assert outcome.status is (RunStatus.CANCELLED if failure == "cancel" else RunStatus.FAILED)
    assert consistent(results) == [1, 3]
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1


def test_export_writes_files_that_reload_on_the_input_grid(tmp_path, logic, detected):
    slicerio = pytest.importorskip("slicerio")
    volume, results = detected
    results.reject(2)
    paths = logic.export(volume, tmp_path, "case")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in paths.values()
    )
    reference = volume_to_image(volume)
    labels = sitk.ReadImage(str(paths["mask"]))
    assert labels.GetSize() == reference.GetSize()
    np.testing.assert_allclose(labels.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(labels.GetDirection(), reference.GetDirection(), atol=1e-6)
    array = sitk.GetArrayFromImage(labels)
    assert sorted(np.unique(array).tolist()) == [0, 1, 3]
    for label, (k, j, i) in zip((1, 3), (BLOBS_KJI[0], BLOBS_KJI[2])):
        assert array[k, j, i] == label and (array == label).sum() == 27
    segmentation = slicerio.read_segmentation(str(paths["segmentation"]))
    names = sorted(segment["name"] for segment in segmentation["segments"])
    assert names == ["CMB 1", "CMB 3"]
    for segment in segmentation["segments"]:
        assert segment["terminology"]["type"][:2] == ["SCT", "50960005"]  # Hemorrhage
        assert segment["terminology"]["anatomicRegion"][:2] == ["SCT", "12738006"]  # Brain
    markups = json.loads(paths["markups"].read_text())["markups"][0]
    assert markups["coordinateSystem"] == "LPS"
    for point in markups["controlPoints"]:
        label = int(point["label"].split()[1])
        np.testing.assert_allclose(lps_to_ras(point["position"]), results.lesions[label].centre_ras, atol=1e-3)
    with open(paths["lesions_csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["id"], row["accepted"]) for row in rows] == [("1", "1"), ("2", "0"), ("3", "1")]
    assert float(rows[0]["diameter_mm"]) == pytest.approx(results.lesions[1].diameter_mm)
    assert "frontal" in paths["mars_csv"].read_text()


def test_segment_ids_are_tagged_with_lesion_ids(detected):
    _, results = detected
    segmentation = results.nodes.segmentation.GetSegmentation()
    assert all(segmentation.GetSegment(sid).HasTag(LESION_ID_TAG) for sid in segmentation.GetSegmentIDs())
