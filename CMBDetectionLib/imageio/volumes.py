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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.errors import VolumeError
from CMBDetectionLib.imageio.checks import check_grid, check_layout, finite_values
from CMBDetectionLib.imageio.dicom_series import read_dicom_folder
from CMBDetectionLib.imageio.file_integrity import check_file_integrity, read_header, unreadable

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


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


def itk_name(path: str | os.PathLike) -> str:
    r"""``path`` as ITK takes it; VolumeError for a name that is not valid UTF-8 (ITK aborts the process on one).

    >>> itk_name(os.fsdecode(b"bad\xff.nii.gz"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    CMBDetectionLib.errors.VolumeError: bad...: the name holds a byte that is not UTF-8, ...
    """
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise VolumeError(f"{name}: the name holds a byte that is not UTF-8, which the image reader cannot open; "
                          "rename the file or folder.") from None
    return name


def _checked_header(p: Path) -> sitk.ImageFileReader:
    """The header of file ``p``, after checking it can be opened and holds every byte it declares."""
    try:
        open(p, "rb").close()
    except OSError as exc:
        raise VolumeError(f"{p}: cannot be opened ({exc.strerror}); check the file's permissions.") from None
    reader = read_header(p)
    check_file_integrity(p, reader)
    return reader


def _read_checked(reader: sitk.ImageFileReader, p: Path) -> sitk.Image:
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise unreadable(p, exc) from None


def _existing(path: str | os.PathLike) -> Path:
    p = Path(itk_name(path))
    if not p.exists():
        raise VolumeError(f"{p}: no such file or folder.")
    return p


def read_image_file(path: str | os.PathLike, series_uid: str | None = None, allow_slice_gaps: bool = False) -> sitk.Image:
    """Read any supported file or DICOM folder, checked to be whole (:mod:`.file_integrity`), values as stored
    (masks, labels, probability maps)."""
    p = _existing(path)
    if p.is_dir():
        return read_dicom_folder(p, series_uid, allow_slice_gaps)[0]
    return _read_checked(_checked_header(p), p)


def check_volume(dimension: int, components: int, size: tuple[int, ...], spacing: tuple[float, ...], name: str) -> None:
    """Raise :class:`VolumeError` unless this is a 3D scalar volume big enough to hold a CMB (:mod:`.checks`)."""
    check_layout(dimension, components, name)
    check_grid(size, spacing, name)


def read_volume(path: str | os.PathLike, series_uid: str | None = None, allow_slice_gaps: bool = False) -> sitk.Image:
    """Read and check a 3D scalar SWI volume, returned as float32 with its geometry unchanged.

    A file's header is checked (whole file, size, layout, grid) before its voxels are read. A DICOM series with
    uneven slice spacing is refused unless ``allow_slice_gaps``. A few NaN or infinite voxels are replaced
    (:func:`.checks.finite_values`).
    """
    return read_volume_and_headers(path, series_uid, allow_slice_gaps)[0]


def read_volume_and_headers(path: str | os.PathLike, series_uid: str | None = None,
                            allow_slice_gaps: bool = False) -> tuple[sitk.Image, list | None]:
    """:func:`read_volume`'s volume and, for a DICOM folder, its series' headers (``pydicom.Dataset`` without pixel
    data, ``datasets[k]`` for slice ``k``) that the DICOM SEG and SR copy; None for a file."""
    p = _existing(path)
    datasets = None
    if p.is_dir():
        image, datasets = read_dicom_folder(p, series_uid, allow_slice_gaps)
        check_volume(image.GetDimension(), image.GetNumberOfComponentsPerPixel(), image.GetSize(), image.GetSpacing(), str(path))
    else:
        reader = _checked_header(p)
        check_volume(reader.GetDimension(), reader.GetNumberOfComponents(), reader.GetSize(), reader.GetSpacing(), str(path))
        image = _read_checked(reader, p)
    image = sitk.Cast(image, sitk.sitkFloat32)
    array = sitk.GetArrayViewFromImage(image)
    clean = finite_values(array, str(path))
    return (image if clean is array else array_to_image(clean, image)), datasets


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
    try:
        name = itk_name(p)
    except VolumeError as exc:
        raise OSError(str(exc)) from None  # a write failure, as ITK's own are reported to callers
    p.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, name, useCompression=True)
    return p


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
