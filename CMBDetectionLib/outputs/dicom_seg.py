"""``S_cmb.seg.dcm``: the lesions as a DICOM Segmentation (highdicom), one segment "CMB n" per lesion.

Each segment is coded as every output codes a lesion (:mod:`terminology`: SNOMED CT *Hemorrhage* in the *Brain*),
with the lesion's name as tracking identifier and a fresh tracking UID (the SR's measurement group of that lesion
carries the same).
The SEG lies in the source study, references the source series and its frame of reference, and its frames lie on
the source slices (only slices a lesion crosses are stored). It is a research result (content qualification).
No lesion, no SEG: DICOM requires at least one segment.

>>> seg = make_segmentation(label_map, lesions, DicomSource(datasets, result.provenance))   # doctest: +SKIP
>>> write_dicom_seg(seg, "out/S_cmb.seg.dcm")                                                # doctest: +SKIP
>>> labels, names = read_dicom_seg("out/S_cmb.seg.dcm", datasets)                            # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from CMBDetectionLib import __version__
from CMBDetectionLib.errors import OutputFileError
from CMBDetectionLib.outputs.dicom_source import DEVICE_SERIAL_NUMBER, MANUFACTURER, DicomSource
from CMBDetectionLib.outputs.lesion_mask import label_dtype
from CMBDetectionLib.outputs.terminology import BLEEDING_COLOUR, CATEGORY, REGION, TYPE, dicom_code, lesion_name
from CMBDetectionLib.results import Lesion

#: Series number of the SEG in its study (the SR is the next one).
SEG_SERIES_NUMBER = 9901
_LESION_NAME = re.compile(r"CMB (\d+)$")


def make_segmentation(label_map: np.ndarray, lesions: Sequence[Lesion], source: DicomSource) -> Any:
    """A ``highdicom.seg.Segmentation`` of the ``[k, j, i]`` label map, one segment per lesion (at least one)."""
    import highdicom as hd

    source.check_grid(label_map)
    if not lesions:
        raise ValueError("a DICOM SEG needs at least one segment; write none when no lesion was found.")
    segment_of = np.zeros(int(label_map.max(initial=0)) + 1, label_dtype(label_map))
    for number, lesion in enumerate(lesions, start=1):  # segment numbers must run 1..n; lesion labels may not
        segment_of[lesion.label] = number
    return hd.seg.Segmentation(
        source_images=list(source.datasets),
        pixel_array=segment_of[label_map],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_segment(number, lesion, source) for number, lesion in enumerate(lesions, start=1)],
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=source.algorithm_name,
        software_versions=__version__,
        device_serial_number=DEVICE_SERIAL_NUMBER,
        content_label="CMB",
        content_description="Cerebral microbleeds",
        series_description="CMB segmentation (research)",
        content_qualification=hd.ContentQualificationValues.RESEARCH,
    )


def _segment(number: int, lesion: Lesion, source: DicomSource) -> Any:
    """Segment ``number``: lesion ``lesion.label`` coded as a haemorrhage in the brain, found by the algorithm."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=lesion_name(lesion.label),
        segmented_property_category=dicom_code(CATEGORY),
        segmented_property_type=dicom_code(TYPE),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=source.algorithm_name, family=codes.DCM.ArtificialIntelligence, version=source.algorithm_version,
            parameters=source.algorithm_parameters or None),
        tracking_id=lesion_name(lesion.label),
        tracking_uid=hd.UID(),
        anatomic_regions=[dicom_code(REGION)],
        display_color=hd.color.CIELabColor.from_rgb(*(round(255 * c) for c in BLEEDING_COLOUR)),
    )


def write_dicom_seg(segmentation: Any, path: str | os.PathLike) -> Path:
    """Save a segmentation made by :func:`make_segmentation` as a DICOM file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    segmentation.save_as(str(path))
    return path


def read_dicom_seg(path: str | os.PathLike, datasets: Sequence[Any]) -> tuple[np.ndarray, dict[int, str]]:
    """(``[k, j, i]`` label map on the source series ``datasets``' slices, segment name by lesion label).

    Voxels of segment "CMB n" hold ``n``. Raises ``OutputFileError`` when the file is not a readable SEG of that
    series, or a segment is not named "CMB n".
    """
    import highdicom as hd

    try:
        segmentation = hd.seg.segread(str(path))
        numbers = segmentation.get_segment_numbers()
        names = {n: segmentation.get_segment_description(n).segment_label for n in numbers}
        pixels = segmentation.get_pixels_by_source_instance(
            [ds.SOPInstanceUID for ds in datasets], combine_segments=True, assert_missing_frames_are_empty=True)
    except (OSError, ValueError, AttributeError, KeyError) as exc:
        raise OutputFileError(f"{path}: not a readable DICOM SEG of series {datasets[0].SeriesInstanceUID} "
                              f"({exc}); write it again.") from None
    labels = {}
    for number, name in names.items():
        match = _LESION_NAME.match(name)
        if match is None:
            raise OutputFileError(f"{path}: segment {number} is named {name!r}, not 'CMB n'; "
                                  "give a SEG written by cmb-detect.")
        labels[number] = int(match.group(1))
    lookup = np.zeros(max(numbers) + 1, np.int64)
    lookup[list(labels)] = list(labels.values())
    label_map = lookup[pixels]
    return label_map.astype(label_dtype(label_map)), {label: names[n] for n, label in labels.items()}
