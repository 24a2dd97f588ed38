"""Output folder rules: a failed or killed write leaves the earlier set intact, and one writer at a time.

A full disk is simulated by a writer raising ``OSError(28)`` half-way through its file; kills are real
``SIGKILL``s of a writing subprocess, stopped at a chosen point of the write.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from synthetic_cmb import synthetic_subject

from CMBDetectionLib.errors import OutputError
from CMBDetectionLib.lesions.extraction import extract_lesions
from CMBDetectionLib.mars.rating import count_table
from CMBDetectionLib.outputs import folder as folder_rules
from CMBDetectionLib.outputs import markups
from CMBDetectionLib.outputs.files import output_paths, read_outputs, write_outputs
from CMBDetectionLib.outputs.folder import folder_lock, output_folder, recover_interrupted
from CMBDetectionLib.results import DetectionResult

posix_only = pytest.mark.skipif(os.name == "nt", reason="uses SIGKILL")


def detection(seed: int, n_cmbs: int) -> DetectionResult:
    image, mask, _ = synthetic_subject(seed, n_cmbs=n_cmbs)
    probability = sitk.GetArrayFromImage(mask).astype(np.float32) * 0.9
    labels, lesions = extract_lesions(probability, image, 0.5)
    for lesion in lesions:
        lesion.region, lesion.category, lesion.side, lesion.certainty = "frontal", "lobar", "left", "definite"
    return DetectionResult(image, probability, labels, lesions, mars_counts=count_table(lesions))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file and folder in ``folder`` (folders as b"<dir>"), but the lock file."""
    return {p.name: b"<dir>" if p.is_dir() else p.read_bytes()
            for p in folder.iterdir() if p.name != folder_rules.LOCK_NAME}


@pytest.fixture
def earlier(tmp_path) -> tuple[Path, dict[str, bytes]]:
    """A folder holding an earlier run's six files of stem S, and their bytes."""
    out = tmp_path / "out"
    write_outputs(detection(1, 3), out, "S", save_probability=True)
    return out, snapshot(out)


def test_a_full_disk_midway_keeps_the_earlier_set_and_leaves_no_partial_files(earlier, monkeypatch):
    out, before = earlier

    def disk_full(lesions, path):
        Path(path).write_text('{"markups": [')  # half a file, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(markups, "write_markups", disk_full)
    with pytest.raises(OutputError, match="No space left on device.*earlier results there are unchanged"):
        write_outputs(detection(2, 1), out, "S")
    assert snapshot(out) == before


def test_a_failure_while_moving_files_in_puts_the_earlier_set_back(earlier, monkeypatch):
    out, before = earlier
    replace, moved_in = os.replace, []

    def failing_replace(source, target):
        if Path(source).parent.name.startswith(folder_rules.STAGING):
            moved_in.append(target)
            if len(moved_in) == 3:
                raise OSError(5, "Input/output error")
        replace(source, target)

    monkeypatch.setattr(folder_rules.os, "replace", failing_replace)
    with pytest.raises(OutputError, match="Input/output error"):
        write_outputs(detection(2, 1), out, "S")
    assert len(moved_in) == 3 and snapshot(out) == before


# A writer in another process, stopped for good at a chosen point: after the mask is written into the staging
# folder ("writing"), or at the n-th file move of the install ("moving:n"; 6 earlier files move out first).
WRITER = r"""
import os, sys, time
from pathlib import Path
import SimpleITK as sitk
from CMBDetectionLib.outputs import files, folder, lesion_mask

point, source, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
new = files.read_outputs(source, "S", sitk.ReadImage(str(source / "reference.nrrd")))

def stop():
    print("stopped", flush=True)
    time.sleep(600)

if point == "writing":
    write_mask = lesion_mask.write_lesion_mask
    lesion_mask.write_lesion_mask = lambda *args: (write_mask(*args), stop())
else:
    replace, calls = os.replace, []
    def counting_replace(a, b):
        calls.append(a)
        if len(calls) == int(point.split(":")[1]):
            stop()
        replace(a, b)
    folder.os.replace = counting_replace
files.write_output_set(new, out, "S")
"""


def run_until_stopped(tmp_path: Path, script: str, *args: str) -> subprocess.Popen:
    path = tmp_path / "script.py"
    path.write_text(script)
    process = subprocess.Popen([sys.executable, str(path), *args], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.strip() in ("stopped", "locked"), f"the subprocess ended early: {line!r}"
    return process


@posix_only
@pytest.mark.parametrize("point", ["writing", "moving:2", "moving:9"])
def test_a_kill_during_a_write_never_loses_the_earlier_set(earlier, tmp_path, point):
    out, before = earlier
    source = tmp_path / "new"
    new = detection(2, 1)
    write_outputs(new, source, "S")
    sitk.WriteImage(new.reference, str(source / "reference.nrrd"))
    process = run_until_stopped(tmp_path, WRITER, point, str(source), str(out))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    if point == "writing":
        assert {k: v for k, v in snapshot(out).items() if not k.startswith(".")} == before
    with folder_lock(out):
        recover_interrupted(out)  # what the next writer into the folder does first
    assert snapshot(out) == before
    assert len(read_outputs(out, "S", new.reference).records) == 3


HOLDER = r"""
import sys, time
from pathlib import Path
from CMBDetectionLib.outputs.folder import folder_lock

out = Path(sys.argv[1])
with folder_lock(out):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    (out / "released").write_text("")
"""


def test_a_second_writer_waits_for_the_lock_or_gives_up_with_one_line(tmp_path):
    out = output_folder(tmp_path / "out")
    holder = run_until_stopped(tmp_path, HOLDER, str(out), "2")
    with pytest.raises(OutputError, match="another process has been writing results here"):
        with folder_lock(out, timeout_s=0.2):
            pass
    paths = write_outputs(detection(2, 1), out, "S")  # waits until the holder lets go
    assert (out / "released").is_file() and paths["mask"].is_file()
    assert holder.wait(timeout=30) == 0


def test_the_output_folder_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        output_folder(tmp_path / "file")
    assert not any(path.exists() for path in output_paths(tmp_path, "file").values())
