"""The lesion table and the MARS count table: typed columns with units, written from and read back to lesions.

One row per lesion, including rejected ones (``accepted`` unticked), so a rater can see and undo a rejection.
The ``region``, ``side``, ``certainty`` and ``accepted`` cells are the ones a rater edits.

>>> fill_lesion_table(tableNode, [(lesion, True, "model")])     # doctest: +SKIP
>>> read_edits(tableNode)[lesion.label].accepted                  # doctest: +SKIP
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import vtk

from CMBDetectionLib.mars.rating import CERTAINTIES, SIDES  # noqa: F401 (the values a rater may enter)
from CMBDetectionLib.results import Lesion

EDITABLE = ("region", "side", "certainty", "accepted")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "int", "double", "string" or "bit"
    unit: str
    description: str


LESION_COLUMNS = (
    Column("id", "int", "", "Lesion number; its segment and markups point are named 'CMB <id>'"),
    Column("region", "string", "", "MARS region (editable)"),
    Column("category", "string", "", "MARS category: lobar, deep or infratentorial (follows the region)"),
    Column("side", "string", "", "left or right (editable)"),
    Column("certainty", "string", "", "definite or possible (editable)"),
    Column("diameter", "double", "mm", "Largest extent along the image axes"),
    Column("volume", "double", "mm3", "Lesion volume"),
    Column("confidence", "double", "", "Mean model probability inside the lesion (empty for lesions added by hand)"),
    Column("R", "double", "mm", "Centre, right"),
    Column("A", "double", "mm", "Centre, anterior"),
    Column("S", "double", "mm", "Centre, superior"),
    Column("accepted", "bit", "", "Untick to reject the lesion (removes its segment and point)"),
    Column("source", "string", "", "model or rater"),
)

_ARRAYS = {"int": vtk.vtkIntArray, "double": vtk.vtkDoubleArray, "string": vtk.vtkStringArray, "bit": vtk.vtkBitArray}


@dataclass(frozen=True)
class RowEdits:
    """The editable cells of one row."""

    region: str
    side: str
    certainty: str
    accepted: bool


def _add_columns(table_node, columns: Iterable[Column]) -> None:
    table_node.RemoveAllColumns()
    for column in columns:
        array = _ARRAYS[column.kind]()
        array.SetName(column.name)
        table_node.AddColumn(array)
        if column.unit:
            table_node.SetColumnUnitLabel(column.name, column.unit)
        table_node.SetColumnDescription(column.name, column.description)


def _lesion_values(lesion: Lesion, accepted: bool, source: str) -> dict[str, Any]:
    return {
        "id": lesion.label,
        "region": lesion.region,
        "category": lesion.category,
        "side": lesion.side,
        "certainty": lesion.certainty,
        "diameter": lesion.diameter_mm,
        "volume": lesion.volume_mm3,
        "confidence": lesion.mean_probability,
        "R": lesion.centre_ras[0],
        "A": lesion.centre_ras[1],
        "S": lesion.centre_ras[2],
        "accepted": int(accepted),
        "source": source,
    }


def _set_row(table, row: int, values: dict[str, Any]) -> None:
    for name, value in values.items():
        array = table.GetColumnByName(name)
        if isinstance(array, vtk.vtkStringArray):
            array.SetValue(row, str(value))
        else:
            array.SetValue(row, value)


def fill_lesion_table(table_node, rows: Iterable[tuple[Lesion, bool, str]]) -> None:
    """Replace the table's content with one row per ``(lesion, accepted, source)``."""
    rows = list(rows)
    disabled = table_node.StartModify()
    _add_columns(table_node, LESION_COLUMNS)
    table = table_node.GetTable()
    table.SetNumberOfRows(len(rows))
    for row, (lesion, accepted, source) in enumerate(rows):
        _set_row(table, row, _lesion_values(lesion, accepted, source))
    table.Modified()
    table_node.EndModify(disabled)


