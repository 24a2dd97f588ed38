"""``S_cmb.sr.dcm``: the lesion list and MARS counts as a DICOM Structured Report, TID 1500 Measurement Report.

- One measurement group per lesion (TID 1411, volumetric ROI): tracking identifier "CMB n" with the UID its SEG
  segment carries, a reference to that segment, finding Hemorrhage; finding site = MARS region (SNOMED CT) with
  laterality; diameter (mm) and volume (mm3) in UCUM units; the model's confidence; MARS *definite* or *possible*.
- One group "CMB counts" (TID 1501): the number of CMBs found (0 is a finding too) and, when MARS rating ran,
  definite and possible CMBs per MARS category and overall.
- The algorithm's name, version and settings (TID 4019) in every group; the software is the observer device.

Confidence, certainty and the MARS counts have no standard code, so they use this software's private coding
scheme ``99CMBDET`` (declared in the file). Patient and study data are copied from the source series; the SR
lists that series (and the SEG) as evidence. Marked as a research result, complete and unverified.

>>> report = make_report(lesions, mars_counts, DicomSource(datasets, provenance), segmentation)  # doctest: +SKIP
>>> write_dicom_sr(report, "out/S_cmb.sr.dcm")                                                  # doctest: +SKIP
>>> [lesion.name for lesion in read_dicom_sr("out/S_cmb.sr.dcm").lesions]                        # doctest: +SKIP
['CMB 1', 'CMB 2']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from CMBDetectionLib import __version__
from CMBDetectionLib.errors import OutputFileError
from CMBDetectionLib.outputs.dicom_source import DEVICE_SERIAL_NUMBER, MANUFACTURER, DicomSource
from CMBDetectionLib.outputs.terminology import CATEGORY, TYPE, dicom_code, lesion_name
from CMBDetectionLib.results import Lesion

#: Series number of the SR in its study (the SEG's plus one).
SR_SERIES_NUMBER = 9902
PRIVATE_SCHEME = "99CMBDET"
COUNTS_GROUP = "CMB counts"
#: MARS region -> name of its SNOMED CT code in pydicom's ``codes.SCT`` (basal ganglia = caudate, putamen and
#: pallidum, which is the corpus striatum; deep and periventricular white matter is cerebral white matter).
REGION_CODE_NAMES = {
    "frontal": "FrontalLobe", "parietal": "ParietalLobe", "temporal": "TemporalLobe",
    "occipital": "OccipitalLobe", "insula": "Insula", "basal_ganglia": "CorpusStriatum", "thalamus": "Thalamus",
    "internal_capsule": "InternalCapsule", "external_capsule": "ExternalCapsule",
    "corpus_callosum": "CorpusCallosum", "deep_white_matter": "CerebralWhiteMatter", "brainstem": "BrainStem",
    "cerebellum": "Cerebellum",
}
SIDE_CODE_NAMES = {"left": "Left", "right": "Right"}


@dataclass
class ReportedLesion:
    """One lesion's measurement group, as read back; MARS fields are "" when the report has none."""

    name: str
    tracking_uid: str
    diameter_mm: float
    volume_mm3: float
    confidence: float
    region: str = ""
    side: str = ""
    certainty: str = ""
    segment_number: int | None = None


@dataclass
class Report:
    """What :func:`read_dicom_sr` finds: the lesion groups, the number of CMBs, the MARS counts by
    ``"<category> <certainty>"`` (empty without MARS) and the algorithm's (name, version)."""

    lesions: list[ReportedLesion]
    n_lesions: int = 0
    mars_counts: dict[str, int] = field(default_factory=dict)
    algorithm: tuple[str, str] = ("", "")


def _private(value: str, meaning: str) -> Any:
    from pydicom.sr.coding import Code

    return Code(value, PRIVATE_SCHEME, meaning)


def _confidence_code() -> Any:
    return _private("confidence", "Model confidence")


def _certainty_code() -> Any:
    return _private("mars-certainty", "MARS certainty")


def _mars_count_code(category: str, certainty: str) -> Any:
    return _private(f"mars-{category}-{certainty}", f"MARS {category} {certainty} CMB count")


