"""The one lesion CSV schema: versioned, every field round-trips, and damaged or foreign files get one line."""

from __future__ import annotations

import csv
from dataclasses import replace

import pytest

from CMBDetectionLib.errors import OutputFileError
from CMBDetectionLib.outputs.lesion_csv import (
    COLUMNS,
    SCHEMA_VERSION,
    LesionRecord,
    read_lesions_csv,
    write_lesions_csv,
)
from CMBDetectionLib.results import Lesion


def records() -> list[LesionRecord]:
    first = Lesion(1, (-12.25, 30.0, 7.125), (40.5, 22.0, 9.0), 4.5, 33.75, 27, 0.61, 0.97,
                   "thalamus", "deep", "left", "definite")
    added = Lesion(7, (1e-7, -0.1, 2.0), (3.0, 4.0, 5.0), 2.0, 4.0, 4, 0.0, 0.0, "", "", "", "possible")
    return [LesionRecord(first), LesionRecord(replace(first, label=2), False),
            LesionRecord(added, True, "rater")]


def test_every_field_round_trips_and_every_row_carries_the_version(tmp_path):
    path = write_lesions_csv(records(), tmp_path / "S_lesions.csv")
    assert read_lesions_csv(path) == records()
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == COLUMNS and COLUMNS[:2] == ("schema_version", "id")
    assert {row["schema_version"] for row in rows} == {str(SCHEMA_VERSION)}
    assert [(row["id"], row["accepted"], row["source"]) for row in rows] == [("1", "1", "model"), ("2", "0", "model"),
                                                                              ("7", "1", "rater")]


def edit(path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new, 1))


def test_a_newer_schema_is_refused_with_what_to_do(tmp_path):
    path = write_lesions_csv(records(), tmp_path / "S_lesions.csv")
    edit(path, "\n1,1,", f"\n{SCHEMA_VERSION + 1},1,")
    with pytest.raises(OutputFileError, match=rf"line 2: lesion list schema version '{SCHEMA_VERSION + 1}'.*update it"):
        read_lesions_csv(path)


@pytest.mark.parametrize("old, new, message", [
    ("33.75", "big", r"line 2: a value is not of its column's type"),
    (",1,rater", ",yes,rater", r"line 4: a value is not of its column's type"),
    (",rater", ",robot", r"line 4: source 'robot'"),
    ("schema_version,id", "version,label", r"columns schema_version, id missing"),
    (",possible,1,rater", ",possi", r"line 4: 19 columns expected"),  # cut short, as by a full disk
])
def test_damaged_or_foreign_files_get_one_line_naming_the_problem(tmp_path, old, new, message):
    path = write_lesions_csv(records(), tmp_path / "S_lesions.csv")
    edit(path, old, new)
    with pytest.raises(OutputFileError, match=message) as error:
        read_lesions_csv(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)
