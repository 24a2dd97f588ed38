"""``S_lesions.mrk.json``: a Slicer markups point list, one point "CMB n" at each lesion's centre.

Coordinates are stored in LPS, as Slicer itself writes markups; they go through ``imageio.volumes``' one
RAS/LPS conversion both ways, and the reader also takes files Slicer saved in RAS.

>>> import tempfile, pathlib
>>> from CMBDetectionLib.results import Lesion
>>> lesion = Lesion(2, (10.0, -5.0, 3.0), (0.0, 0.0, 0.0), 4.0, 20.0, 8, 0.7, 0.9)
>>> path = write_markups([lesion], pathlib.Path(tempfile.mkdtemp()) / "S_lesions.mrk.json")
>>> [(name, ras.tolist()) for name, ras in read_markups(path)]
[('CMB 2', [10.0, -5.0, 3.0])]
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from CMBDetectionLib.errors import OutputFileError
from CMBDetectionLib.imageio.volumes import lps_to_ras, ras_to_lps
from CMBDetectionLib.outputs.terminology import BLEEDING_COLOUR, POINT_LABEL_FORMAT, lesion_name
from CMBDetectionLib.results import Lesion

MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)


def write_markups(lesions: Sequence[Lesion], path: str | os.PathLike) -> Path:
    """Write a fiducial list with one point per lesion, described by its diameter and probability."""
    points = [
        {
            "id": str(n),
            "label": lesion_name(lesion.label),
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
                "labelFormat": POINT_LABEL_FORMAT,
                "controlPoints": points,
                "display": {"color": list(BLEEDING_COLOUR), "selectedColor": list(BLEEDING_COLOUR)},
            }
        ],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def read_markups(path: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """(label, RAS centre) of every point of the file's first markup."""
    try:
        markup = json.loads(Path(path).read_text(encoding="utf-8"))["markups"][0]
        flip = markup.get("coordinateSystem", "LPS") == "LPS"
        return [(point["label"], lps_to_ras(point["position"]) if flip else np.asarray(point["position"], float))
                for point in markup["controlPoints"]]
    except FileNotFoundError:
        raise OutputFileError(f"{path}: no such file; run detection (or the export) again to write it.") from None
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise OutputFileError(f"{path}: not a Slicer markups file ({exc!r}); write it again.") from None
