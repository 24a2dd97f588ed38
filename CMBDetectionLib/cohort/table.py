"""``OUT/cohort.csv``: one row per subject, its status, lesion counts, time, model version, QC and error.

Columns, in order: ``subject``, ``session``, ``key`` (the subject's folder in OUT), ``status`` (``done``: detected
in this run; ``skipped``: finished by an earlier run with the same input, settings and model; ``failed``),
``n_lesions`` (accepted lesions), ``<category>_definite`` and ``<category>_possible`` for each MARS category
(lobar, deep, infratentorial; empty when MARS rating did not run), ``seconds`` (the subject's detection, reading
and writing), ``model_version``, ``snr``, ``brain_coverage`` (QC, see ``reports.qc``), ``warnings`` (QC warnings,
``;``-separated) and ``error`` (a failed subject's one-line error).

>>> from CMBDetectionLib.results import Lesion
>>> lesion = Lesion(1, (0, 0, 0), (0, 0, 0), 3.0, 10.0, 8, 0.9, 0.9, "thalamus", "deep", "left", "definite")
>>> counts = lesion_counts([lesion], mars=True)
>>> counts["n_lesions"], counts["deep_definite"], counts["lobar_possible"]
(1, 1, 0)
>>> lesion_counts([lesion], mars=False)["deep_definite"]
''
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from CMBDetectionLib.mars.regions import MARS_CATEGORIES
from CMBDetectionLib.outputs.csv_files import read_csv, write_csv
from CMBDetectionLib.results import Lesion

TABLE_NAME = "cohort.csv"
CERTAINTY_COLUMNS = tuple(f"{category}_{certainty}" for category in MARS_CATEGORIES
                          for certainty in ("definite", "possible"))
COLUMNS = ("subject", "session", "key", "status", "n_lesions", *CERTAINTY_COLUMNS, "seconds", "model_version",
           "snr", "brain_coverage", "warnings", "error")
_INTEGER_COLUMNS = ("n_lesions", *CERTAINTY_COLUMNS)
_FLOAT_COLUMNS = ("seconds", "snr", "brain_coverage")


def lesion_counts(lesions: Iterable[Lesion], mars: bool) -> dict[str, Any]:
    """``n_lesions`` and the definite/possible count per MARS category (empty cells when ``mars`` is False)."""
    lesions = list(lesions)
    counts: dict[str, Any] = {"n_lesions": len(lesions)}
    for column in CERTAINTY_COLUMNS:
        category, certainty = column.rsplit("_", 1)
        counts[column] = sum(1 for les in lesions if les.category == category and les.certainty == certainty) \
            if mars else ""
    return counts


def write_table(rows: Sequence[dict[str, Any]], out_dir: str | os.PathLike) -> Path:
    """Write ``OUT/cohort.csv`` atomically (beside it, then renamed), rows in the order given."""
    path = Path(out_dir) / TABLE_NAME
    temporary = write_csv(rows, COLUMNS, path.with_name(f".{TABLE_NAME}.tmp"))
    os.replace(temporary, path)
    return path


def read_table(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of ``OUT/cohort.csv``, counts as ints and figures as floats (empty cells stay ``""``)."""
    _, rows = read_csv(Path(out_dir) / TABLE_NAME)
    for row in rows:
        row.update({c: int(row[c]) for c in _INTEGER_COLUMNS if row[c] != ""})
        row.update({c: float(row[c]) for c in _FLOAT_COLUMNS if row[c] != ""})
    return rows
