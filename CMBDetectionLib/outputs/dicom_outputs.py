"""The DICOM files of a run on a DICOM series, as writers for the run's output set (``files``).

``S_cmb.seg.dcm`` (only when there is a lesion: a SEG needs a segment) and ``S_cmb.sr.dcm`` (always: "no CMB
found" is a finding too). The SEG is made first because the SR references its segments and tracking UIDs.

>>> writers = dicom_writers(DicomSource(datasets, result.provenance), label_map, lesions, mars_counts)  # doctest: +SKIP
>>> sorted(writers)                                                                                   # doctest: +SKIP
['dicom_seg', 'dicom_sr']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from CMBDetectionLib.outputs import dicom_seg, dicom_sr
from CMBDetectionLib.outputs.dicom_source import DicomSource
from CMBDetectionLib.results import Lesion


def dicom_writers(source: DicomSource, label_map: np.ndarray, lesions: Sequence[Lesion],
                  mars_counts: Sequence[dict[str, Any]] | None) -> dict[str, Callable[[Path], Path]]:
    """Writers by output kind (``dicom_seg``, ``dicom_sr``), each taking the path to write; objects are made now."""
    segmentation = dicom_seg.make_segmentation(label_map, lesions, source) if lesions else None
    report = dicom_sr.make_report(lesions, mars_counts, source, segmentation)
    writers: dict[str, Callable[[Path], Path]] = {"dicom_sr": lambda path: dicom_sr.write_dicom_sr(report, path)}
    if segmentation is not None:
        writers["dicom_seg"] = lambda path: dicom_seg.write_dicom_seg(segmentation, path)
    return writers
