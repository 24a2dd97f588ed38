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
import SimpleITK as sitk

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


STORAGE_TAGS = {"0028|0010": "Rows", "0028|0011": "Columns", "0028|0100": "BitsAllocated"}


def _storage(reader: sitk.ImageFileReader) -> dict[str, str]:
    return {name: reader.GetMetaData(tag).strip() if reader.HasMetaDataKey(tag) else "" for tag, name in STORAGE_TAGS.items()}


def slice_positions(files: list[str], folder: Path) -> list[float]:
    """Position of each file's slice along the series' slice normal, mm (from ImagePositionPatient); VolumeError
    where a slice declares another matrix or pixel storage than the first."""
    reader = sitk.ImageFileReader()
    points, normal, first = [], None, None
    for k, name in enumerate(files):
        reader.SetFileName(name)
        reader.ReadImageInformation()
        first = first or _storage(reader)
        if (storage := _storage(reader)) != first:
            raise VolumeError(f"{folder}: slice {k + 1} ({Path(name).name}) declares {storage}, the first slice "
                              f"{first}; the file is damaged or from another series. Copy the series again.")
        direction = np.array(reader.GetDirection()).reshape(3, 3)
        normal = direction[:, 2] if normal is None else normal
        points.append(float(np.dot(reader.GetOrigin(), normal)))
    return points


def slice_gaps(positions: list[float]) -> list[tuple[int, int, float, float]]:
    """(slice number, next slice number, their distance, the usual distance) wherever spacing is uneven (1-based)."""
    steps = np.abs(np.diff(positions))
    if len(steps) == 0:
        return []
    usual = float(np.median(steps))
    return [(n + 1, n + 2, float(step), usual) for n, step in enumerate(steps)
            if abs(step - usual) > SPACING_TOLERANCE * usual]


def check_slice_spacing(folder: Path, files: list[str], allow_gaps: bool) -> None:
    """Refuse (or, with ``allow_gaps``, warn about) slices that are not evenly spaced."""
    try:
        gaps = slice_gaps(slice_positions(files, folder))
    except RuntimeError as exc:
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
