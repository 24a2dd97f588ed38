"""Write a :class:`results.DetectionResult` as files, all on the input volume's grid.

For a stem ``S``: ``S_cmb.nii.gz`` (uint8 0/1 mask), ``S_lesions.csv`` (one row per lesion),
``S_cmb.seg.nrrd`` (Slicer segmentation, one segment "CMB n" per lesion, Hemorrhage/Brain terminology),
``S_lesions.mrk.json`` (Slicer markups point list, LPS as Slicer writes, one point per lesion labelled like its
segment) and ``S_mars.csv`` (MARS counts per region, when MARS rating ran).

>>> paths = write_outputs(result, "out", "sub-01_swi")        # doctest: +SKIP
>>> sorted(paths)                                              # doctest: +SKIP
['lesions_csv', 'mars_csv', 'markups', 'mask', 'segmentation']
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from CMBDetectionLib.results import DetectionResult, Lesion
from CMBDetectionLib.imageio.volumes import ras_to_lps, write_mask

MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)
# Slicer's general anatomy list: Morphologically Altered Structure / Hemorrhage in the Brain (no microbleed code ships).
TERMINOLOGY = {
    "contextName": "Segmentation category and type - 3D Slicer General Anatomy list",
    "category": ["SCT", "49755003", "Morphologically Altered Structure"],
    "type": ["SCT", "50960005", "Hemorrhage"],
    "anatomicContextName": "Anatomic codes - DICOM master list",
    "anatomicRegion": ["SCT", "12738006", "Brain"],
}
BLEEDING_COLOUR = (188 / 255, 65 / 255, 28 / 255)


def lesion_name(lesion: Lesion) -> str:
    """Name shared by a lesion's segment and its markups point."""
    return f"CMB {lesion.label}"


def lesion_columns() -> list[str]:
    """CSV columns of :meth:`Lesion.as_row`, known even when there are no lesions."""
    blank = Lesion(**{f.name: (0.0, 0.0, 0.0) if f.name.startswith("centre") else 0 for f in fields(Lesion)})
    return list(blank.as_row())


def write_csv(rows: Iterable[dict[str, Any]], columns: list[str], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_lesions_csv(lesions: list[Lesion], path: Path) -> Path:
    return write_csv((lesion.as_row() for lesion in lesions), lesion_columns(), path)


def _ijk_to_lps(reference) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = np.array(reference.GetDirection()).reshape(3, 3) * np.array(reference.GetSpacing())
    matrix[:3, 3] = reference.GetOrigin()
    return matrix


def write_segmentation(result: DetectionResult, path: Path) -> Path:
    """Slicer ``.seg.nrrd``: the label map as one layer, a segment per lesion (read back with ``slicerio``)."""
    import slicerio

    dtype = np.uint8 if len(result.lesions) < 256 else np.uint16
    segmentation = {
        "voxels": np.ascontiguousarray(result.label_map.transpose(2, 1, 0), dtype=dtype),  # [k,j,i] -> [i,j,k]
        "ijkToLPS": _ijk_to_lps(result.reference),
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
        "segments": [
            {
                "id": f"CMB_{lesion.label}",
                "name": lesion_name(lesion),
                "labelValue": int(lesion.label),
                "layer": 0,
                "color": list(BLEEDING_COLOUR),
                "terminology": TERMINOLOGY,
                "status": "completed",
            }
            for lesion in result.lesions
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    slicerio.write_segmentation(str(path), segmentation)
    return path


def write_markups(lesions: list[Lesion], path: Path) -> Path:
    """Slicer markups fiducial list (``.mrk.json``), LPS coordinates as Slicer itself writes them."""
    points = [
        {
            "id": str(n),
            "label": lesion_name(lesion),
            "description": f"{lesion.diameter_mm:.1f} mm, p={lesion.max_probability:.2f}",
            "position": [round(float(v), 3) for v in ras_to_lps(lesion.centre_ras)],
            "positionStatus": "defined",
        }
        for n, lesion in enumerate(lesions, start=1)
    ]
    document = {
        "@schema": MARKUPS_SCHEMA,
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": "LPS",
                "coordinateUnits": "mm",
                "labelFormat": "CMB %d",
                "controlPoints": points,
                "display": {"color": list(BLEEDING_COLOUR), "selectedColor": list(BLEEDING_COLOUR)},
            }
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def write_mars_table(rows: list[dict[str, Any]], path: Path) -> Path:
    """The MARS count table (columns taken from the rows' keys, in order)."""
    columns = list(rows[0]) if rows else ["region"]
    return write_csv(rows, columns, path)


def output_paths(out_dir: str | os.PathLike, stem: str) -> dict[str, Path]:
    """Every file :func:`write_outputs` writes for ``stem``, by kind."""
    out = Path(out_dir)
    return {
        "mask": out / f"{stem}_cmb.nii.gz",
        "lesions_csv": out / f"{stem}_lesions.csv",
        "segmentation": out / f"{stem}_cmb.seg.nrrd",
        "markups": out / f"{stem}_lesions.mrk.json",
        "mars_csv": out / f"{stem}_mars.csv",
    }


def write_outputs(result: DetectionResult, out_dir: str | os.PathLike, stem: str) -> dict[str, Path]:
    """Write all files for one result; ``S_mars.csv`` only when MARS rating ran (``provenance["mars_counts"]``)."""
    paths = output_paths(out_dir, stem)
    mars_table = result.provenance.get("mars_counts")
    write_mask(result.mask, result.reference, paths["mask"])
    write_lesions_csv(result.lesions, paths["lesions_csv"])
    write_segmentation(result, paths["segmentation"])
    write_markups(result.lesions, paths["markups"])
    if mars_table is None:
        del paths["mars_csv"]
    else:
        write_mars_table(mars_table, paths["mars_csv"])
    return paths
