"""Result file stems: safe on every file system, distinct per input, a clash refused before any work; and
``cmb-detect``'s one-line errors for output folder problems."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from CMBDetectionLib.cli.detect import main as detect_main
from CMBDetectionLib.lesions.extraction import extract_lesions
from CMBDetectionLib.outputs import markups
from CMBDetectionLib.outputs.stems import distinct_stems, safe_stem
from CMBDetectionLib.results import DetectionResult


@pytest.mark.parametrize("name, stem", [
    ("6: SWI_Images", "6_SWI_Images"),  # a DICOM-loaded Slicer volume name; ':' is refused by Windows
    ("sub-01 swi/../x", "sub-01_swi_.._x"),
    ("caf\udce9", "caf"),  # a non-UTF-8 byte, as Python decodes it from a file name
    ("Müller.v2+", "Müller.v2+"),
    ("aux.nii", "aux.nii_"),
    ("?*", "volume"),
])
def test_safe_stem(name, stem):
    assert safe_stem(name) == stem


def test_same_stems_get_their_parent_folder_and_a_remaining_clash_is_refused(tmp_path):
    assert distinct_stems([tmp_path / "sub-01" / "SWI", tmp_path / "sub-02" / "swi", tmp_path / "t2.nii.gz"]) == [
        "sub-01_SWI", "sub-02_swi", "t2"]
    with pytest.raises(ValueError, match=r"x\.mha and .*x\.nii\.gz would both write the result files d_x_\*"):
        distinct_stems([tmp_path / "d" / "x.mha", tmp_path / "d" / "x.nii.gz"])
    with pytest.raises(ValueError, match="given twice"):
        distinct_stems([tmp_path / "a.nrrd", tmp_path / "." / "a.nrrd"])


@pytest.fixture
def detected(monkeypatch):
    """``cmb-detect``'s engine replaced by a fast stand-in (dark voxels are CMBs); records the images it saw."""
    import CMBDetectionLib.pipeline as pipeline

    seen = []

    def dark_voxels(image, **kwargs):
        seen.append(image)
        labels, lesions = extract_lesions((sitk.GetArrayFromImage(image) < 100).astype(np.float32), image, 0.5)
        return DetectionResult(image, labels.astype(np.float32), labels, lesions, {"seconds": 0.0})

    monkeypatch.setattr(pipeline, "detect", dark_voxels)
    return seen


def write_subject(path, n_cmbs: int) -> None:
    """A bright volume with ``n_cmbs`` dark 3x3x3 cubes."""
    array = np.full((8, 40, 40), 400, np.float32)
    for n in range(n_cmbs):
        array[3:6, 5 + 10 * n : 8 + 10 * n, 10:13] = 50
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))


def test_inputs_with_the_same_stem_get_distinct_files(tmp_path, detected):
    for subject in (1, 2):
        write_subject(tmp_path / f"sub-0{subject}" / "swi.nii.gz", subject)
    inputs = [str(tmp_path / f"sub-0{subject}" / "swi.nii.gz") for subject in (1, 2)]
    assert detect_main([*inputs, "-o", str(tmp_path / "out"), "--method", "two-stage", "-q"]) == 0
    for subject in (1, 2):
        with open(tmp_path / "out" / f"sub-0{subject}_swi_lesions.csv") as handle:
            assert len(handle.readlines()) == 1 + subject  # header + the subject's own CMBs


def test_a_stem_clash_is_refused_before_any_work(tmp_path, detected, capsys):
    for suffix in (".mha", ".nii.gz"):
        write_subject(tmp_path / f"x{suffix}", 1)
    code = detect_main([str(tmp_path / "x.mha"), str(tmp_path / "x.nii.gz"), "-o", str(tmp_path / "out"),
                        "--method", "two-stage", "-q"])
    error = capsys.readouterr().err
    assert code == 1 and "would both write the result files" in error and len(error.splitlines()) == 1
    assert detected == [] and not (tmp_path / "out").exists()


def test_an_output_path_naming_a_file_is_refused_before_any_work(tmp_path, detected, capsys):
    write_subject(tmp_path / "x.nii.gz", 1)
    (tmp_path / "out").write_text("")
    assert detect_main([str(tmp_path / "x.nii.gz"), "-o", str(tmp_path / "out"), "--method", "two-stage", "-q"]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err and detected == []


def test_a_full_disk_is_one_line_and_the_next_input_still_runs(tmp_path, detected, monkeypatch, capsys):
    for name in ("a", "b"):
        write_subject(tmp_path / f"{name}.nii.gz", 1)
    write = markups.write_markups

    def full_for_a(lesions, path):
        if path.name.startswith("a_"):
            raise OSError(28, "No space left on device")
        return write(lesions, path)

    monkeypatch.setattr(markups, "write_markups", full_for_a)
    code = detect_main([str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz"), "-o", str(tmp_path / "out"),
                        "--method", "two-stage", "-q"])
    errors = capsys.readouterr().err.splitlines()
    assert code == 1 and len(errors) == 2 and "No space left on device" in errors[0] and "1 of 2" in errors[1]
    assert sorted(p.name for p in (tmp_path / "out").glob("*_cmb.nii.gz")) == ["b_cmb.nii.gz"]