def make_report(lesions: Sequence[Lesion], mars_counts: Sequence[dict[str, Any]] | None, source: DicomSource,
                segmentation: Any | None) -> Any:
    """A ``highdicom.sr.Comprehensive3DSR`` for ``lesions`` (segmented in ``segmentation``, None when none)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.sr.AlgorithmIdentification(
        name=source.algorithm_name, version=source.algorithm_version,
        parameters=[f"{key}={value}" for key, value in source.algorithm_parameters.items()] or None)
    groups = [_lesion_group(number, lesion, segmentation, algorithm) for number, lesion in enumerate(lesions, start=1)]
    groups.append(_counts_group(len(lesions), mars_counts, algorithm))
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=hd.UID.from_uuid(_device_uuid()), name=source.algorithm_name, manufacturer_name=MANUFACTURER,
        model_name=source.algorithm_name)
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device)),
        procedure_reported=codes.LN.BrainMRI,
        imaging_measurements=groups,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[*source.datasets, *([segmentation] if segmentation is not None else [])],
        content=report, series_instance_uid=hd.UID(), series_number=SR_SERIES_NUMBER, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        series_description="CMB report (research)", manufacturer_model_name=source.algorithm_name,
        software_versions=__version__, device_serial_number=DEVICE_SERIAL_NUMBER,
        content_qualification=hd.ContentQualificationValues.RESEARCH,
        coding_schemes=[hd.coding_schemes.CodingSchemeIdentificationItem(
            designator=PRIVATE_SCHEME, name="CMBDetection local codes", responsible_organization=MANUFACTURER)],
    )


def _device_uuid() -> str:
    """A UUID fixed per software version: the same observer device in every report of this version."""
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://github.com/cmbdetection/{__version__}"))


def _lesion_group(number: int, lesion: Lesion, segmentation: Any, algorithm: Any) -> Any:
    """TID 1411 group of lesion ``lesion`` (segment ``number`` of ``segmentation``)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    description = segmentation.get_segment_description(number)
    measurements = [
        hd.sr.Measurement(name=codes.SCT.Diameter, value=lesion.diameter_mm, unit=codes.UCUM.Millimeter,
                          algorithm_id=algorithm),
        hd.sr.Measurement(name=codes.SCT.Volume, value=lesion.volume_mm3, unit=codes.UCUM.CubicMillimeter,
                          algorithm_id=algorithm),
        hd.sr.Measurement(name=_confidence_code(), value=lesion.max_probability, unit=codes.UCUM.NoUnits,
                          algorithm_id=algorithm),
    ]
    certainty = ([hd.sr.QualitativeEvaluation(_certainty_code(), _private(lesion.certainty, lesion.certainty))]
                 if lesion.certainty else None)
    tracking = hd.sr.TrackingIdentifier(uid=description.tracking_uid, identifier=lesion_name(lesion.label))
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        referenced_segment=_referenced_segment(segmentation, number),
        finding_type=dicom_code(TYPE),
        finding_category=dicom_code(CATEGORY),
        algorithm_id=algorithm,
        finding_sites=_finding_sites(lesion),
        measurements=measurements,
        qualitative_evaluations=certainty,
    )


def _referenced_segment(segmentation: Any, number: int) -> Any:
    """Segment ``number`` of the SEG, with the source series as its source. Not highdicom's
    ``ReferencedSegment.from_segmentation``: it reads SegmentIdentificationSequence per frame, which a
    one-segment SEG keeps in the shared functional groups, so it fails on scans with a single CMB."""
    import highdicom as hd

    return hd.sr.ReferencedSegment(
        sop_class_uid=segmentation.SOPClassUID, sop_instance_uid=segmentation.SOPInstanceUID, segment_number=number,
        source_series=hd.sr.SourceSeriesForSegmentation(segmentation.ReferencedSeriesSequence[0].SeriesInstanceUID),
    )


