"""Detection needs ONNX Runtime only: TensorFlow and Keras are the `[train]` extra (and Slicer does not install them)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

from repo_paths import REPO_ROOT

BLOCKED = ("tensorflow", "keras", "tf2onnx")


def test_cmb_detect_finds_the_demo_cmbs_with_tensorflow_and_keras_unimportable(tmp_path):
    code = (f"import sys; sys.modules.update({{name: None for name in {BLOCKED!r}}}); "
            "from CMBDetectionLib.cli.detect import main; "
            f"sys.exit(main(['--demo', '-o', {str(tmp_path)!r}, '--no-mars', '-q']))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-2000:]
    with open(tmp_path / "demo_swi_lesions.csv", newline="", encoding="utf-8") as handle:
        found = list(csv.DictReader(handle))
    truth = json.loads((REPO_ROOT / "CMBDetectionLib" / "data" / "demo_cmbs.json").read_text())
    assert len(found) >= 0.8 * len(truth)
