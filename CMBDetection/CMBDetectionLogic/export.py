"""Write one detection's (corrected) results into a folder, in the formats the engine CLI writes.

``<stem>_cmb.seg.nrrd`` (segmentation), ``<stem>_cmb.nii.gz`` (label map, lesion ids as values),
``<stem>_lesions.csv`` (+ ``.schema.csv`` with column types), ``<stem>_mars.csv`` and ``<stem>_lesions.mrk.json``.

>>> paths = export_results(results, "/data/out")                  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import vtk

import slicer
from CMBDetectionLib.imageio.volumes import array_to_image

from .correction_sync import LesionResults
from .result_nodes import segment_ids_by_lesion
from .volume_conversion import volume_to_image


def _write(storage_class: str, node, path: Path) -> Path:
    storage = getattr(slicer, storage_class)()
    storage.SetFileName(str(path))
    if not storage.WriteData(node):
        raise OSError(f"could not write {path}; check that the folder is writable.")
    return path


def lesion_label_map(results: LesionResults) -> np.ndarray:
    """``[k, j, i]`` array on the input grid: each accepted lesion's id where its segment is."""
    volume, segmentation = results.volume_node, results.nodes.segmentation
    by_label = segment_ids_by_lesion(segmentation)
    labels = [label for label in results.accepted_labels() if label in by_label]
    shape = slicer.util.arrayFromVolume(volume).shape
    if not labels:
        return np.zeros(shape, np.uint16)
    segment_ids = vtk.vtkStringArray()
    for label in labels:
        segment_ids.InsertNextValue(by_label[label])
    labelmap_node = volume.GetScene().AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "CMB export")
    try:
        logic = slicer.modules.segmentations.logic()
        if not logic.ExportSegmentsToLabelmapNode(segmentation, segment_ids, labelmap_node, volume):
            raise RuntimeError("exporting the segmentation to a label map failed")
        ordinal = slicer.util.arrayFromVolume(labelmap_node)  # 1..n in segment_ids order
        return np.asarray([0, *labels], dtype=np.uint16)[ordinal]
    finally:
        volume.GetScene().RemoveNode(labelmap_node)


def export_results(results: LesionResults, folder: str | os.PathLike, stem: str | None = None) -> dict[str, Path]:
    """Write all five files; returns their paths by kind (same keys as ``CMBDetectionLib.outputs.files.output_paths``)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or results.volume_node.GetName().replace(" ", "_")
    nodes = results.nodes
    label_map = lesion_label_map(results)
    mask_path = out / f"{stem}_cmb.nii.gz"
    sitk.WriteImage(array_to_image(label_map, volume_to_image(results.volume_node)), str(mask_path), useCompression=True)
    return {
        "mask": mask_path,
        "segmentation": _write("vtkMRMLSegmentationStorageNode", nodes.segmentation, out / f"{stem}_cmb.seg.nrrd"),
        "lesions_csv": _write("vtkMRMLTableStorageNode", nodes.lesion_table, out / f"{stem}_lesions.csv"),
        "mars_csv": _write("vtkMRMLTableStorageNode", nodes.mars_table, out / f"{stem}_mars.csv"),
        "markups": _write("vtkMRMLMarkupsJsonStorageNode", nodes.points, out / f"{stem}_lesions.mrk.json"),
    }
