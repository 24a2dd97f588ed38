"""Volume I/O: geometry round trips (NIfTI, NRRD, MHA, DICOM series) and clear errors for unusable inputs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from CMBDetectionLib.imageio.volumes import (
    VolumeError,
    index_to_ras,
    lps_to_ras,
    ras_to_index,
    read_volume,
    read_volume_and_headers,
    volume_stem,
)


def _oblique_volume() -> sitk.Image:
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.integers(0, 1000, size=(6, 20, 24)).astype(np.int16))
    image.SetSpacing((0.9, 0.8, 2.0))
    image.SetOrigin((-110.5, 95.25, -40.0))
    rotation = sitk.VersorTransform((0.1, 0.2, 0.05), 0.3).GetMatrix()
    image.SetDirection(rotation)
    return image


def _same_geometry(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_file_round_trip_keeps_geometry_and_values(tmp_path: Path, suffix: str) -> None:
    original = _oblique_volume()
    path = tmp_path / f"vol{suffix}"
    sitk.WriteImage(original, str(path))
    loaded = read_volume(path)
    assert _same_geometry(original, loaded)
    assert loaded.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded), sitk.GetArrayFromImage(original))


def _write_dicom_series(image: sitk.Image, folder: Path, series_uid: str, description: str) -> None:
    """One file per slice with the geometry tags a scanner writes (after SimpleITK's DICOM series example)."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (direction[0], direction[3], direction[6], direction[1], direction[4], direction[7]))
    today = time.strftime("%Y%m%d")
    for k in range(image.GetDepth()):
        slice_image = image[:, :, k]
        tags = {
            "0008|0060": "MR",
            "0008|0020": today,
            "0008|103e": description,
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": series_uid,
            "0020|0037": orientation,
            "0020|0032": "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0013": str(k + 1),
            "0018|0050": str(image.GetSpacing()[2]),
            "0008|0018": f"{series_uid}.{k + 1}",
        }
        for tag, value in tags.items():
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{description}_{k:03d}.dcm"))
        writer.Execute(slice_image)


def test_dicom_series_round_trip_keeps_geometry(tmp_path: Path) -> None:
    original = _oblique_volume()
    _write_dicom_series(original, tmp_path / "dicom", "1.2.826.0.1.3680043.2.1125.2", "SWI")
    loaded = read_volume(tmp_path / "dicom")
    assert _same_geometry(original, loaded, tol=1e-3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded), sitk.GetArrayFromImage(original))
    assert volume_stem(tmp_path / "dicom") == "dicom"


def test_dicom_headers_are_parsed_once_each_and_follow_the_slices(tmp_path: Path, monkeypatch) -> None:
    import pydicom

    original = _oblique_volume()
    _write_dicom_series(original, tmp_path / "dicom", "1.2.826.0.1.3680043.2.1125.2", "SWI")
    parsed = []
    monkeypatch.setattr(pydicom, "dcmread", lambda name, **kw: parsed.append(name) or pydicom.filereader.dcmread(name, **kw))
    image, datasets = read_volume_and_headers(tmp_path / "dicom")
    assert sorted(parsed) == sorted(str(p) for p in (tmp_path / "dicom").iterdir())  # every file once, no more
    positions = [[float(v) for v in ds.ImagePositionPatient] for ds in datasets]
    np.testing.assert_allclose(positions, [image.TransformIndexToPhysicalPoint((0, 0, k)) for k in range(image.GetDepth())], atol=1e-3)
    assert read_volume_and_headers(_write(tmp_path, "vol.nrrd", original))[1] is None


