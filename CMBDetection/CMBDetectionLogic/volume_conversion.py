"""The one place where a Slicer volume node becomes a SimpleITK image (and a label array goes back to MRML).

Slicer keeps geometry in an IJK-to-RAS matrix; SimpleITK in LPS origin/spacing/direction. The RAS/LPS flip goes
through ``CMBDetectionLib.imageio.volumes.ras_to_lps`` like everywhere else in the project.

>>> image = volume_to_image(volumeNode)            # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from CMBDetectionLib.imageio.volumes import ras_to_lps

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def ijk_to_ras(volume_node) -> np.ndarray:
    """The volume's 4x4 IJK-to-RAS matrix (its own geometry; parent transforms are not applied)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def volume_to_image(volume_node) -> sitk.Image:
    """Copy a scalar volume node into a float32 ``sitk.Image`` with the same voxels and LPS geometry."""
    if volume_node is None or volume_node.GetImageData() is None:
        raise ValueError("the input volume holds no image data; load an SWI volume first.")
    array = slicer.util.arrayFromVolume(volume_node)
    if array.ndim != 3:
        raise ValueError(f"volume {volume_node.GetName()!r} has {array.ndim} dimensions per voxel; a scalar 3D volume is needed.")
    matrix = ijk_to_ras(volume_node)
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(ras_to_lps(matrix[:3, 3]).tolist())
    image.SetDirection((_RAS_TO_LPS @ (matrix[:3, :3] / spacing)).ravel().tolist())
    return image


def labelmap_node_from_array(label_map: np.ndarray, reference_volume, name: str = "CMB labels"):
    """A new label map volume node holding ``label_map`` (``[k, j, i]``) on ``reference_volume``'s grid."""
    expected = slicer.util.arrayFromVolume(reference_volume).shape
    if label_map.shape != expected:
        raise ValueError(f"label map shape {label_map.shape} does not match the input volume {expected}.")
    node = reference_volume.GetScene().AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
    node.CopyOrientation(reference_volume)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(label_map, dtype=np.int32 if label_map.max() > 32767 else np.int16))
    return node


def labelmap_from_segments(segmentation_node, reference_volume, segment_ids: dict[int, str]) -> np.ndarray:
    """``[k, j, i]`` label array on ``reference_volume``'s grid: each segment's voxels set to its label."""
    label_map = np.zeros(slicer.util.arrayFromVolume(reference_volume).shape, np.int32)
    for label, segment_id in segment_ids.items():
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation_node, segment_id, reference_volume)
        label_map[mask > 0] = label
    return label_map
