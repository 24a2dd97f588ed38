"""Read back what a background ``cmb-detect`` run wrote: the lesion list and the label map.

The engine writes ``S_lesions.csv`` (one row per lesion, ``Lesion.as_row`` columns) and ``S_cmb.seg.nrrd``
(the label map, one layer, lesion labels as label values); see ``CMBDetectionLib.outputs.files``.

>>> lesions, label_map = read_engine_outputs("/tmp/run", "input", reference)    # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
from dataclasses import fields
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.results import Lesion

_TRIPLES = {"centre_ras": ("centre_R", "centre_A", "centre_S"), "centre_ijk": ("centre_i", "centre_j", "centre_k")}


def lesion_from_row(row: dict[str, str]) -> Lesion:
    """A :class:`Lesion` from one CSV row, each field converted to its declared type."""
    values = {}
    for field in fields(Lesion):
        if field.name in _TRIPLES:
            values[field.name] = tuple(float(row[column]) for column in _TRIPLES[field.name])
        elif field.type in ("int", int):
            values[field.name] = int(float(row[field.name]))
        elif field.type in ("float", float):
            values[field.name] = float(row[field.name])
        else:
            values[field.name] = row.get(field.name, "") or ""
    return Lesion(**values)


def read_lesions_csv(path: str | os.PathLike) -> list[Lesion]:
    with open(path, newline="") as handle:
        return [lesion_from_row(row) for row in csv.DictReader(handle)]


def read_engine_outputs(folder: str | os.PathLike, stem: str, reference: sitk.Image) -> tuple[list[Lesion], np.ndarray]:
    """(lesions, ``[k, j, i]`` label map) of a run on ``reference``; raises ``ValueError`` if files are missing or off-grid."""
    folder = Path(folder)
    csv_path, seg_path = folder / f"{stem}_lesions.csv", folder / f"{stem}_cmb.seg.nrrd"
    for path in (csv_path, seg_path):
        if not path.exists():
            raise ValueError(f"the detection run wrote no {path.name}; see the log above for its error.")
    lesions = read_lesions_csv(csv_path)
    label_map = sitk.GetArrayFromImage(sitk.ReadImage(str(seg_path)))
    if label_map.shape != tuple(reference.GetSize()[::-1]):
        raise ValueError(f"{seg_path.name}: shape {label_map.shape} differs from the input volume {reference.GetSize()[::-1]}.")
    missing = {lesion.label for lesion in lesions} - set(np.unique(label_map).tolist())
    if missing:
        raise ValueError(f"{seg_path.name}: lesions {sorted(missing)} listed in {csv_path.name} have no voxels.")
    return lesions, label_map
