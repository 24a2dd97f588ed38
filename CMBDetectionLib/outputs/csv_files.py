"""Plain CSV tables (UTF-8, a header row, ``,`` separated), the layer under every CSV the engine writes.

>>> import tempfile, pathlib
>>> path = write_csv([{"a": 1, "b": "x"}], ["a", "b"], pathlib.Path(tempfile.mkdtemp()) / "t.csv")
>>> read_csv(path)
(['a', 'b'], [{'a': '1', 'b': 'x'}])
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from CMBDetectionLib.errors import OutputFileError


def write_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str], path: str | os.PathLike) -> Path:
    """Write ``rows`` under the header ``columns`` (keys outside ``columns`` are an error); creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_csv(path: str | os.PathLike) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows as dicts of strings); a missing file, bad encoding or a ragged row is an ``OutputFileError``."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except FileNotFoundError:
        raise OutputFileError(f"{path}: no such file; run detection (or the export) again to write it.") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise OutputFileError(f"{path}: not a readable CSV file ({exc}); write it again.") from None
    for number, row in enumerate(rows, start=2):
        if None in row or None in row.values():
            raise OutputFileError(f"{path}, line {number}: {len(columns)} columns expected; the file is damaged, "
                                  "write it again.")
    return columns, rows
