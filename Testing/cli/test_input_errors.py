"""Bad inputs and bad places on the command line: one-line errors, the other inputs still processed.

Covers ``cmb-eval``'s and ``cmb-train``'s grid checks and missing predictions, ``cmb-detect`` with an output path
that is a file, an unwritable folder, a file name that is not UTF-8 and a tiny volume among good inputs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from repo_paths import REPO_ROOT
from synthetic_cmb import write_dataset

from CMBDetectionLib.cli.detect import main as detect_main
from CMBDetectionLib.cli.evaluate import main as eval_main
from CMBDetectionLib.errors import VolumeError
from CMBDetectionLib.training.data import TrainingPair, read_labelled


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), 2, shape_kji=(6, 64, 56))


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) >= 1 and "Traceback" not in err, err
    return lines[0]


def test_cmb_eval_refuses_a_prediction_shifted_50mm_with_other_spacing(data, tmp_path, capsys):
    truth = sitk.ReadImage(str(data / "syn00_cmb.nii.gz"))
    shifted = sitk.Image(truth)  # the same voxels: on the array alone this scores Dice 1
    shifted.SetOrigin(tuple(np.add(truth.GetOrigin(), (50.0, 0, 0))))
    shifted.SetSpacing(tuple(s * 1.2 for s in truth.GetSpacing()))
    pred = tmp_path / "pred"
    pred.mkdir()
    sitk.WriteImage(shifted, str(pred / "syn00_swi_cmb.nii.gz"))
    assert eval_main(["--gt", str(data), "--pred", str(pred), "-q"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "not on the grid of its ground truth" in line and "spacing" in line


def test_cmb_eval_names_missing_predictions_and_fails_under_strict(data, tmp_path, capsys):
    pred = tmp_path / "pred"
    pred.mkdir()
    sitk.WriteImage(sitk.ReadImage(str(data / "syn00_cmb.nii.gz")), str(pred / "syn00_swi_cmb.nii.gz"))
    assert eval_main(["--gt", str(data), "--pred", str(pred), "-q"]) == 0
    captured = capsys.readouterr()
    assert "1 subject(s) have ground truth but no prediction" in captured.err and "syn01" in captured.err
    assert "syn00" in captured.out and "syn01" not in captured.out
    assert eval_main(["--gt", str(data), "--pred", str(pred), "--strict", "-q"]) == 1
    assert "syn01" in _one_error_line(capsys.readouterr().err)


def test_training_refuses_a_mask_off_its_volumes_grid(data, tmp_path):
    mask = sitk.ReadImage(str(data / "syn00_cmb.nii.gz"))
    mask.SetDirection(sitk.VersorTransform((0, 0, 1), 0.3).GetMatrix())
    sitk.WriteImage(mask, str(tmp_path / "rotated_cmb.nii.gz"))
    pair = TrainingPair("syn00", data / "syn00_swi.nii.gz", tmp_path / "rotated_cmb.nii.gz")
    with pytest.raises(VolumeError, match="direction"):
        read_labelled(pair)


def _detect(args: list[str], model: Path) -> list[str]:
    return [*args, "--model-dir", str(model), "--device", "cpu", "--no-mars", "-q"]


def test_cmb_detect_output_naming_a_file_is_one_line(data, tmp_path, random_unet_dir, capsys):
    target = tmp_path / "results.txt"
    target.write_text("")
    assert detect_main(_detect([str(data / "syn00_swi.nii.gz"), "-o", str(target)], random_unet_dir)) == 1
    assert "is a file, not a folder" in _one_error_line(capsys.readouterr().err)


def test_cmb_detect_unwritable_output_is_one_line_and_names_permission(data, tmp_path, random_unet_dir, capsys):
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o500)
    if os.access(out, os.W_OK):
        pytest.skip("running as root: permissions do not stop writing")
    assert detect_main(_detect([str(data / "syn00_swi.nii.gz"), "-o", str(out)], random_unet_dir)) == 1
    assert "ermission" in _one_error_line(capsys.readouterr().err)


def test_a_tiny_volume_fails_alone_and_the_others_are_processed(data, tmp_path, random_unet_dir, capsys):
    tiny = tmp_path / "tiny.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)), str(tiny))
    out = tmp_path / "out"
    assert detect_main(_detect([str(tiny), str(data / "syn00_swi.nii.gz"), "-o", str(out)], random_unet_dir)) == 1
    assert "matrix 8 x 8 x 4" in _one_error_line(capsys.readouterr().err)
    assert (out / "syn00_swi_cmb.nii.gz").is_file() and not list(out.glob("tiny*"))


def test_a_file_name_that_is_not_utf8_does_not_stop_later_inputs(data, tmp_path, random_unet_dir):
    """Run as a process: on the old code ITK aborted it (exit 134) and skipped the later inputs."""
    bad = os.fsencode(tmp_path) + b"/bad\xff_swi.nii.gz"
    Path(os.fsdecode(bad)).write_bytes((data / "syn01_swi.nii.gz").read_bytes())
    out = tmp_path / "out"
    argv = _detect([os.fsdecode(bad), str(data / "syn00_swi.nii.gz"), "-o", str(out)], random_unet_dir)
    done = subprocess.run([sys.executable, "-m", "CMBDetectionLib.cli.detect",
                           *[os.fsencode(a) for a in argv]], capture_output=True, cwd=REPO_ROOT, timeout=300)
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 1, err
    assert "not UTF-8" in _one_error_line(err)
    assert (out / "syn00_swi_cmb.nii.gz").is_file()
