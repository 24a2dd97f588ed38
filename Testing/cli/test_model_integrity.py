"""Model files are verified before use on every backend; a damaged or unsupported model is one line, exit 1."""

from __future__ import annotations

import json
import shutil

import pytest
from repo_paths import MODELS_DIR
from synthetic_cmb import write_dataset

from CMBDetectionLib.cli.detect import main as detect_main
from CMBDetectionLib.errors import ModelError
from CMBDetectionLib.model_store import CARD_NAME, load_card, write_card
from CMBDetectionLib.probability.backends.choice import make_backend

pytestmark = pytest.mark.skipif(not (MODELS_DIR / "unet" / "unet.onnx").is_file(), reason="no shipped ONNX UNet")


@pytest.fixture
def model(tmp_path):
    folder = tmp_path / "unet"
    shutil.copytree(MODELS_DIR / "unet", folder)
    return folder


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), 1, shape_kji=(6, 64, 56)) / "syn00_swi.nii.gz"


def _edit_card(folder, **changes) -> None:
    card = json.loads((folder / CARD_NAME).read_text())
    (folder / CARD_NAME).write_text(json.dumps({**card, **changes}))


def _flip_middle_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _regenerate_checksums(folder) -> None:
    """What a careless user does after editing a model: the card then vouches for the damaged file."""
    card = load_card(folder)
    write_card(folder, {k: v for k, v in card.items() if k != "files"}, list(card["files"]))


def _run(volume, out, model, backend: str, capsys) -> tuple[int, str]:
    code = detect_main([str(volume), "-o", str(out), "--model-dir", str(model), "--backend", backend,
                        "--device", "cpu", "--no-mars", "-q"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize("backend", ["onnxruntime", "tensorflow", "keras"])
def test_a_changed_model_version_is_refused_on_every_backend(model, backend):
    _edit_card(model, version="7.0.0")
    with pytest.raises(ModelError, match="version 7.0.0 is not supported"):
        make_backend(backend, model, "cpu")


def test_another_architecture_in_the_card_is_refused(model):
    _edit_card(model, architecture={**load_card(model)["architecture"], "upsampling": "bilinear"})
    with pytest.raises(ModelError, match="another architecture"):
        make_backend("onnxruntime", model, "cpu")


@pytest.mark.parametrize("backend", ["auto", "onnxruntime"])
def test_mid_file_onnx_corruption_is_one_line_and_no_output(model, volume, tmp_path, backend, capsys):
    _flip_middle_byte(model / "unet.onnx")
    code, err = _run(volume, tmp_path / "out", model, backend, capsys)
    assert code == 1 and "unet.onnx: checksum does not match the model card" in err  # no silent fall-back
    assert not list((tmp_path / "out").glob("*_cmb.nii.gz"))


def test_a_truncated_onnx_with_regenerated_checksums_is_one_line(model, volume, tmp_path, capsys):
    onnx = model / "unet.onnx"
    onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])
    _regenerate_checksums(model)
    code, err = _run(volume, tmp_path / "out", model, "onnxruntime", capsys)
    assert code == 1 and "ONNX Runtime cannot load this model" in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1


def test_damaged_weights_with_regenerated_checksums_are_one_line(model, volume, tmp_path, capsys):
    weights = model / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:1000])
    _regenerate_checksums(model)
    code, err = _run(volume, tmp_path / "out", model, "tensorflow", capsys)
    assert code == 1 and "weights.npz: the weights file is damaged" in err


def test_the_intact_copy_still_runs(model, volume, tmp_path, capsys):
    code, err = _run(volume, tmp_path / "out", model, "onnxruntime", capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "syn00_swi_cmb.nii.gz").is_file()