def test_folder_with_two_series_asks_which(tmp_path: Path) -> None:
    original = _oblique_volume()
    _write_dicom_series(original, tmp_path / "dicom", "1.2.826.0.1.3680043.2.1125.2", "SWI")
    _write_dicom_series(original, tmp_path / "dicom", "1.2.826.0.1.3680043.2.1125.3", "Phase")
    with pytest.raises(VolumeError, match=r"holds 2 DICOM series; choose one with --series") as info:
        read_volume(tmp_path / "dicom")
    assert "1.2.826.0.1.3680043.2.1125.3" in str(info.value)
    chosen = read_volume(tmp_path / "dicom", series_uid="1.2.826.0.1.3680043.2.1125.3")
    assert chosen.GetSize() == original.GetSize()


def _write(tmp_path: Path, name: str, image: sitk.Image) -> Path:
    path = tmp_path / name
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: sitk.Image(16, 16, sitk.sitkFloat32) + 1.0, r"2D image; a 3D volume is needed"),
        (lambda: sitk.GetImageFromArray(np.random.rand(2, 4, 8, 8).astype(np.float32), isVector=False), r"4D image"),
        (lambda: sitk.GetImageFromArray(np.random.rand(4, 8, 8, 3).astype(np.float32), isVector=True), r"3 components per voxel"),
        (lambda: sitk.GetImageFromArray(np.full((4, 20, 20), 7, np.int16)), r"every voxel has the same value"),
        (lambda: sitk.GetImageFromArray(np.full((4, 20, 20), np.nan, np.float32)), r"1600 of 1600 voxels are NaN"),
        (lambda: sitk.GetImageFromArray(np.random.rand(1, 20, 20).astype(np.float32)), r"too small to hold a CMB"),
        (lambda: sitk.GetImageFromArray(np.random.rand(4, 8, 8).astype(np.float32)), r"matrix 8 x 8 x 4 .* too small"),
    ],
    ids=["2d", "4d", "vector", "constant", "all-nan", "single-slice", "tiny-8x8x4"],
)
def test_unusable_volumes_get_a_clear_error_naming_the_file(tmp_path: Path, make, message: str) -> None:
    path = _write(tmp_path, "bad.nrrd", make())
    with pytest.raises(VolumeError, match=message) as info:
        read_volume(path)
    assert str(path) in str(info.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match="no such file"):
        read_volume(tmp_path / "absent.nii.gz")
    junk = tmp_path / "junk.nii.gz"
    junk.write_text("not an image")
    with pytest.raises(VolumeError, match="cannot be read as an image"):
        read_volume(junk)
    with pytest.raises(VolumeError, match="no DICOM series"):
        read_volume(tmp_path)


def test_a_few_nan_voxels_are_counted_and_replaced_by_the_median(tmp_path: Path, caplog) -> None:
    array = np.random.default_rng(0).random((4, 20, 20)).astype(np.float32)
    array[0, 0, :3] = [np.nan, np.inf, -np.inf]
    # NRRD keeps NaN as stored (ITK's NIfTI reader turns NaN into 0 before anyone can count them).
    loaded = sitk.GetArrayFromImage(read_volume(_write(tmp_path, "v.nrrd", sitk.GetImageFromArray(array))))
    assert np.isfinite(loaded).all()
    np.testing.assert_allclose(loaded[0, 0, :3], np.median(array[np.isfinite(array)]))
    assert "3 NaN or infinite voxel(s)" in caplog.text


def test_ras_conversion_matches_sitk_physical_points() -> None:
    image = _oblique_volume()
    ijk = (3.0, 7.0, 2.0)
    lps = image.TransformContinuousIndexToPhysicalPoint(ijk)
    np.testing.assert_allclose(index_to_ras(image, ijk), lps_to_ras(lps))
    np.testing.assert_allclose(ras_to_index(image, index_to_ras(image, ijk)), ijk, atol=1e-9)
    many = np.array([[0, 0, 0], [1.5, 2.5, 3.5]])
    np.testing.assert_allclose(ras_to_index(image, index_to_ras(image, many)), many, atol=1e-9)
    np.testing.assert_allclose(lps_to_ras([1.0, 2.0, 3.0]), [-1.0, -2.0, 3.0])
