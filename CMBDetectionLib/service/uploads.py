"""Receiving a job's upload: a ``multipart/form-data`` body streamed straight to disk, never held in memory.

The ``volume`` part is written chunk by chunk into the job's input folder while the body arrives; the request
is refused with 413 as soon as it passes the size limit (at once when ``Content-Length`` says so). Its file
name decides the format: NIfTI, NRRD, MHA, or a zip of one DICOM series, which :func:`unpack_dicom_zip` unpacks
into numbered files (member names are never used as paths, so a ``../`` name cannot escape the folder).
Small text fields (those of :mod:`options`) are kept as strings for the caller to check.

>>> stored_name("../../Jane Doe swi.NII.GZ")
'Jane_Doe_swi.nii.gz'
>>> stored_name("scan.txt")
Traceback (most recent call last):
...
CMBDetectionLib.service.uploads.UploadError: scan.txt: not a supported volume; send NIfTI (.nii, .nii.gz), ...
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from CMBDetectionLib.outputs.stems import safe_stem
from CMBDetectionLib.service.options import FIELDS as TEXT_FIELDS

VOLUME_FIELD = "volume"
#: single-file formats only: .nhdr and .mhd name a second data file that one upload cannot carry
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
ZIP_SUFFIX = ".zip"
MAX_TEXT_FIELD = 256
#: room for the multipart framing and text fields on top of the volume's own limit
FRAMING_ALLOWANCE = 64 * 1024
#: a zip may unpack to this many times the upload limit (DICOM compresses about 2-3 times); more is a zip bomb
MAX_UNPACK_RATIO = 4
MAX_ZIP_MEMBERS = 5000
COPY_CHUNK = 1 << 20


class UploadError(ValueError):
    """An upload refused; ``status`` is the HTTP status to answer with, the message one line saying what to do."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Upload:
    """What arrived: the stored volume file (or zip), its size in bytes, and the text fields."""

    path: Path | None = None
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)


def stored_name(filename: str) -> str:
    """The name an uploaded file is stored under: a safe stem plus its (lower-case) supported suffix."""
    name = PurePosixPath(filename.replace("\\", "/")).name
    for suffix in (*VOLUME_SUFFIXES, ZIP_SUFFIX):
        if name.lower().endswith(suffix):
            return safe_stem(name[: -len(suffix)]) + suffix
    raise UploadError(f"{name or 'the upload'}: not a supported volume; send NIfTI (.nii, .nii.gz), NRRD (.nrrd), "
                      "MHA (.mha) or a zip of one DICOM series (.zip).", 415)


def too_large(max_bytes: int) -> UploadError:
    return UploadError(f"the upload is larger than this server accepts ({max_bytes / 2**20:.0f} MiB, its "
                       "--max-upload-mb); send a smaller volume or ask the server's administrator.", 413)


async def receive_upload(content_type: str | None, content_length: str | None, body: AsyncIterator[bytes],
                         folder: Path, max_bytes: int) -> Upload:
    """Stream a multipart body into ``folder`` (created); raises :class:`UploadError` (4xx) for a bad upload."""
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or b"boundary" not in options:
        raise UploadError("send the volume as multipart/form-data with a field named 'volume' "
                          "(curl -F volume=@scan.nii.gz ...).", 415)
    limit = max_bytes + FRAMING_ALLOWANCE
    if content_length and content_length.isdigit() and int(content_length) > limit:
        raise too_large(max_bytes)
    folder.mkdir(parents=True, exist_ok=True)
    form = _FormWriter(folder, max_bytes)
    parser = MultipartParser(options[b"boundary"], form.callbacks())
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > limit:
                raise too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError:
        raise UploadError("the multipart/form-data body is malformed; send the volume with a multipart client "
                          "(curl -F volume=@scan.nii.gz ...).") from None
    finally:
        form.close()
    if not form.complete:
        raise UploadError("the upload ended before its closing boundary; send the volume again.")
    if form.upload.path is None:
        raise UploadError("no 'volume' field in the form; send the scan as -F volume=@scan.nii.gz.")
    return form.upload


