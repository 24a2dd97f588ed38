"""Is a volume file whole? Checks made on the header and the stored bytes before any voxel is read.

SimpleITK fills the missing part of a truncated NIfTI file (``.nii`` or ``.nii.gz``) with zeros and reports
nothing, and allocates whatever size a header declares. So before reading voxels:

- the declared size must be plausible (at most :data:`MAX_VOXELS`) and fit in the memory available;
- the file must hold every byte its header declares: NIfTI by its ``vox_offset`` and ``bitpix``, MetaImage
  (``.mha``/``.mhd``) by its element type or ``CompressedDataSize``, raw NRRD by its sizes and type (exactly,
  for NIfTI and raw NRRD: a header declaring less than the file holds would read a sub-volume);
- a gzip file (``.nii.gz``) must decompress to its end with a matching CRC, streamed through a bounded buffer.

>>> import tempfile, SimpleITK as sitk
>>> path = Path(tempfile.mkdtemp()) / "v.nii.gz"
>>> sitk.WriteImage(sitk.Image(20, 20, 4, sitk.sitkInt16), str(path))
>>> check_file_integrity(path, read_header(path))   # a whole file passes silently
>>> _ = path.write_bytes(path.read_bytes()[:-20])
>>> check_file_integrity(path, read_header(path))
Traceback (most recent call last):
...
CMBDetectionLib.errors.VolumeError: ...v.nii.gz: the gzip stream is cut off before its end (file truncated); copy the
file again from its source.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import SimpleITK as sitk

from CMBDetectionLib.errors import VolumeError

MAX_VOXELS = 1 << 30  # over a billion voxels: no SWI acquisition; a damaged or hostile header
WORKING_BYTES_PER_VOXEL = 16  # the float32 volume, the probability map, the filter's scores and the labels
CHUNK = 1 << 20  # bounded decompression buffer


def read_header(path: Path) -> sitk.ImageFileReader:
    """A reader of ``path`` that has read the header only (size, spacing, pixel type); VolumeError if it cannot."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise unreadable(path, exc) from None
    return reader


