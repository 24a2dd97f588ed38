"""Reading and writing volumes with SimpleITK, and the one place where LPS becomes RAS.

Conventions used across the engine:
- An image is a ``SimpleITK.Image``; its array (``sitk.GetArrayViewFromImage``) is indexed ``[k, j, i]``
  (slice, row, column). Voxel indices in lesion lists are given as ``(i, j, k)``.
- SimpleITK and DICOM store physical points in LPS; Slicer, markups and our lesion lists use RAS.
  :func:`lps_to_ras` / :func:`ras_to_lps` are the only conversion; everything else calls them.

>>> img = read_volume("subject.nii.gz")            # doctest: +SKIP
>>> img = sitk.Image(4, 4, 4, sitk.sitkFloat32)     # origin 0, identity direction: LPS and RAS differ in sign
>>> index_to_ras(img, (1, 2, 3)).tolist()
[-1.0, -2.0, 3.0]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.errors import VolumeError

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass(frozen=True)
class DicomSeries:
    uid: str
    description: str
    n_files: int


def volume_stem(path: str | os.PathLike) -> str:
    """Name of a volume without its image suffix (a folder's own name for a DICOM folder).

    >>> volume_stem("/data/sub-01_swi.nii.gz")
    'sub-01_swi'
    """
    name = Path(path).name
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def list_dicom_series(folder: str | os.PathLike) -> list[DicomSeries]:
    """All DICOM series found directly in ``folder``."""
    reader = sitk.ImageSeriesReader()
    series = []
    for uid in reader.GetGDCMSeriesIDs(str(folder)) or ():
        files = reader.GetGDCMSeriesFileNames(str(folder), uid)
        description = ""
        try:
            file_reader = sitk.ImageFileReader()
            file_reader.SetFileName(files[0])
            file_reader.ReadImageInformation()
            if file_reader.HasMetaDataKey("0008|103e"):
                description = file_reader.GetMetaData("0008|103e").strip()
        except RuntimeError:
            pass
        series.append(DicomSeries(uid, description, len(files)))
    return series


def chosen_series_uid(folder: Path, series_uid: str | None) -> str:
    """The UID of the series to read from ``folder``: ``series_uid`` when given, else its only series."""
    series = list_dicom_series(folder)
    if not series:
        raise VolumeError(f"{folder}: no DICOM series found in this folder. Point to the folder holding the SWI slices.")
    if series_uid is None:
        if len(series) > 1:
            listing = "\n".join(f"  {s.uid}  ({s.n_files} files) {s.description}" for s in series)
            raise VolumeError(
                f"{folder}: holds {len(series)} DICOM series; choose one with --series UID:\n{listing}"
            )
        series_uid = series[0].uid
    elif series_uid not in {s.uid for s in series}:
        raise VolumeError(f"{folder}: no DICOM series with UID {series_uid}; found {', '.join(s.uid for s in series)}.")
    return series_uid


def _read_dicom_folder(folder: Path, series_uid: str | None) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), chosen_series_uid(folder, series_uid)))
    return reader.Execute()


def read_image_file(path: str | os.PathLike, series_uid: str | None = None) -> sitk.Image:
    """Read any supported file or DICOM folder without validation (masks, labels)."""
    p = Path(path)
    if not p.exists():
        raise VolumeError(f"{p}: no such file or folder.")
    if p.is_dir():
        return _read_dicom_folder(p, series_uid)
    try:
        return sitk.ReadImage(str(p))
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        raise VolumeError(
            f"{p}: cannot be read as an image ({first_line}). Supported: NIfTI (.nii, .nii.gz), NRRD, MHA, or a DICOM folder."
        ) from exc


def validate_volume(image: sitk.Image, name: str) -> None:
    """Raise :class:`VolumeError` unless ``image`` is a usable 3D scalar volume."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeError(
            f"{name}: has {image.GetNumberOfComponentsPerPixel()} components per voxel (vector or colour image); "
            "an SWI magnitude volume has one. Export the magnitude/SWI image alone."
        )
    if image.GetDimension() != 3:
        raise VolumeError(
            f"{name}: is a {image.GetDimension()}D image; a 3D volume is needed. "
            + ("Pick a single echo or time point." if image.GetDimension() > 3 else "Provide the whole 3D stack of slices.")
        )
    size = image.GetSize()
    if min(size) < 2:
        raise VolumeError(f"{name}: has size {size}; a 3D volume needs at least 2 voxels along every axis.")
    array = sitk.GetArrayViewFromImage(image)
    finite = np.isfinite(array)
    if not finite.any():
        raise VolumeError(f"{name}: every voxel is NaN or infinite; the file holds no image data.")
    values = array[finite]
    if values.min() == values.max():
        raise VolumeError(f"{name}: every voxel has the same value ({values.min()}); the volume is empty or blank.")


