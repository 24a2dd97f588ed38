"""Fuzzing the input stage: truncated, bit-flipped and header-edited NIfTI, NRRD and DICOM files.

Each case is a damaged copy of a small valid volume, read by ``read_volume`` (what ``cmb-detect`` runs on each
input before any compute) in one child process, so that a crash or a hang fails the test instead of killing it.
30 cases per format, from a fixed seed. What must hold, per kind of damage:

- never a crash, a hang (120 s for all cases) or an exception other than the one-line ``VolumeError``;
- truncated anywhere: refused;
- bytes flipped inside a gzip stream (``.nii.gz``): refused, or read identically (a flip in the gzip header's
  time stamp changes nothing);
- bytes flipped in the voxel data of an uncompressed file (``.nii``, raw NRRD, a DICOM slice): these formats
  hold no checksum, so the read may succeed, but with the original geometry and changed values only in the
  voxels the flipped bytes store (or refused, e.g. as too many NaNs);
- header fields that size the data edited (NIfTI ``dim``/``datatype``/``bitpix``/``vox_offset``, NRRD ``sizes``,
  DICOM ``Rows``/``Columns``/``BitsAllocated``): refused, or read identically.

A few full ``cmb-detect`` runs on damaged files check the same through the command line.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from repo_paths import REPO_ROOT
from synthetic_dicom import write_mr_series

CASES_PER_FORMAT = 30
SEED = 20240
SHAPE_KJI = (5, 24, 24)

WORKER = """
import hashlib, json, sys
import SimpleITK as sitk
from CMBDetectionLib.errors import VolumeError
from CMBDetectionLib.imageio.volumes import read_volume
for path in sys.argv[1:]:
    try:
        image = read_volume(path)
        array = sitk.GetArrayFromImage(image)
        out = {"ok": True, "geometry": [image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()],
               "values": array.ravel().tolist()}
    except VolumeError as exc:
        out = {"ok": False, "error": "VolumeError", "message": str(exc)}
    except Exception as exc:
        out = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    print(json.dumps(out), flush=True)
"""


def _volume() -> sitk.Image:
    array = np.random.default_rng(3).integers(100, 900, SHAPE_KJI).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 2.0))
    image.SetOrigin((-12.0, 10.0, 4.0))
    return image


def _read_all(paths: list[Path]) -> list[dict]:
    done = subprocess.run([sys.executable, "-c", WORKER, *map(str, paths)], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and len(results) == len(paths), (
        f"reader crashed at {paths[len(results)] if len(results) < len(paths) else '?'}: {done.stderr[-2000:]}")
    return results


def _data_offset(path: Path, n_bytes: int) -> int:
    """Where the voxel data of an uncompressed single file starts: it fills the file's last ``n_bytes``."""
    return path.stat().st_size - n_bytes


def _flip(data: bytearray, rng: np.random.Generator, lo: int, hi: int) -> list[int]:
    positions = sorted(set(int(p) for p in rng.integers(lo, hi, rng.integers(1, 4))))
    for p in positions:
        data[p] ^= int(rng.integers(1, 256))
    return positions


def _nifti_header_edit(data: bytearray, rng: np.random.Generator) -> None:
    field = rng.choice(["dim", "datatype", "bitpix", "vox_offset"])
    if field == "dim":
        axis = int(rng.integers(1, 4))
        data[40 + 2 * axis:42 + 2 * axis] = struct.pack("<h", int(rng.integers(-5, 3000)))
    elif field == "datatype":
        data[70:72] = struct.pack("<h", int(rng.choice([1, 2, 8, 16, 64, 128, 511, 2304, 7])))
    elif field == "bitpix":
        data[72:74] = struct.pack("<h", int(rng.choice([0, 1, 8, 32, 64, 7])))
    else:
        data[108:112] = struct.pack("<f", float(rng.choice([0.0, 100.0, 352.0, 4000.0, 1e9, -4.0])))


def _nrrd_header_edit(data: bytearray, rng: np.random.Generator) -> bytearray:
    text = bytes(data)
    start = text.index(b"sizes: ")
    end = text.index(b"\n", start)
    sizes = [int(rng.integers(0, 40)) for _ in range(3)]
    return bytearray(text[:start] + b"sizes: " + " ".join(map(str, sizes)).encode() + text[end:])


