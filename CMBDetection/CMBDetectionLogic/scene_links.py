"""How one run's result nodes are tied to their input volume in the scene: subject hierarchy and node references.

Result nodes go under the input's study (its parent item in the subject hierarchy), as DICOM SEG export expects,
and each carries MRML node references (kept and remapped when a scene is saved to ``.mrb`` and loaded again) to
the input volume and, from the segmentation, to its points and tables, so the results can be found again.

>>> place_under_study(nodes, volumeNode); link(nodes, volumeNode)      # doctest: +SKIP
>>> [found.segmentation for _, found in saved_results(scene)]         # doctest: +SKIP
[<segmentation node>]
"""

from __future__ import annotations

from collections.abc import Iterator

import slicer

from .result_nodes import ResultNodes

INPUT_ROLE = "CMBDetectionInputVolume"
_PART_ROLES = {"points": "CMBDetectionPoints", "lesion_table": "CMBDetectionLesionTable", "mars_table": "CMBDetectionMarsTable"}


def place_under_study(nodes: ResultNodes, volume_node) -> None:
    """Put each result node's subject-hierarchy item beside the input volume's (under its study, if any)."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(volume_node.GetScene())
    volume_item = hierarchy.GetItemByDataNode(volume_node)
    if not volume_item:
        return
    parent = hierarchy.GetItemParent(volume_item)
    for node in nodes:
        item = hierarchy.GetItemByDataNode(node) or hierarchy.CreateItem(parent, node)
        hierarchy.SetItemParent(item, parent)


def link(nodes: ResultNodes, volume_node) -> None:
    """Node references from every result node to the input, and from the segmentation to the other three."""
    for node in nodes:
        node.SetNodeReferenceID(INPUT_ROLE, volume_node.GetID())
    for part, role in _PART_ROLES.items():
        nodes.segmentation.SetNodeReferenceID(role, getattr(nodes, part).GetID())


def saved_results(scene) -> Iterator[tuple[object, ResultNodes]]:
    """(input volume, result nodes) of every complete set of linked results in ``scene``."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
        segmentation = scene.GetNthNodeByClass(index, "vtkMRMLSegmentationNode")
        volume = segmentation.GetNodeReference(INPUT_ROLE)
        parts = {part: segmentation.GetNodeReference(role) for part, role in _PART_ROLES.items()}
        if volume is not None and all(parts.values()):
            yield volume, ResultNodes(segmentation, **parts)
