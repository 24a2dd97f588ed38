"""Input integrity before compute: truncated, oversized, gapped, tiny, anisotropic and badly named inputs."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from synthetic_dicom import write_mr_series

from CMBDetectionLib.errors import VolumeError
from CMBDetectionLib.imageio import file_integrity
from CMBDetectionLib.imageio.volumes import read_image_file, read_volume, write_image


def _noise_volume(shape_kji=(20, 64, 64), spacing=(0.9, 0.9, 2.0)) -> sitk.Image:
    """Random voxels compress poorly, so a .nii.gz of this is well over 100 kB."""
    image = sitk.GetImageFromArray(np.random.default_rng(1).normal(300, 50, shape_kji).astype(np.float32))
    image.SetSpacing(spacing)
    return image


def _write(tmp_path: Path, name: str, image: sitk.Image, compress: bool = True) -> Path:
    path = tmp_path / name
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


@pytest.mark.parametrize("name, compress", [("v.nii.gz", True), ("v.nii", False), ("v.mha", True), ("v.mha", False),
                                            ("v.nrrd", True), ("v.nrrd", False)])
def test_a_truncated_file_is_refused_not_zero_filled(tmp_path, name, compress):
    path = _write(tmp_path, name, _noise_volume(), compress)
    data = path.read_bytes()
    cut = 100_000 if name == "v.nii.gz" else len(data) * 9 // 10  # the issue's .nii.gz was cut at 100 kB
    assert len(data) > cut
    path.write_bytes(data[:cut])
    with pytest.raises(VolumeError, match="truncated") as info:
        read_volume(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(VolumeError, match="truncated"):  # masks and predictions too (cmb-eval, cmb-train)
        read_image_file(path)


def test_a_damaged_gzip_stream_is_refused(tmp_path):
    path = _write(tmp_path, "v.nii.gz", _noise_volume())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(VolumeError, match="gzip data is damaged|truncated"):
        read_volume(path)


def _nifti_with_dims(tmp_path: Path, dims: tuple[int, int, int]) -> Path:
    path = _write(tmp_path, "big.nii", _noise_volume((4, 20, 20)), compress=False)
    data = bytearray(path.read_bytes())
    data[42:48] = struct.pack("<3h", *dims)  # dim[1..3] of the NIfTI-1 header
    path.write_bytes(bytes(data))
    return path


def test_a_header_declaring_4000x4000x400_is_refused_before_allocating(tmp_path):
    path = _nifti_with_dims(tmp_path, (4000, 4000, 400))
    with pytest.raises(VolumeError, match=r"declares 4000 x 4000 x 400 voxels"):
        read_volume(path)


def test_a_volume_larger_than_the_available_memory_is_refused(tmp_path, monkeypatch):
    path = _write(tmp_path, "v.nii.gz", _noise_volume())
    monkeypatch.setattr(file_integrity, "available_memory", lambda: 1 << 20)
    with pytest.raises(VolumeError, match=r"GiB of memory, 0.0 GiB are available"):
        read_volume(path)


def test_header_declaring_more_data_than_the_file_holds_is_refused(tmp_path):
    path = _nifti_with_dims(tmp_path, (20, 20, 40))  # 10 times the stored slices
    with pytest.raises(VolumeError, match="where its header declares"):
        read_volume(path)


def _series_with_missing_slice(tmp_path: Path) -> Path:
    image = sitk.Cast(sitk.RescaleIntensity(_noise_volume((10, 32, 32)), 0, 1000), sitk.sitkInt16)
    files = write_mr_series(image, tmp_path / "dicom", "SWI")
    files[4].unlink()
    return tmp_path / "dicom"


def test_a_dicom_series_with_a_missing_slice_is_refused_naming_the_gap(tmp_path):
    with pytest.raises(VolumeError, match=r"slices 4 and 5 are 4.00 mm apart; the others 2.00 mm.*--allow-slice-gaps"):
        read_volume(_series_with_missing_slice(tmp_path))


def test_allowed_slice_gaps_are_read_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        image = read_volume(_series_with_missing_slice(tmp_path), allow_slice_gaps=True)
    assert image.GetSize()[2] == 9
    assert "slices 4 and 5 are 4.00 mm apart" in caplog.text


def test_a_truncated_dicom_file_is_refused_by_name(tmp_path):
    image = sitk.Cast(sitk.RescaleIntensity(_noise_volume((6, 32, 32)), 0, 1000), sitk.sitkInt16)
    files = write_mr_series(image, tmp_path / "dicom", "SWI")
    last = files[-1]  # the last slice: no gap would show its absence
    last.write_bytes(last.read_bytes()[:-700])
    with pytest.raises(VolumeError, match=rf"1 DICOM file\(s\) cannot be read \({last.name}"):
        read_volume(tmp_path / "dicom")


def test_anisotropic_voxels_are_read_with_a_warning(tmp_path, caplog):
    path = _write(tmp_path, "aniso.nii.gz", _noise_volume((6, 64, 64), spacing=(0.4, 0.4, 5.0)))
    with caplog.at_level(logging.WARNING):
        read_volume(path)
    assert "0.40 x 0.40 x 5.00 mm: slices 5.6 times thicker than the 0.90 mm pixels" in caplog.text


def test_a_tiny_physical_extent_is_refused(tmp_path):
    path = _write(tmp_path, "small.nii.gz", _noise_volume((6, 20, 20), spacing=(0.5, 0.5, 1.0)))  # 10 mm field
    with pytest.raises(VolumeError, match=r"10.0 x 10.0 mm in-plane\) is too small"):
        read_volume(path)


def test_a_file_name_that_is_not_utf8_is_refused_in_one_line(tmp_path):
    good = _write(tmp_path, "good.nii.gz", _noise_volume())
    bad = Path(str(tmp_path / "bad") + "\udcff.nii.gz")  # the byte 0xff, as Python decodes a Latin-1 name
    bad.write_bytes(good.read_bytes())
    with pytest.raises(VolumeError, match="not UTF-8"):
        read_volume(bad)
    with pytest.raises(OSError, match="not UTF-8"):
        write_image(_noise_volume(), Path(str(tmp_path / "out") + "\udcff.nii.gz"))


def test_an_unreadable_file_names_the_permission_problem(tmp_path):
    import os

    path = _write(tmp_path, "v.nii.gz", _noise_volume())
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("running as root: permissions do not stop reading")
    with pytest.raises(VolumeError, match="cannot be opened.*permission"):
        read_volume(path)
