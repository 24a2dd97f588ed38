"""The segmentation node meets what Slicer's DICOM SEG export checks (QuantitativeReporting's
``DICOMSegmentationPlugin``, the plugin behind *Export to DICOM* for segmentations), as far as it runs headless:

- every segment's terminology entry deserializes to a category and a type (and here an anatomic region), each with
  code value, coding scheme and meaning (``checkTerminologyOfSegments``, ``createJSONFromTerminologyContext``);
- no segment is empty (empty ones are refused or skipped);
- the segmentation's reference-geometry node is the input volume, whose DICOM instance UIDs the export references
  (Slicer's DICOM loader sets them; this headless scene has no DICOM database, so that step is not run here).
"""

from __future__ import annotations

import pytest
from slicer_fixtures import count_by_side, fake_detector, fake_locator, make_volume
from slicer_harness import slicer, slicer_harness  # noqa: F401 (fixture)

from CMBDetectionLogic import DetectionLogic, DetectionSettings, RunStatus


@pytest.fixture
def detected(slicer_harness):  # noqa: F811
    slicer_harness.clear()
    volume = make_volume(slicer_harness.scene)
    logic = DetectionLogic(fake_detector, locate_factory=fake_locator, count_table=count_by_side, notify=print)
    outcome = logic.detect(volume, DetectionSettings(threshold=0.5))
    assert outcome.status is RunStatus.DONE
    return volume, outcome.results.nodes.segmentation


def _terminology(segment) -> str:
    return segment.GetTerminology() if hasattr(segment, "GetTerminology") else segment.GetTag(
        segment.GetTerminologyEntryTagName())


def test_segments_carry_the_codes_dicom_seg_export_needs(slicer_harness, detected):  # noqa: F811
    _, node = detected
    terminologies = slicer_harness.logics["Terminologies"]
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() > 0
    for index in range(segmentation.GetNumberOfSegments()):
        entry = slicer.vtkSlicerTerminologyEntry()
        assert terminologies.DeserializeTerminologyEntry(_terminology(segmentation.GetNthSegment(index)), entry)
        codes = [(item.GetCodingSchemeDesignator(), item.GetCodeValue(), item.GetCodeMeaning()) for item in
                 (entry.GetCategoryObject(), entry.GetTypeObject(), entry.GetAnatomicRegionObject())]
        assert [code[:2] for code in codes] == [("SCT", "49755003"), ("SCT", "50960005"), ("SCT", "12738006")]
        assert all(meaning for _, _, meaning in codes)


def test_segments_are_not_empty_and_lie_on_the_input_volume(detected):
    volume, node = detected
    assert node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole()) is volume
    segmentation = node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        assert slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, volume).sum() > 0


def test_detections_are_automatic_and_clicked_lesions_semiautomatic(slicer_harness, detected):  # noqa: F811
    """Slicer's DICOM SEG export writes MANUAL for a segment without these tags."""
    import vtk

    from CMBDetectionLogic.result_nodes import ALGORITHM_NAME_TAG, ALGORITHM_TYPE_TAG, add_segment

    volume, node = detected
    segmentation = node.GetSegmentation()

    def tags(segment_id: str) -> tuple[str, str]:
        kind, name = vtk.mutable(""), vtk.mutable("")
        segment = segmentation.GetSegment(segment_id)
        assert segment.GetTag(ALGORITHM_TYPE_TAG, kind) and segment.GetTag(ALGORITHM_NAME_TAG, name)
        return str(kind), str(name)

    assert {tags(segment_id) for segment_id in segmentation.GetSegmentIDs()} == {("AUTOMATIC", "CMBDetection")}
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, segmentation.GetNthSegmentID(0), volume)
    added = add_segment(node, volume, 99, mask, "SEMIAUTOMATIC")
    assert tags(added) == ("SEMIAUTOMATIC", "CMBDetection")
