"""The files of one run for one input stem ``S``: their paths by kind, writing them as a set, reading them back.

- ``mask``: ``S_cmb.nii.gz``, the label map (lesion ``n`` holds ``n``), :mod:`lesion_mask`;
- ``lesions_csv``: ``S_lesions.csv``, one row per lesion in a versioned schema, :mod:`lesion_csv`;
- ``segmentation``: ``S_cmb.seg.nrrd``, a segment "CMB n" per accepted lesion, :mod:`segmentation`;
- ``markups``: ``S_lesions.mrk.json``, a point "CMB n" per accepted lesion, :mod:`markups`;
- ``mars_csv``: ``S_mars.csv``, the MARS counts, only when rating ran, :mod:`mars_table`;
- ``probability``: ``S_prob.nii.gz``, only when asked for, :mod:`probability_map`;
- ``dicom_seg``, ``dicom_sr``: ``S_cmb.seg.dcm``, ``S_cmb.sr.dcm``, only for a DICOM input, :mod:`dicom_outputs`.

``cmb-detect`` and the Slicer export both write through :func:`write_output_set`, under the rules of
:mod:`folder` (locked, staged, replaced as a set: files of ``S`` that a run does not write are removed).

>>> write_outputs(result, "out", "sub-01_swi")                      # doctest: +SKIP
{'mask': PosixPath('out/sub-01_swi_cmb.nii.gz'), ...}
>>> read_outputs("out", "sub-01_swi", reference).lesions            # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.errors import OutputError, OutputFileError
from CMBDetectionLib.outputs import lesion_csv, lesion_mask, markups, mars_table, probability_map, segmentation
from CMBDetectionLib.outputs.dicom_outputs import dicom_writers
from CMBDetectionLib.outputs.dicom_source import DicomSource
from CMBDetectionLib.outputs.folder import folder_lock, install, output_folder, recover_interrupted, staging_folder
from CMBDetectionLib.outputs.lesion_csv import LesionRecord
from CMBDetectionLib.outputs.stems import safe_stem
from CMBDetectionLib.results import DetectionResult, Lesion

SUFFIXES = {
    "mask": "_cmb.nii.gz",
    "lesions_csv": "_lesions.csv",
    "segmentation": "_cmb.seg.nrrd",
    "markups": "_lesions.mrk.json",
    "mars_csv": "_mars.csv",
    "probability": "_prob.nii.gz",
    "dicom_seg": "_cmb.seg.dcm",
    "dicom_sr": "_cmb.sr.dcm",
}


@dataclass
class OutputSet:
    """Everything a run's files hold, on ``reference``'s grid.

    ``label_map`` (``[k, j, i]``) holds the accepted lesions; ``records`` lists every lesion, rejected ones too.
    """

    reference: sitk.Image
    label_map: np.ndarray
    records: list[LesionRecord]
    mars_counts: list[dict[str, Any]] | None = None
    probability: np.ndarray | None = None
    dicom: DicomSource | None = None

    @classmethod
    def from_result(cls, result: DetectionResult, save_probability: bool = False,
                    dicom_datasets: list | None = None) -> OutputSet:
        """A detection's files: all its lesions accepted, found by the model; DICOM ones too given the source
        series' headers (``imageio.dicom_series``)."""
        return cls(result.reference, result.label_map, [LesionRecord(lesion) for lesion in result.lesions],
                   result.mars_counts, result.probability if save_probability else None,
                   DicomSource(dicom_datasets, result.provenance) if dicom_datasets else None)

    @property
    def lesions(self) -> list[Lesion]:
        return [record.lesion for record in self.records]

    def accepted_lesions(self) -> list[Lesion]:
        return [record.lesion for record in self.records if record.accepted]


def output_paths(out_dir: str | os.PathLike, stem: str) -> dict[str, Path]:
    """Every file a run may write for ``stem``, by kind."""
    return {kind: Path(out_dir) / f"{stem}{suffix}" for kind, suffix in SUFFIXES.items()}


