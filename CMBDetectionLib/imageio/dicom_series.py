"""The pydicom datasets of a DICOM series, in the slice order SimpleITK stacks them into a volume.

The DICOM outputs (``outputs.dicom_seg``, ``outputs.dicom_sr``) copy patient and study data from these headers
and align their frames with these slices, so slice ``k`` of :func:`volumes.read_volume`'s array is
``datasets[k]``. Pixel data is not read (headers only).

>>> datasets = read_series_datasets("/data/dicom/sub-02")         # doctest: +SKIP
>>> datasets[0].SeriesInstanceUID == datasets[-1].SeriesInstanceUID  # doctest: +SKIP
True
"""

from __future__ import annotations

import os
from pathlib import Path

import SimpleITK as sitk

from CMBDetectionLib.errors import VolumeError
from CMBDetectionLib.imageio.volumes import chosen_series_uid


def is_dicom_input(path: str | os.PathLike) -> bool:
    """True for a folder input (``cmb-detect`` reads a folder as a DICOM series).

    >>> is_dicom_input("sub-01_swi.nii.gz")
    False
    """
    return Path(path).is_dir()


def read_series_datasets(folder: str | os.PathLike, series_uid: str | None = None) -> list:
    """Headers (``pydicom.Dataset``, without pixel data) of the series in ``folder``, ordered as its volume's slices.

    ``series_uid`` chooses among several series, as in :func:`volumes.read_volume`. Raises ``VolumeError`` when
    the folder holds no such series or a file cannot be parsed.
    """
    import pydicom

    folder = Path(folder)
    uid = chosen_series_uid(folder, series_uid)
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
    try:
        return [pydicom.dcmread(name, stop_before_pixels=True) for name in files]
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise VolumeError(f"{folder}: a file of series {uid} cannot be read as DICOM ({exc}); "
                          "copy the series again from its source.") from None