def row_of(table_node, lesion_label: int) -> int:
    """Row index of a lesion, or -1."""
    ids = table_node.GetTable().GetColumnByName("id")
    for row in range(table_node.GetNumberOfRows() if ids is not None else 0):
        if ids.GetValue(row) == lesion_label:
            return row
    return -1


def set_cells(table_node, lesion_label: int, **values: Any) -> None:
    """Write some cells of one lesion's row (e.g. ``accepted=0``)."""
    row = row_of(table_node, lesion_label)
    if row < 0:
        raise KeyError(f"lesion {lesion_label} is not in table {table_node.GetName()!r}")
    _set_row(table_node.GetTable(), row, values)
    table_node.GetTable().Modified()
    table_node.Modified()


def append_row(table_node, lesion: Lesion, source: str) -> None:
    table = table_node.GetTable()
    row = table.GetNumberOfRows()
    table.SetNumberOfRows(row + 1)
    _set_row(table, row, _lesion_values(lesion, True, source))
    table.Modified()
    table_node.Modified()


def read_edits(table_node) -> dict[int, RowEdits]:
    """The editable cells of every row, by lesion id."""
    table = table_node.GetTable()
    if table.GetColumnByName("id") is None:
        return {}
    column = {name: table.GetColumnByName(name) for name in ("id", *EDITABLE)}
    return {
        int(column["id"].GetValue(row)): RowEdits(
            region=str(column["region"].GetValue(row)).strip(),
            side=str(column["side"].GetValue(row)).strip(),
            certainty=str(column["certainty"].GetValue(row)).strip(),
            accepted=bool(int(column["accepted"].GetValue(row))),
        )
        for row in range(table.GetNumberOfRows())
    }


def fill_count_table(table_node, counts: list[dict[str, Any]]) -> None:
    """Replace the MARS count table with ``counts`` (``mars.count_table`` rows); column types follow the values."""
    disabled = table_node.StartModify()
    names = list(counts[0]) if counts else ["region"]
    kinds = {
        name: "int" if all(isinstance(r[name], (int, bool)) for r in counts) and counts
        else "double" if all(isinstance(r[name], (int, float)) for r in counts) and counts
        else "string"
        for name in names
    }
    _add_columns(table_node, (Column(name, kinds[name], "", "") for name in names))
    table = table_node.GetTable()
    table.SetNumberOfRows(len(counts))
    for row, values in enumerate(counts):
        _set_row(table, row, {k: (int(v) if kinds[k] == "int" else v) for k, v in values.items()})
    table.Modified()
    table_node.EndModify(disabled)


def read_lesions(table_node) -> tuple[list[Lesion], dict[int, bool], dict[int, str]]:
    """Lesions, accepted flags and sources back from a lesion table (a reloaded scene). The table keeps no voxel
    indices or voxel counts: ``centre_ijk`` is NaN and ``n_voxels`` 0 (the segments hold the outlines)."""
    table = table_node.GetTable()
    if table.GetColumnByName("id") is None:
        return [], {}, {}
    column = {c.name: table.GetColumnByName(c.name) for c in LESION_COLUMNS}
    lesions, accepted, source = [], {}, {}
    for row in range(table.GetNumberOfRows()):
        value = {name: array.GetValue(row) for name, array in column.items()}
        label = int(value["id"])
        lesions.append(Lesion(
            label=label, centre_ras=(float(value["R"]), float(value["A"]), float(value["S"])),
            centre_ijk=(float("nan"),) * 3, diameter_mm=float(value["diameter"]), volume_mm3=float(value["volume"]),
            n_voxels=0, mean_probability=float(value["confidence"]), max_probability=float("nan"),
            region=str(value["region"]), category=str(value["category"]), side=str(value["side"]),
            certainty=str(value["certainty"]),
        ))
        accepted[label], source[label] = bool(int(value["accepted"])), str(value["source"])
    return lesions, accepted, source
