"""``S_lesions.csv``: one row per lesion, the same columns whoever writes it (``cmb-detect`` or the Slicer export).

Schema version :data:`SCHEMA_VERSION`, held in the first column of every row (``schema_version``), so any CSV
reader sees it and an older reader can refuse a newer file. Columns, in order:

``schema_version``; ``id`` (the lesion's value in ``S_cmb.nii.gz``; its segment and point are "CMB id");
``centre_R/A/S`` (centre of mass, RAS mm); ``centre_i/j/k`` (the same as a voxel index); ``diameter_mm`` (largest
extent along the image axes); ``volume_mm3``; ``n_voxels``; ``mean_probability``, ``max_probability`` (the map
that was thresholded: with the 3D filter, its lesion score); ``region``, ``category``, ``side``, ``certainty``
(MARS; empty when not rated); ``accepted`` (1, or 0 for a lesion a rater rejected: it is then absent from the
label map, segmentation and markups); ``source`` (``model`` or ``rater``).

>>> from CMBDetectionLib.results import Lesion
>>> import tempfile, pathlib
>>> lesion = Lesion(4, (1.5, -2.0, 30.25), (10.0, 20.0, 5.0), 3.2, 12.5, 10, 0.8, 0.95, "thalamus", "deep", "left")
>>> path = write_lesions_csv([LesionRecord(lesion)], pathlib.Path(tempfile.mkdtemp()) / "S_lesions.csv")
>>> path.read_text().splitlines()[1]
'1,4,1.5,-2.0,30.25,10.0,20.0,5.0,3.2,12.5,10,0.8,0.95,thalamus,deep,left,,1,model'
>>> read_lesions_csv(path) == [LesionRecord(lesion)]
True
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from CMBDetectionLib.errors import OutputFileError
from CMBDetectionLib.outputs.csv_files import read_csv, write_csv
from CMBDetectionLib.results import Lesion

SCHEMA_VERSION = 1
_CENTRE_RAS = ("centre_R", "centre_A", "centre_S")
_CENTRE_IJK = ("centre_i", "centre_j", "centre_k")
#: Lesion attributes stored as they are, with their type.
_PLAIN = {
    "diameter_mm": float, "volume_mm3": float, "n_voxels": int, "mean_probability": float, "max_probability": float,
    "region": str, "category": str, "side": str, "certainty": str,
}
COLUMNS = ("schema_version", "id", *_CENTRE_RAS, *_CENTRE_IJK, *_PLAIN, "accepted", "source")
SOURCES = ("model", "rater")
_KNOWN_VERSIONS = {str(version) for version in range(1, SCHEMA_VERSION + 1)}


class LesionRecord(NamedTuple):
    """A lesion with the two facts a review adds: whether it is accepted, and who found it."""

    lesion: Lesion
    accepted: bool = True
    source: str = "model"


def lesion_row(record: LesionRecord) -> dict[str, Any]:
    """The CSV row of one record (numbers as Python ints and floats, so they print the same everywhere)."""
    lesion = record.lesion
    return {
        "schema_version": SCHEMA_VERSION,
        "id": int(lesion.label),
        **{name: float(value) for name, value in zip(_CENTRE_RAS, lesion.centre_ras, strict=True)},
        **{name: float(value) for name, value in zip(_CENTRE_IJK, lesion.centre_ijk, strict=True)},
        **{name: kind(getattr(lesion, name)) for name, kind in _PLAIN.items()},
        "accepted": int(bool(record.accepted)),
        "source": record.source,
    }


def write_lesions_csv(records: Iterable[LesionRecord], path: str | os.PathLike) -> Path:
    """Write one row per record, in the given order."""
    return write_csv((lesion_row(record) for record in records), COLUMNS, path)


def read_lesions_csv(path: str | os.PathLike) -> list[LesionRecord]:
    """The records of a lesion CSV (schema version up to :data:`SCHEMA_VERSION`); else an ``OutputFileError``."""
    columns, rows = read_csv(path)
    missing = [name for name in COLUMNS if name not in columns]
    if missing:
        raise OutputFileError(f"{path}: not a CMBDetection lesion list (columns {', '.join(missing)} missing); "
                              "give the S_lesions.csv that cmb-detect or the Slicer export wrote.")
    return [_record(row, path, number) for number, row in enumerate(rows, start=2)]


def _record(row: dict[str, str], path: str | os.PathLike, line: int) -> LesionRecord:
    if row["schema_version"].strip() not in _KNOWN_VERSIONS:
        raise OutputFileError(f"{path}, line {line}: lesion list schema version {row['schema_version']!r}; this "
                              f"CMBDetection reads versions up to {SCHEMA_VERSION}, update it to read this file.")
    try:
        lesion = Lesion(
            label=int(row["id"]),
            centre_ras=tuple(float(row[name]) for name in _CENTRE_RAS),
            centre_ijk=tuple(float(row[name]) for name in _CENTRE_IJK),
            **{name: kind(row[name]) for name, kind in _PLAIN.items()},
        )
        accepted = {"1": True, "0": False}[row["accepted"].strip()]
    except (ValueError, KeyError) as exc:
        raise OutputFileError(f"{path}, line {line}: a value is not of its column's type ({exc}); the file is damaged, "
                              "write it again.") from None
    if row["source"] not in SOURCES:
        raise OutputFileError(f"{path}, line {line}: source {row['source']!r} is none of {', '.join(SOURCES)}.")
    return LesionRecord(lesion, accepted, row["source"])