def _finding_sites(lesion: Lesion) -> list[Any] | None:
    """The lesion's MARS region with its side; None when unrated or outside the brain (no region code)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if lesion.region not in REGION_CODE_NAMES:
        return None
    side = getattr(codes.SCT, SIDE_CODE_NAMES[lesion.side]) if lesion.side in SIDE_CODE_NAMES else None
    return [hd.sr.FindingSite(getattr(codes.SCT, REGION_CODE_NAMES[lesion.region]), laterality=side)]


def _counts_group(n_lesions: int, mars_counts: Sequence[dict[str, Any]] | None, algorithm: Any) -> Any:
    """TID 1501 group: the number of CMBs, then the MARS definite and possible counts per category and overall
    (the count table's rows of region "all")."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    unit = hd.sr.CodedConcept("{lesions}", "UCUM", "lesions")
    counts = [hd.sr.Measurement(name=codes.SCT.NumberOfLesions, value=n_lesions, unit=unit, algorithm_id=algorithm)]
    counts += [hd.sr.Measurement(name=_mars_count_code(row["category"], certainty), value=int(row[certainty]),
                                 unit=unit, algorithm_id=algorithm)
               for row in mars_counts or () if row["region"] == "all" for certainty in ("definite", "possible")]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=COUNTS_GROUP),
        finding_type=dicom_code(TYPE), algorithm_id=algorithm, measurements=counts)


def write_dicom_sr(report: Any, path: str | os.PathLike) -> Path:
    """Save a report made by :func:`make_report` as a DICOM file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    report.save_as(str(path))
    return path


def read_dicom_sr(path: str | os.PathLike) -> Report:
    """The lesion groups and counts of an SR written by :func:`write_dicom_sr`.

    Raises ``OutputFileError`` when the file is not a readable TID 1500 report.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    try:
        content = hd.sr.srread(str(path)).content
        lesion_groups = content.get_volumetric_roi_measurement_groups()
        counts_group = next(g for g in content.get_image_measurement_groups() if g.tracking_identifier == COUNTS_GROUP)
    except (OSError, ValueError, AttributeError, KeyError, StopIteration) as exc:
        raise OutputFileError(f"{path}: not a DICOM SR measurement report of cmb-detect ({exc!r}); "
                              "write it again.") from None
    counts = {m.name.value: int(m.value) for m in counts_group.get_measurements()}
    n_lesions = counts.pop(codes.SCT.NumberOfLesions.value)
    mars = {_count_key(value): n for value, n in counts.items()}
    return Report([_read_lesion(group) for group in lesion_groups], n_lesions, mars, _read_algorithm(counts_group))


def _read_lesion(group: Any) -> ReportedLesion:
    from pydicom.sr.codedict import codes

    def value(name: Any) -> float:
        return float(group.get_measurements(name=name)[0].value)

    sites = group.finding_sites
    regions = {getattr(codes.SCT, n).value: region for region, n in REGION_CODE_NAMES.items()}
    sides = {getattr(codes.SCT, n).value: side for side, n in SIDE_CODE_NAMES.items()}
    certainty = group.get_qualitative_evaluations(name=_certainty_code())
    segment = group.referenced_segment
    return ReportedLesion(
        name=str(group.tracking_identifier), tracking_uid=str(group.tracking_uid),
        diameter_mm=value(codes.SCT.Diameter), volume_mm3=value(codes.SCT.Volume), confidence=value(_confidence_code()),
        region=regions.get(sites[0].value.value, "") if sites else "",
        side=sides.get(sites[0].laterality.value, "") if sites and sites[0].laterality is not None else "",
        certainty=str(certainty[0].value.value) if certainty else "",
        segment_number=int(segment.referenced_segment_numbers[0]) if segment is not None else None,
    )


def _count_key(code_value: str) -> str:
    """``"<category> <certainty>"`` from a MARS count's private code value ``mars-<category>-<certainty>``."""
    _, category, certainty = code_value.split("-", 2)
    return f"{category} {certainty}"


def _read_algorithm(group: Any) -> tuple[str, str]:
    """(name, version) of the algorithm a group names (TID 4019), or ("", "")."""
    from pydicom.sr.codedict import codes

    texts = {item.ConceptNameCodeSequence[0].CodeValue: str(item.TextValue)
             for item in group[0].ContentSequence if item.ValueType == "TEXT"}  # the group's container's items
    return texts.get(codes.DCM.AlgorithmName.value, ""), texts.get(codes.DCM.AlgorithmVersion.value, "")