def read_volume(path: str | os.PathLike, series_uid: str | None = None) -> sitk.Image:
    """Read and validate a 3D scalar SWI volume, returned as float32 with its geometry unchanged.

    Non-finite voxels are set to the minimum finite value so that downstream statistics stay finite.
    """
    image = read_image_file(path, series_uid)
    validate_volume(image, str(path))
    image = sitk.Cast(image, sitk.sitkFloat32)
    array = sitk.GetArrayViewFromImage(image)
    if not np.isfinite(array).all():
        clean = np.nan_to_num(sitk.GetArrayFromImage(image), nan=0.0, posinf=0.0, neginf=0.0)
        fixed = sitk.GetImageFromArray(clean)
        fixed.CopyInformation(image)
        image = fixed
    return image


def array_to_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Wrap a ``[k, j, i]`` array as an image on ``reference``'s grid (origin, spacing, direction kept exactly)."""
    if tuple(array.shape[::-1]) != tuple(reference.GetSize()):
        raise ValueError(f"array shape {array.shape} does not match reference size {reference.GetSize()[::-1]}")
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def write_image(image: sitk.Image, path: str | os.PathLike) -> Path:
    """Write an image, creating the folder; compression on for NIfTI .gz, NRRD and MHA."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(p), useCompression=True)
    return p


def write_mask(mask: np.ndarray, reference: sitk.Image, path: str | os.PathLike) -> Path:
    """Write a 0/1 (or label) mask as uint8 on the reference grid."""
    return write_image(array_to_image(np.ascontiguousarray(mask, dtype=np.uint8), reference), path)


_LPS_RAS = np.array([-1.0, -1.0, 1.0])


def lps_to_ras(points: Sequence[float] | np.ndarray) -> np.ndarray:
    """LPS (SimpleITK, DICOM) to RAS (Slicer, lesion lists): negate x and y. Works on (3,) or (n, 3)."""
    return np.asarray(points, dtype=float) * _LPS_RAS


def ras_to_lps(points: Sequence[float] | np.ndarray) -> np.ndarray:
    """RAS to LPS; the same flip as :func:`lps_to_ras`."""
    return np.asarray(points, dtype=float) * _LPS_RAS


def index_to_ras(image: sitk.Image, ijk: Sequence[float] | np.ndarray) -> np.ndarray:
    """Continuous voxel index ``(i, j, k)`` (or an (n, 3) array of them) to RAS millimetres."""
    points = np.atleast_2d(np.asarray(ijk, dtype=float))
    direction = np.array(image.GetDirection()).reshape(3, 3)
    ras = lps_to_ras(np.asarray(image.GetOrigin()) + (points * np.asarray(image.GetSpacing())) @ direction.T)
    return ras[0] if np.ndim(ijk) == 1 else ras


def ras_to_index(image: sitk.Image, ras: Sequence[float] | np.ndarray) -> np.ndarray:
    """RAS millimetres to continuous voxel index ``(i, j, k)``; inverse of :func:`index_to_ras`."""
    lps = np.atleast_2d(ras_to_lps(ras))
    direction = np.array(image.GetDirection()).reshape(3, 3)
    ijk = ((lps - np.asarray(image.GetOrigin())) @ direction) / np.asarray(image.GetSpacing())
    return ijk[0] if np.asarray(ras).ndim == 1 else ijk
