"""``S_cmb.seg.nrrd``: a Slicer segmentation, the label map as one layer with one segment "CMB n" per lesion.

Written and read with ``slicerio``; each segment's label value is its lesion's id, and it carries the
Hemorrhage / Brain terminology (:mod:`terminology`), so Slicer can export it as DICOM SEG.

>>> import tempfile, pathlib, numpy as np, SimpleITK as sitk
>>> from CMBDetectionLib.results import Lesion
>>> reference = sitk.Image(4, 3, 2, sitk.sitkFloat32)
>>> labels = np.zeros((2, 3, 4), np.uint8); labels[1, 2, 3] = 5
>>> lesion = Lesion(5, (0.0, 0.0, 0.0), (3.0, 2.0, 1.0), 1.0, 1.0, 1, 0.9, 0.9)
>>> path = write_segmentation(labels, reference, [lesion], pathlib.Path(tempfile.mkdtemp()) / "S_cmb.seg.nrrd")
>>> read, names = read_segmentation(path, reference)
>>> int(read[1, 2, 3]), names
(5, {5: 'CMB 5'})
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.errors import OutputFileError
from CMBDetectionLib.imageio.geometry import ijk_to_lps
from CMBDetectionLib.outputs.grid import check_same_grid
from CMBDetectionLib.outputs.lesion_mask import label_dtype
from CMBDetectionLib.outputs.terminology import BLEEDING_COLOUR, TERMINOLOGY, lesion_name
from CMBDetectionLib.results import Lesion


def write_segmentation(label_map: np.ndarray, reference: sitk.Image, lesions: Sequence[Lesion],
                       path: str | os.PathLike) -> Path:
    """Write the ``[k, j, i]`` label map with a segment for each of ``lesions`` (their labels as label values)."""
    import slicerio

    segmentation = {
        "voxels": np.ascontiguousarray(label_map.transpose(2, 1, 0), dtype=label_dtype(label_map)),  # [i, j, k]
        "ijkToLPS": ijk_to_lps(reference),
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
        "segments": [
            {
                "id": f"CMB_{lesion.label}",
                "name": lesion_name(lesion.label),
                "labelValue": int(lesion.label),
                "layer": 0,
                "color": list(BLEEDING_COLOUR),
                "terminology": TERMINOLOGY,
                "status": "completed",
            }
            for lesion in lesions
        ],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    slicerio.write_segmentation(str(path), segmentation)
    return path


def read_segmentation(
    path: str | os.PathLike, reference: sitk.Image | None = None
) -> tuple[np.ndarray, dict[int, str]]:
    """(``[k, j, i]`` label map, segment name by label value); with ``reference``, checked to lie on its grid."""
    import slicerio

    try:
        segmentation = slicerio.read_segmentation(str(path))
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise OutputFileError(f"{path}: missing or not a readable segmentation ({exc}); write it again.") from None
    voxels = np.asarray(segmentation["voxels"])
    if voxels.ndim != 3:
        raise OutputFileError(f"{path}: segments overlap in several layers; merge them in Slicer's Segment Editor "
                              "so that each voxel belongs to one lesion.")
    if reference is not None:
        check_same_grid(path, voxels.shape, np.asarray(segmentation["ijkToLPS"]), reference)
    names = {int(segment["labelValue"]): segment["name"] for segment in segmentation["segments"]}
    return voxels.transpose(2, 1, 0), names