class _FormWriter:
    """Callbacks of the streaming multipart parser: the volume part goes to a file, text parts to strings."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.upload = Upload()
        self._header_name = self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._part: str | None = None
        self._file: BinaryIO | None = None
        self._text = bytearray()
        self.complete = False

    def callbacks(self) -> dict:
        return {"on_part_begin": self._begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value_data, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._data, "on_part_end": self._end,
                "on_end": self._finished}

    def _finished(self) -> None:
        self.complete = True

    def _begin(self) -> None:
        self._headers, self._part, self._text = {}, None, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._part = options.get(b"name", b"").decode("utf-8", "replace")
        if self._part == VOLUME_FIELD:
            if self.upload.path is not None:
                raise UploadError("more than one 'volume' field; send one volume per job.")
            filename = options.get(b"filename", b"").decode("utf-8", "replace")
            self.upload.path = self.folder / stored_name(filename)
            self._file = open(self.upload.path, "xb")
        elif self._part not in TEXT_FIELDS:
            raise UploadError(f"unknown form field {self._part!r}; send 'volume' and optionally "
                              f"{', '.join(TEXT_FIELDS)}.")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._file is None:
            self._text += data[start:end]
            if len(self._text) > MAX_TEXT_FIELD:
                raise UploadError(f"form field {self._part!r} is longer than {MAX_TEXT_FIELD} characters.")
            return
        self.upload.size += end - start
        if self.upload.size > self.max_bytes:
            raise too_large(self.max_bytes)
        self._file.write(data[start:end])

    def _end(self) -> None:
        if self._file is not None:
            self.close()
        elif self._part is not None:
            self.upload.fields[self._part] = self._text.decode("utf-8", "replace").strip()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def unpack_dicom_zip(archive_path: Path, folder: Path, max_bytes: int) -> Path:
    """Unpack the files of a zip into ``folder`` as ``00000.dcm``, ``00001.dcm`` ...; the zip is then removed.

    Member names are checked (absolute paths, ``..`` and links are refused as a suspect archive) but never
    used as paths. Raises :class:`UploadError` for a damaged zip, one that holds nothing, or one that would
    unpack to more than ``MAX_UNPACK_RATIO * max_bytes`` (413).
    """
    limit = MAX_UNPACK_RATIO * max_bytes
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = [member for member in archive.infolist() if not member.is_dir()]
            _check_members(members, archive_path.name, limit)
            folder.mkdir(parents=True, exist_ok=True)
            written = 0
            for index, member in enumerate(members):
                with archive.open(member) as source, open(folder / f"{index:05d}.dcm", "xb") as target:
                    while chunk := source.read(COPY_CHUNK):
                        written += len(chunk)
                        if written > limit:  # sizes in the zip's directory can lie
                            raise UploadError(f"{archive_path.name}: unpacks to more than "
                                              f"{limit / 2**20:.0f} MiB; send one DICOM series.", 413)
                        target.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise UploadError(f"{archive_path.name}: not a readable zip ({exc}); zip the folder of one DICOM "
                          "series again and send it.") from None
    except UploadError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        archive_path.unlink(missing_ok=True)
    return folder


def _check_members(members: list[zipfile.ZipInfo], name: str, limit: int) -> None:
    if not members:
        raise UploadError(f"{name}: the zip holds no files; zip the folder of one DICOM series.")
    if len(members) > MAX_ZIP_MEMBERS:
        raise UploadError(f"{name}: holds {len(members)} files, more than {MAX_ZIP_MEMBERS}; send one DICOM series.")
    for member in members:
        path = PurePosixPath(member.filename.replace("\\", "/"))
        is_link = stat.S_ISLNK(member.external_attr >> 16)
        if path.is_absolute() or ".." in path.parts or ":" in member.filename or is_link:
            raise UploadError(f"{name}: member {member.filename!r} has an absolute path, '..' or is a link; "
                              "refused as a suspect archive. Zip the DICOM files themselves.")
    if sum(member.file_size for member in members) > limit:
        raise UploadError(f"{name}: unpacks to more than {limit / 2**20:.0f} MiB; send one DICOM series.", 413)