def _cases(original: Path, kind: str, tmp: Path, rng: np.random.Generator, n_data_bytes: int) -> list[tuple]:
    """(path, damage, flipped voxel indices or None) for each damaged copy of ``original``."""
    source = bytearray(original.read_bytes())
    cases = []
    for n in range(CASES_PER_FORMAT):
        data, damage, voxels = bytearray(source), ("truncate", "flip", "header")[n % 3], None
        if damage == "truncate":
            data = data[: int(rng.integers(0, len(data)))]
        elif damage == "flip" and kind == "nii.gz":
            _flip(data, rng, 0, len(data))
        elif damage == "flip":
            offset = _data_offset(original, n_data_bytes)
            voxels = [(p - offset) // 2 for p in _flip(data, rng, offset, len(data))]  # int16 voxels
        elif kind == "nii":
            _nifti_header_edit(data, rng)
        elif kind == "nrrd":
            data = _nrrd_header_edit(data, rng)
        else:
            continue  # header edits of the other formats: see the DICOM test
        path = tmp / f"case{n:02d}_{original.name}"
        path.write_bytes(bytes(data))
        cases.append((path, damage, voxels))
    return cases


def _check(results: list[dict], cases: list[tuple], reference: dict) -> None:
    for result, (path, damage, voxels) in zip(results, cases, strict=True):
        label = f"{path.name} ({damage})"
        if not result["ok"]:
            assert result["error"] == "VolumeError", f"{label}: {result['error']}: {result['message']}"
            assert str(path) in result["message"] and "\n" not in result["message"], label
            continue
        assert damage != "truncate", f"{label}: a truncated file was read"
        assert result["geometry"] == reference["geometry"], f"{label}: read with another geometry"
        changed = np.flatnonzero(np.array(result["values"]) != np.array(reference["values"]))
        allowed = set(voxels or ())
        assert set(changed.tolist()) <= allowed, f"{label}: voxels changed that the damage did not touch"


@pytest.mark.parametrize("kind", ["nii.gz", "nii", "nrrd"])
def test_damaged_files_are_refused_or_read_as_the_damage_allows(tmp_path, kind):
    original = tmp_path / f"orig.{kind}"
    sitk.WriteImage(_volume(), str(original), useCompression=kind == "nii.gz")
    rng = np.random.default_rng([SEED, len(kind)])
    cases = _cases(original, kind, tmp_path, rng, int(np.prod(SHAPE_KJI)) * 2)
    reference, *results = _read_all([original] + [case[0] for case in cases])
    assert reference["ok"], reference
    _check(results, cases, reference)
    assert any(not r["ok"] for r in results)  # the damage was real


def test_damaged_dicom_slices_are_refused_or_read_as_the_damage_allows(tmp_path):
    import pydicom

    rng = np.random.default_rng(SEED)
    reference_folder = tmp_path / "orig"
    write_mr_series(_volume(), reference_folder, "SWI")
    folders, cases = [], []
    for n in range(CASES_PER_FORMAT):
        folder = tmp_path / f"case{n:02d}"
        files = write_mr_series(_volume(), folder, "SWI")
        k = int(rng.integers(0, len(files)))
        target, damage, voxels = files[k], ("truncate", "flip", "header")[n % 3], None
        data = bytearray(target.read_bytes())
        if damage == "truncate":
            target.write_bytes(bytes(data[: int(rng.integers(0, len(data)))]))
        elif damage == "flip":
            plane = SHAPE_KJI[1] * SHAPE_KJI[2]
            offset = len(data) - 2 * plane
            voxels = [k * plane + (p - offset) // 2 for p in _flip(data, rng, offset, len(data))]
            target.write_bytes(bytes(data))
        else:
            dataset = pydicom.dcmread(target)
            tag = str(rng.choice(["Rows", "Columns", "BitsAllocated"]))
            setattr(dataset, tag, int(rng.choice([0, 1, 8, 12, 23, 25, 64])))
            dataset.save_as(target)
        folders.append(folder)
        cases.append((folder, damage, voxels))
    reference, *results = _read_all([reference_folder, *folders])
    assert reference["ok"], reference
    _check(results, cases, reference)


@pytest.mark.slow
def test_cmb_detect_on_damaged_files_fails_in_one_line_and_processes_the_good_one(tmp_path, random_unet_dir):
    good = tmp_path / "good_swi.nii.gz"
    sitk.WriteImage(sitk.Cast(_volume(), sitk.sitkFloat32), str(good))
    data = good.read_bytes()
    cut = tmp_path / "cut_swi.nii.gz"
    cut.write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x55
    (tmp_path / "flip_swi.nii.gz").write_bytes(bytes(flipped))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "CMBDetectionLib.cli.detect", str(cut), str(tmp_path / "flip_swi.nii.gz"), str(good),
         "-o", str(out), "--model-dir", str(random_unet_dir), "--device", "cpu", "--no-mars", "-q"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert any("cut_swi" in line for line in errors) and any("flip_swi" in line for line in errors)
    assert sorted(p.name for p in out.glob("*_cmb.nii.gz")) == ["good_swi_cmb.nii.gz"]
