"""Uploads: streamed with a size limit (also without Content-Length), zips unpacked without path traversal."""

from __future__ import annotations

import asyncio
import zipfile

import pytest

from CMBDetectionLib.service.uploads import UploadError, receive_upload, unpack_dicom_zip

BOUNDARY = "cmbtestboundary"


def multipart(name: str, content: bytes, **fields: str) -> bytes:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
             for key, value in fields.items()]
    parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="volume"; filename="{name}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def receive(body: bytes, folder, max_bytes: int, content_length: bool = True):
    async def chunks():
        for start in range(0, len(body), 1000):
            yield body[start:start + 1000]

    return asyncio.run(receive_upload(f"multipart/form-data; boundary={BOUNDARY}",
                                      str(len(body)) if content_length else None, chunks(), folder, max_bytes))


def test_the_volume_is_written_to_disk_and_fields_kept(tmp_path):
    content = bytes(range(256)) * 40
    upload = receive(multipart("../Jane Doe.nii.gz", content, method="unet", threshold="0.2"), tmp_path, 20000)
    assert upload.path == tmp_path / "Jane_Doe.nii.gz"
    assert upload.path.read_bytes() == content and upload.size == len(content)
    assert upload.fields == {"method": "unet", "threshold": "0.2"}


def test_a_streamed_upload_without_length_is_cut_at_the_limit(tmp_path):
    with pytest.raises(UploadError) as refused:
        receive(multipart("a.nii.gz", b"x" * 200_000), tmp_path, 100_000, content_length=False)
    assert refused.value.status == 413


@pytest.mark.parametrize("body", [b"not multipart at all", multipart("a.nii.gz", b"abc")[:-30]])
def test_a_malformed_or_truncated_body_is_a_400(tmp_path, body):
    with pytest.raises(UploadError) as refused:
        receive(body, tmp_path, 100_000)
    assert refused.value.status == 400


def zip_of(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def test_a_zip_is_unpacked_into_numbered_files_whatever_its_member_names(tmp_path):
    archive = zip_of(tmp_path / "series.zip", {"DICOM/IM1": b"one", "DICOM/sub/IM2": b"two"})
    folder = unpack_dicom_zip(archive, tmp_path / "series", 1000)
    assert sorted(path.name for path in folder.iterdir()) == ["00000.dcm", "00001.dcm"]
    assert not archive.exists()


@pytest.mark.parametrize("name", ["../../evil.dcm", "/etc/evil.dcm", "C:/evil.dcm"])
def test_a_zip_with_escaping_member_names_is_refused(tmp_path, name):
    archive = zip_of(tmp_path / "series.zip", {"IM1": b"one", name: b"evil"})
    with pytest.raises(UploadError, match="suspect archive"):
        unpack_dicom_zip(archive, tmp_path / "series", 1000)
    assert not (tmp_path / "series").exists() and not (tmp_path.parent / "evil.dcm").exists()


def test_a_zip_bomb_and_a_damaged_zip_are_refused(tmp_path):
    bomb = zip_of(tmp_path / "bomb.zip", {"IM1": bytes(100_000)})
    with pytest.raises(UploadError) as refused:
        unpack_dicom_zip(bomb, tmp_path / "bomb", 1000)
    assert refused.value.status == 413
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UploadError, match="not a readable zip"):
        unpack_dicom_zip(damaged, tmp_path / "damaged", 1000)