def unreadable(path: Path, exc: Exception) -> VolumeError:
    """The one-line error for a file ITK refuses (its message's last line is the reason; the rest is source paths)."""
    lines = str(exc).strip().splitlines()
    return VolumeError(f"{path}: cannot be read as an image ({lines[-1] if lines else 'unknown reason'}): damaged, "
                       "truncated or not a supported format (NIfTI .nii/.nii.gz, NRRD, MHA, a DICOM folder).")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable, else free pages), None if unknown.

    >>> available_memory() is None or available_memory() > 0
    True
    """
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_declared_size(path: Path, size: tuple[int, ...], components: int) -> None:
    """Refuse a declared size that no SWI has, or whose working set exceeds the memory available.

    >>> check_declared_size(Path("big.nii"), (4000, 4000, 400), 1)
    Traceback (most recent call last):
    ...
    CMBDetectionLib.errors.VolumeError: big.nii: the header declares 4000 x 4000 x 400 voxels (6.4e+09), more than any
    SWI (limit 1.1e+09); the header is damaged or this is not an SWI volume.
    """
    voxels = math.prod(size) * components
    shape = " x ".join(str(n) for n in size)
    if voxels > MAX_VOXELS:
        raise VolumeError(f"{path}: the header declares {shape} voxels ({voxels:.2g}), more than any SWI "
                          f"(limit {MAX_VOXELS:.2g}); the header is damaged or this is not an SWI volume.")
    needed, free = voxels * WORKING_BYTES_PER_VOXEL, available_memory()
    if free is not None and needed > free:
        raise VolumeError(f"{path}: {shape} voxels need about {needed / 2**30:.1f} GiB of memory, "
                          f"{free / 2**30:.1f} GiB are available; crop or downsample the volume, or free memory.")


def _nifti_extent(header: bytes) -> int | None:
    """Bytes a single-file NIfTI-1/2 needs: ``vox_offset`` plus its voxel data; None when not such a header."""
    for order in "<>":
        sizeof_hdr = struct.unpack(order + "i", header[:4])[0] if len(header) >= 4 else 0
        if sizeof_hdr == 348 and len(header) >= 348:
            dims = struct.unpack(order + "8h", header[40:56])
            bitpix = struct.unpack(order + "h", header[72:74])[0]
            offset = struct.unpack(order + "f", header[108:112])[0]
        elif sizeof_hdr == 540 and len(header) >= 540:
            bitpix = struct.unpack(order + "h", header[14:16])[0]
            dims = struct.unpack(order + "8q", header[16:80])
            offset = struct.unpack(order + "q", header[168:176])[0]
        else:
            continue
        if not 0 < dims[0] <= 7 or not math.isfinite(offset):
            return None
        return int(offset) + math.prod(max(int(n), 1) for n in dims[1:dims[0] + 1]) * bitpix // 8
    return None


def _gunzipped(path: Path) -> tuple[bytes, int]:
    """The first 540 decompressed bytes and the decompressed length; VolumeError where the stream is damaged."""
    head, total = b"", 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(CHUNK):
                head = head or chunk[:540]
                total += len(chunk)
    except EOFError:
        raise VolumeError(f"{path}: the gzip stream is cut off before its end (file truncated); "
                          "copy the file again from its source.") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise VolumeError(f"{path}: the gzip data is damaged ({exc}); copy the file again from its source.") from None
    return head, total


def _metaimage_extent(path: Path, reader: sitk.ImageFileReader) -> tuple[Path, int, int] | None:
    """(data file, bytes it must hold, bytes it holds) of a MetaImage; None where the header does not say."""
    with open(path, "rb") as handle:
        text = handle.read(1 << 16)
    fields, offset = {}, 0
    for line in text.split(b"\n"):
        offset += len(line) + 1
        key, _, value = line.decode("latin-1").partition("=")
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    else:
        return None
    data_file = fields["ElementDataFile"]
    if data_file == "LOCAL":
        stored, held = path, path.stat().st_size - offset
    elif data_file != "LIST" and (path.parent / data_file).is_file():
        stored = path.parent / data_file
        held = stored.stat().st_size
    else:
        return None
    if fields.get("CompressedData", "False").lower() == "true":
        return (stored, int(fields["CompressedDataSize"]), held) if "CompressedDataSize" in fields else None
    return stored, math.prod(reader.GetSize()) * _itemsize(reader), held


def _itemsize(reader: sitk.ImageFileReader) -> int:
    """Bytes of one stored voxel as ITK reads it (all components)."""
    probe = sitk.Image([1] * reader.GetDimension(), reader.GetPixelID(), reader.GetNumberOfComponents())
    return sitk.GetArrayViewFromImage(probe).dtype.itemsize * reader.GetNumberOfComponents()


def _raw_nrrd_extent(path: Path, reader: sitk.ImageFileReader) -> tuple[int, int] | None:
    """(bytes declared, bytes held) of a raw NRRD holding its own data; None for other encodings or layouts."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    end = head.find(b"\n\n")
    fields = dict(line.split(":", 1) for line in head[:end].decode("latin-1").splitlines()[1:] if ":" in line)
    fields = {key.strip().lower(): value.strip() for key, value in fields.items()}
    if end < 0 or fields.get("encoding") != "raw" or {"data file", "datafile", "byte skip", "byteskip"} & set(fields):
        return None
    return math.prod(reader.GetSize()) * _itemsize(reader), path.stat().st_size - end - 2


def check_stored_bytes(path: Path, reader: sitk.ImageFileReader) -> None:
    """Refuse a file holding fewer bytes than its header declares, or a damaged gzip stream."""
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        head, held = _gunzipped(path)
        needed = _nifti_extent(head)
    elif name.endswith(".nii"):
        with open(path, "rb") as handle:
            needed, held = _nifti_extent(handle.read(540)), path.stat().st_size
    elif name.endswith((".mha", ".mhd")) and (extent := _metaimage_extent(path, reader)) is not None:
        path, needed, held = extent
    elif name.endswith(".nrrd") and (sizes := _raw_nrrd_extent(path, reader)) is not None:
        needed, held = sizes
    else:
        return
    # NIfTI and raw NRRD: more bytes than declared means a damaged header (a sub-volume would be read silently).
    exact = name.endswith((".nii", ".nii.gz", ".nrrd"))
    if needed is None or held == needed or (held > needed and not exact):
        return
    problem = "file truncated" if held < needed else "header or file damaged"
    raise VolumeError(f"{path}: holds {held} bytes of image data where its header declares {needed} "
                      f"({problem}); copy the file again from its source.")


def check_file_integrity(path: Path, reader: sitk.ImageFileReader) -> None:
    """All checks of this module on a file whose header ``reader`` has read; VolumeError on the first failure."""
    check_declared_size(path, reader.GetSize(), reader.GetNumberOfComponents())
    check_stored_bytes(path, reader)

