"""Write one detection's (corrected) results into a folder: the files ``cmb-detect`` writes, by the same writers.

``<stem>_cmb.nii.gz`` (label map of the accepted lesions), ``<stem>_lesions.csv`` (every lesion, with its
``accepted`` and ``source``), ``<stem>_cmb.seg.nrrd`` and ``<stem>_lesions.mrk.json`` (accepted lesions) and
``<stem>_mars.csv``, written as a set under the engine's output folder rules (``CMBDetectionLib.outputs``), then
``<stem>_report.html`` (``CMBDetectionLib.reports``). The
stem defaults to the volume's name made safe for every file system (``6: SWI`` becomes ``6_SWI``).

>>> paths = export_results(results, "/data/out")                  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from CMBDetectionLib.outputs.files import OutputSet, write_output_set
from CMBDetectionLib.outputs.lesion_csv import LesionRecord

from .correction_sync import LesionResults
from .result_nodes import ATTRIBUTE_PREFIX, segment_ids_by_lesion
from .volume_conversion import labelmap_from_segments, volume_to_image


def lesion_label_map(results: LesionResults) -> np.ndarray:
    """``[k, j, i]`` array on the input grid: each accepted lesion's id where its segment is (as edited)."""
    segmentation = results.nodes.segmentation
    by_label = segment_ids_by_lesion(segmentation)
    accepted = {label: by_label[label] for label in results.accepted_labels() if label in by_label}
    return labelmap_from_segments(segmentation, results.volume_node, accepted)


def export_results(results: LesionResults, folder: str | os.PathLike, stem: str | None = None) -> dict[str, Path]:
    """Write the files; returns their paths by kind (as ``CMBDetectionLib.outputs.files.write_output_set``)."""
    files = OutputSet(
        reference=volume_to_image(results.volume_node),
        label_map=lesion_label_map(results),
        records=[LesionRecord(lesion, results.accepted[label], results.source[label])
                 for label, lesion in results.lesions.items()],
        mars_counts=results.counts(),
    )
    paths = write_output_set(files, folder, stem or results.volume_node.GetName())
    # Imported here: reports need matplotlib and scikit-image, which the module's self-test must not.
    from CMBDetectionLib.reports.subject_report import SubjectReport, write_subject_report

    # The HTML report cmb-cohort writes, from the corrected lesions, beside the set as S_report.html.
    report = SubjectReport.from_output_set(files, results.volume_node.GetName(), node_provenance(results.nodes.segmentation))
    paths["report"] = write_subject_report(report, Path(str(paths["mask"]).removesuffix("_cmb.nii.gz") + "_report.html"))
    return paths


#: Report provenance keys and the node attributes ``result_nodes.set_provenance`` stores them in.
_PROVENANCE_ATTRIBUTES = {"method": "Method", "model_name": "ModelName", "model_version": "ModelVersion",
                          "threshold": "Threshold", "lesion_filter": "LesionFilter", "outlines": "Outlines",
                          "device": "Device"}


def node_provenance(node) -> dict[str, str]:
    """The run's provenance as a result node keeps it (empty values for a scene saved without them)."""
    return {key: node.GetAttribute(ATTRIBUTE_PREFIX + name) or "" for key, name in _PROVENANCE_ATTRIBUTES.items()}
