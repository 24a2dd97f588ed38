"""The four MRML nodes that show one detection: segmentation, markups points, lesion table, MARS count table.

Segments carry the engine's terminology (``CMBDetectionLib.outputs.terminology``: General Anatomy "Hemorrhage" in
region "Brain", so that DICOM SEG export works) and a tag with the lesion id; points are labelled like their
segment ("CMB n"), as in the engine's files. Every node carries the run's provenance as attributes
``CMBDetection.<key>``.

>>> nodes = create_result_nodes(volumeNode)                       # doctest: +SKIP
>>> nodes.segmentation.GetName()                                   # doctest: +SKIP
'swi CMB segmentation'
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import slicer
import vtk

from CMBDetectionLib.outputs.terminology import BLEEDING_COLOUR, POINT_LABEL_FORMAT, TERMINOLOGY_ENTRY, lesion_name
from CMBDetectionLib.results import Lesion

from .volume_conversion import labelmap_node_from_array

LESION_ID_TAG = "CMBDetection.LesionId"
ATTRIBUTE_PREFIX = "CMBDetection."


@dataclass
class ResultNodes:
    segmentation: Any
    points: Any
    lesion_table: Any
    mars_table: Any

    def __iter__(self) -> Iterator[Any]:
        return iter((self.segmentation, self.points, self.lesion_table, self.mars_table))


def create_result_nodes(volume_node) -> ResultNodes:
    """New, empty result nodes for ``volume_node``, in its scene and under its transform."""
    scene, base = volume_node.GetScene(), volume_node.GetName()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{base} CMB segmentation")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", f"{base} CMB points")
    points.CreateDefaultDisplayNodes()
    points.SetMarkupLabelFormat(POINT_LABEL_FORMAT)
    points.GetDisplayNode().SetSelectedColor(*BLEEDING_COLOUR)
    nodes = ResultNodes(
        segmentation,
        points,
        scene.AddNewNodeByClass("vtkMRMLTableNode", f"{base} CMB lesions"),
        scene.AddNewNodeByClass("vtkMRMLTableNode", f"{base} MARS counts"),
    )
    for node in (segmentation, points):  # results move with the input when it sits under a transform
        node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    return nodes


def set_provenance(nodes: ResultNodes, provenance: dict[str, Any]) -> None:
    """Method, model name and version, threshold (and whether it applied to the 3D filter's lesion scores), device
    and date as node attributes (kept in .mrb scenes)."""
    values = {
        "Method": provenance.get("method", ""),
        "ModelName": provenance.get("model_name", provenance.get("model", "")),
        "ModelVersion": provenance.get("model_version", ""),
        "Threshold": provenance.get("threshold", ""),
        # what ran (in-process result) or, for a background cmb-detect run, what was asked for
        "LesionFilter": provenance.get("lesion_filter", provenance.get("use_lesion_filter", "")),
        "Outlines": provenance.get("outlines", {True: "half signal loss", False: "detector"}.get(
            provenance.get("redraw_outlines"), "")),
        "Device": provenance.get("device_used", provenance.get("device", "")),  # what ran, when the engine said
        "Date": provenance.get("date") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for node in nodes:
        for key, value in values.items():
            node.SetAttribute(ATTRIBUTE_PREFIX + key, str(value))


# DICOM SEG's Segment Algorithm Type and Name, as Slicer's DICOM SEG export reads them from segment tags (it
# writes MANUAL when they are missing): detections are AUTOMATIC, lesions grown from a rater's click SEMIAUTOMATIC.
ALGORITHM_TYPE_TAG, ALGORITHM_NAME_TAG = "DICOM.SegmentAlgorithmType", "DICOM.SegmentAlgorithmName"
ALGORITHM_NAME, SEMIAUTOMATIC = "CMBDetection", "SEMIAUTOMATIC"


def style_segment(segment, label: int, algorithm_type: str = "AUTOMATIC") -> None:
    segment.SetName(lesion_name(label))
    segment.SetTag(ALGORITHM_TYPE_TAG, algorithm_type)
    segment.SetTag(ALGORITHM_NAME_TAG, ALGORITHM_NAME)
    segment.SetColor(*BLEEDING_COLOUR)
    segment.SetTag(LESION_ID_TAG, str(label))
    if hasattr(segment, "SetTerminology"):  # Slicer >= 5.10
        segment.SetTerminology(TERMINOLOGY_ENTRY)
    else:
        segment.SetTag(segment.GetTerminologyEntryTagName(), TERMINOLOGY_ENTRY)


def segment_ids_by_lesion(segmentation_node) -> dict[int, str]:
    """Segment ID of each lesion id (segments without our tag, e.g. drawn by hand, are left out)."""
    segmentation = segmentation_node.GetSegmentation()
    found = {}
    for segment_id in segmentation.GetSegmentIDs():
        value = vtk.reference("")
        if segmentation.GetSegment(segment_id).GetTag(LESION_ID_TAG, value):
            found[int(str(value))] = segment_id
    return found


def fill_segments(segmentation_node, volume_node, label_map: np.ndarray, labels: list[int]) -> None:
    """Replace all segments by one per lesion label, imported from ``label_map`` in one pass."""
    segmentation = segmentation_node.GetSegmentation()
    segmentation.RemoveAllSegments()
    if not labels:
        return
    labelmap_node = labelmap_node_from_array(label_map, volume_node)
    try:
        logic = slicer.modules.segmentations.logic()
        if not logic.ImportLabelmapToSegmentationNode(labelmap_node, segmentation_node, ""):
            raise RuntimeError("importing the lesion label map into the segmentation failed")
    finally:
        volume_node.GetScene().RemoveNode(labelmap_node)
    for segment_id in segmentation.GetSegmentIDs():
        segment = segmentation.GetSegment(segment_id)
        style_segment(segment, segment.GetLabelValue())


def add_segment(segmentation_node, volume_node, label: int, mask: np.ndarray, algorithm_type: str = "AUTOMATIC") -> str:
    """Add one lesion's segment from a ``[k, j, i]`` mask on the volume's grid; returns its segment ID."""
    segment_id = segmentation_node.GetSegmentation().AddEmptySegment("", lesion_name(label), BLEEDING_COLOUR)
    style_segment(segmentation_node.GetSegmentation().GetSegment(segment_id), label, algorithm_type)
    slicer.util.updateSegmentBinaryLabelmapFromArray(
        mask.astype(np.uint8, copy=False), segmentation_node, segment_id, volume_node
    )
    return segment_id


def add_point(points_node, lesion: Lesion) -> str:
    """Add a lesion's point; returns the control point ID."""
    index = points_node.AddControlPoint(list(lesion.centre_ras), lesion_name(lesion.label))
    return points_node.GetNthControlPointID(index)
