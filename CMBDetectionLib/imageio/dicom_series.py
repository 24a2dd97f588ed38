"""Reading one DICOM series from a folder: the volume and its slices' headers, each file's header parsed once.

The folder is scanned once for its series (GDCM groups the files and sorts each series' slices), the chosen
series' headers are read once with pydicom (without pixel data) and serve both the checks
(:mod:`.dicom_checks`) and the DICOM outputs (``outputs.dicom_seg``, ``outputs.dicom_sr`` copy patient and
study data from them and align their frames with them): slice ``k`` of the volume's array is ``datasets[k]``.

>>> image, datasets = read_dicom_folder(Path("/data/dicom/sub-02"), None, False)   # doctest: +SKIP
>>> datasets[0].SeriesInstanceUID == datasets[-1].SeriesInstanceUID              # doctest: +SKIP
True
"""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from CMBDetectionLib.errors import VolumeError
from CMBDetectionLib.imageio.dicom_checks import check_slice_spacing, check_unread_files

DESCRIPTION_TAG = "0008|103e"


def series_files(folder: Path) -> dict[str, list[str]]:
    """The files of each DICOM series directly in ``folder``, by series UID, each in slice order."""
    reader = sitk.ImageSeriesReader()
    try:
        uids = reader.GetGDCMSeriesIDs(str(folder)) or ()
    except UnicodeDecodeError:
        raise VolumeError(f"{folder}: a file name in this folder is not UTF-8, which the DICOM reader cannot open; "
                          "rename the files.") from None
    return {uid: list(reader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in uids}


def _description(first_file: str) -> str:
    """SeriesDescription of a series' first file ("" when unreadable): only to list the series in an error."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(first_file)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return ""
    return reader.GetMetaData(DESCRIPTION_TAG).strip() if reader.HasMetaDataKey(DESCRIPTION_TAG) else ""


def chosen_series_uid(folder: Path, series: dict[str, list[str]], series_uid: str | None) -> str:
    """The UID of the series to read: ``series_uid`` when given, else the folder's only series."""
    if not series:
        raise VolumeError(f"{folder}: no DICOM series found in this folder. Point to the folder holding the SWI slices.")
    if series_uid is None:
        if len(series) > 1:
            listing = "\n".join(f"  {uid}  ({len(files)} files) {_description(files[0])}" for uid, files in series.items())
            raise VolumeError(f"{folder}: holds {len(series)} DICOM series; choose one with --series UID:\n{listing}")
        return next(iter(series))
    if series_uid not in series:
        raise VolumeError(f"{folder}: no DICOM series with UID {series_uid}; found {', '.join(series)}.")
    return series_uid


def read_headers(folder: Path, uid: str, files: list[str]) -> list:
    """The ``pydicom.Dataset`` of each file (without pixel data); VolumeError when one cannot be parsed."""
    import pydicom

    try:
        return [pydicom.dcmread(name, stop_before_pixels=True) for name in files]
    except (OSError, EOFError, ValueError, pydicom.errors.InvalidDicomError) as exc:
        raise VolumeError(f"{folder}: a file of series {uid} cannot be read as DICOM ({exc}); "
                          "copy the series again from its source.") from None


def _stacked(folder: Path, files: list[str]) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    # dicom_checks reports uneven spacing in one line; ITK's own warning is three raw lines.
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise VolumeError(f"{folder}: the series cannot be read ({str(exc).strip().splitlines()[-1]}); "
                          "copy the series again from its source.") from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def read_dicom_folder(folder: Path, series_uid: str | None, allow_slice_gaps: bool) -> tuple[sitk.Image, list]:
    """The chosen series as a volume and its headers in slice order, once its files are all readable and its
    slices evenly spaced (or gaps allowed)."""
    series = series_files(folder)
    uid = chosen_series_uid(folder, series, series_uid)
    check_unread_files(folder, {name for files in series.values() for name in files})
    datasets = read_headers(folder, uid, series[uid])
    check_slice_spacing(folder, datasets, allow_slice_gaps)
    return _stacked(folder, series[uid]), datasets