def write_outputs(result: DetectionResult, out_dir: str | os.PathLike, stem: str,
                  save_probability: bool = False, dicom_datasets: list | None = None) -> dict[str, Path]:
    """Write a detection's files (see :func:`write_output_set`)."""
    return write_output_set(OutputSet.from_result(result, save_probability, dicom_datasets), out_dir, stem)


def write_output_set(files: OutputSet, out_dir: str | os.PathLike, stem: str) -> dict[str, Path]:
    """Replace the files of ``stem`` (made safe with :func:`stems.safe_stem`) in ``out_dir`` by ``files``.

    Returns the written paths by kind. Raises ``OutputError`` (one line, saying what to do) when the folder
    is busy or a file cannot be written; the folder then still holds its earlier set of ``stem``.
    """
    stem = safe_stem(stem)
    folder = output_folder(out_dir)
    try:
        with folder_lock(folder):
            recover_interrupted(folder)
            with staging_folder(folder, stem) as staging:
                staged = _write_each(files, output_paths(staging, stem))
                install(folder, stem, staged.values(), output_paths(folder, stem).values())
    except OutputError:
        raise
    except (OSError, RuntimeError) as exc:  # ITK reports a failed write as RuntimeError
        reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[-1][:200]
        raise OutputError(f"{folder}: could not write the results of {stem} ({reason}); its earlier results there "
                          "are unchanged. Free disk space or fix the folder's permissions, then run again.") from exc
    return {kind: folder / path.name for kind, path in staged.items()}


def _write_each(files: OutputSet, paths: dict[str, Path]) -> dict[str, Path]:
    """Write every file of the set to ``paths``; returns those written, by kind."""
    accepted = files.accepted_lesions()
    writers: dict[str, Callable[[Path], Path]] = {
        "mask": lambda path: lesion_mask.write_lesion_mask(files.label_map, files.reference, path),
        "lesions_csv": lambda path: lesion_csv.write_lesions_csv(files.records, path),
        "segmentation": lambda path: segmentation.write_segmentation(files.label_map, files.reference, accepted, path),
        "markups": lambda path: markups.write_markups(accepted, path),
    }
    if files.mars_counts is not None:
        writers["mars_csv"] = lambda path: mars_table.write_mars_table(files.mars_counts, path)
    if files.probability is not None:
        probability = files.probability
        writers["probability"] = lambda path: probability_map.write_probability_map(probability, files.reference, path)
    if files.dicom is not None:
        writers.update(dicom_writers(files.dicom, files.label_map, accepted, files.mars_counts))
    return {kind: write(paths[kind]) for kind, write in writers.items()}


def read_outputs(out_dir: str | os.PathLike, stem: str, reference: sitk.Image) -> OutputSet:
    """The set a run wrote for ``stem`` on ``reference``'s grid, checked: every lesion voxel has an accepted row.

    The segmentation and markups are views of the same lesions (read them with their modules).
    Raises ``OutputFileError`` naming the file that is missing, damaged or off the grid.
    """
    paths = output_paths(out_dir, safe_stem(stem))
    for kind in ("mask", "lesions_csv"):
        if not paths[kind].is_file():
            raise OutputFileError(f"{paths[kind]}: missing; the run that should have written it failed (see its log).")
    label_map = lesion_mask.read_lesion_mask(paths["mask"], reference)
    records = lesion_csv.read_lesions_csv(paths["lesions_csv"])
    unlisted = set(np.unique(label_map).tolist()) - {0} - {r.lesion.label for r in records if r.accepted}
    if unlisted:
        raise OutputFileError(f"{paths['mask']}: labels {sorted(unlisted)} have no accepted row in "
                              f"{paths['lesions_csv'].name}; the two files come from different runs, write them again.")
    mars = mars_table.read_mars_table(paths["mars_csv"]) if paths["mars_csv"].is_file() else None
    probability = (probability_map.read_probability_map(paths["probability"], reference)
                   if paths["probability"].is_file() else None)
    return OutputSet(reference, label_map, records, mars, probability)
