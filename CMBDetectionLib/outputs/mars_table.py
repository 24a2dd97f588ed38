"""``S_mars.csv``: the MARS count table of :func:`CMBDetectionLib.mars.rating.count_table`.

One row per category, region and side (columns ``category, region, side, definite, possible, total``), then
category and overall totals; written only when MARS rating ran. The columns follow the rows given, so a front
end's own count layout is kept; counts read back as ints.

>>> import tempfile, pathlib
>>> rows = [{"category": "deep", "region": "thalamus", "side": "left", "definite": 2, "possible": 0, "total": 2}]
>>> path = write_mars_table(rows, pathlib.Path(tempfile.mkdtemp()) / "S_mars.csv")
>>> read_mars_table(path) == rows
True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from CMBDetectionLib.mars.rating import TABLE_COLUMNS
from CMBDetectionLib.outputs.csv_files import read_csv, write_csv


def write_mars_table(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write the count rows (columns: the first row's keys; :data:`TABLE_COLUMNS` when there are none)."""
    return write_csv(rows, list(rows[0]) if rows else TABLE_COLUMNS, path)


def read_mars_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The count rows, with whole-number cells as ints."""
    _, rows = read_csv(path)
    return [{name: int(value) if value.lstrip("-").isdigit() else value for name, value in row.items()} for row in rows]
