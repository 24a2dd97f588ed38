"""``cmb-detect`` and ``cmb-eval`` end to end: files per input, failures reported, exit codes."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk
from synthetic_cmb import write_dataset

from CMBDetectionLib.cli.detect import main as detect_main
from CMBDetectionLib.cli.evaluate import main as eval_main
from CMBDetectionLib.imageio.subject_files import subject_key


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), 2, shape_kji=(6, 64, 56))


@pytest.fixture(scope="module")
def run(random_unet_dir, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    inputs = [str(data / "syn00_swi.nii.gz"), str(data / "missing_swi.nii.gz"), str(data / "syn01_swi.nii.gz")]
    code = detect_main([*inputs, "-o", str(out), "--model-dir", str(random_unet_dir), "--device", "cpu", "--threshold", "0.6",
                        "--no-mars", "--save-probability", "-q"])
    return code, out


def test_every_input_gets_its_files_and_failures_set_exit_1(run, data, capsys):
    code, out = run
    assert code == 1  # the missing input failed, the others went on
    for stem in ("syn00_swi", "syn01_swi"):
        for suffix in ("_cmb.nii.gz", "_lesions.csv", "_cmb.seg.nrrd", "_lesions.mrk.json", "_prob.nii.gz"):
            assert (out / f"{stem}{suffix}").is_file()
        mask = sitk.ReadImage(str(out / f"{stem}_cmb.nii.gz"))
        source = sitk.ReadImage(str(data / f"{stem}.nii.gz"))
        assert mask.GetSize() == source.GetSize() and mask.GetPixelID() == sitk.sitkUInt8
        np.testing.assert_allclose(mask.GetOrigin(), source.GetOrigin(), atol=1e-4)
        n_rows = len(list(csv.DictReader(open(out / f"{stem}_lesions.csv"))))
        n_components = int(sitk.GetArrayFromImage(sitk.ConnectedComponent(mask)).max())
        assert n_rows == n_components
    assert not list(out.glob("missing*"))


def test_cmb_eval_pairs_phantom_truth_with_detect_output(run, data, tmp_path, capsys):
    _, out = run
    report = tmp_path / "report.csv"
    assert eval_main(["--gt", str(data), "--pred", str(out), "-o", str(report), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "syn00" in printed and "median" in printed
    rows = list(csv.DictReader(open(report)))
    assert [r["subject"] for r in rows] == ["syn00", "syn01", "mean", "median"]
    assert rows[0]["auc_roc"] not in ("", "nan")  # the probability map was paired too
    assert subject_key(out / "syn00_swi_cmb.nii.gz") == subject_key(data / "syn00_cmb.nii.gz") == "syn00"


@pytest.mark.parametrize("argv, message", [
    (["-o", "x"], "no INPUT"),
    (["a.nii.gz", "-o", "x", "--threshold", "1.5"], "--threshold"),
])
def test_cmb_detect_bad_command_lines(argv, message, capsys):
    assert detect_main(argv) == 1
    assert message in capsys.readouterr().err


def test_cmb_detect_missing_model(data, tmp_path, capsys):
    assert detect_main([str(data / "syn00_swi.nii.gz"), "-o", str(tmp_path), "--model-dir", str(tmp_path / "none"),
                        "--backend", "tensorflow"]) == 1
    assert "cmb-train" in capsys.readouterr().err


def test_cmb_eval_bad_folders(tmp_path, capsys):
    assert eval_main(["--gt", str(tmp_path / "nope"), "--pred", str(tmp_path)]) == 1
    assert "not a folder" in capsys.readouterr().err
    assert eval_main(["--gt", str(tmp_path), "--pred", str(tmp_path)]) == 1
    assert "no subject" in capsys.readouterr().err


@pytest.mark.parametrize("flags, expected", [([], (True, True)), (["--no-lesion-filter"], (False, True)),
                                             (["--detector-outlines"], (True, False))])
def test_cmb_detect_passes_the_filter_and_outline_choices_to_the_engine(data, tmp_path, monkeypatch, flags, expected):
    import CMBDetectionLib.pipeline as pipeline

    seen = {}

    def spy(image, **kwargs):
        seen.update(kwargs)
        raise ValueError("stop after the call")

    monkeypatch.setattr(pipeline, "detect", spy)
    code = detect_main([str(data / "syn00_swi.nii.gz"), "-o", str(tmp_path), "--backend", "onnxruntime", "-q", *flags])
    assert code == 1 and (seen["use_lesion_filter"], seen["redraw_outlines"]) == expected and seen["threshold"] is None
