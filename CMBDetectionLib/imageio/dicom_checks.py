"""Is a DICOM series whole, consistent and evenly spaced? Checked on the headers before its pixels are stacked.

ITK stacks a series with a missing slice onto one averaged spacing (a gap of 4 mm among 2 mm slices becomes
2.03 mm everywhere: positions off by up to a slice, lesions lost) with only a raw warning; and GDCM leaves out a
truncated file without a word. So:

- every file of the folder that starts like a DICOM file must belong to a readable series, else the folder is
  refused naming the files;
- every slice must declare the same matrix and pixel storage (``Rows``, ``Columns``, ``BitsAllocated``);
- the distances between consecutive slice positions (along the slice normal) must agree within
  :data:`SPACING_TOLERANCE`; a gap is refused by default, or, with ``allow_gaps``, logged as a warning with its
  size and slice numbers.

>>> slice_gaps([0.0, 2.0, 4.0, 8.0, 10.0])
[(3, 4, 4.0, 2.0)]
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from CMBDetectionLib.errors import VolumeError

log = logging.getLogger(__name__)

SPACING_TOLERANCE = 0.05  # relative; scanners round positions to 0.01 mm or so
DICOM_MAGIC_OFFSET = 128


def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(DICOM_MAGIC_OFFSET)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def check_unread_files(folder: Path, series_files: set[str]) -> None:
    """Refuse a folder holding DICOM files that no series could take in (damaged or truncated)."""
    unread = sorted(p.name for p in folder.iterdir()
                    if p.is_file() and str(p) not in series_files and _looks_like_dicom(p))
    if unread:
        shown = ", ".join(unread[:3]) + (f" and {len(unread) - 3} more" if len(unread) > 3 else "")
        raise VolumeError(f"{folder}: {len(unread)} DICOM file(s) cannot be read ({shown}: damaged or truncated); "
                          "copy the series again from its source.")


STORAGE_KEYWORDS = ("Rows", "Columns", "BitsAllocated")


def _normal(dataset) -> np.ndarray:
    """The slice normal (row x column direction), z where ImageOrientationPatient is absent, as ITK takes it."""
    orientation = dataset.get("ImageOrientationPatient")
    if not orientation or len(orientation) != 6:
        return np.array([0.0, 0.0, 1.0])
    return np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))


def slice_positions(datasets: list, folder: Path) -> list[float]:
    """Position of each slice along the series' slice normal, mm (from ImagePositionPatient, the origin where
    absent, as ITK takes it); VolumeError where a slice declares another matrix or pixel storage than the first."""
    first = {key: datasets[0].get(key) for key in STORAGE_KEYWORDS}
    points, normal = [], _normal(datasets[0])
    for k, dataset in enumerate(datasets):
        if (storage := {key: dataset.get(key) for key in STORAGE_KEYWORDS}) != first:
            raise VolumeError(f"{folder}: slice {k + 1} ({Path(dataset.filename).name}) declares {storage}, the first "
                              f"slice {first}; the file is damaged or from another series. Copy the series again.")
        points.append(float(np.dot(np.asarray(dataset.get("ImagePositionPatient") or (0.0, 0.0, 0.0), float), normal)))
    return points


def slice_gaps(positions: list[float]) -> list[tuple[int, int, float, float]]:
    """(slice number, next slice number, their distance, the usual distance) wherever spacing is uneven (1-based)."""
    steps = np.abs(np.diff(positions))
    if len(steps) == 0:
        return []
    usual = float(np.median(steps))
    return [(n + 1, n + 2, float(step), usual) for n, step in enumerate(steps)
            if abs(step - usual) > SPACING_TOLERANCE * usual]


def check_slice_spacing(folder: Path, datasets: list, allow_gaps: bool) -> None:
    """Refuse (or, with ``allow_gaps``, warn about) slices, given as their headers, that are not evenly spaced."""
    try:
        gaps = slice_gaps(slice_positions(datasets, folder))
    except (ValueError, TypeError) as exc:  # a position or orientation that is not three or six numbers
        raise VolumeError(f"{folder}: a slice header cannot be read ({str(exc).strip().splitlines()[-1]}); "
                          "copy the series again from its source.") from None
    if not gaps:
        return
    listed = "; ".join(f"slices {a} and {b} are {d:.2f} mm apart" for a, b, d, _ in gaps[:3])
    usual = gaps[0][3]
    if not allow_gaps:
        raise VolumeError(f"{folder}: uneven slice spacing ({listed}; the others {usual:.2f} mm): a slice is "
                          "missing or the series is mixed. Copy the whole series again, or pass --allow-slice-gaps "
                          "to read it onto an averaged grid anyway.")
    log.warning("%s: uneven slice spacing (%s; the others %.2f mm); read onto an averaged grid, positions near "
                "the gap are off by up to one slice.", folder, listed, usual)
