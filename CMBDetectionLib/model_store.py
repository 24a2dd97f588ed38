"""Shipped models: where they live, their model cards, checksums and weights.

Layout: ``<models root>/<name>/model_card.json`` plus the files the card lists with their sha256. The root is
:func:`CMBDetectionLib.settings.models_root`: ``$CMBDETECTION_MODELS_DIR`` when set, else the installed model
package (the repository's top-level ``models/``).
Weights are stored as float16 arrays in an ``.npz`` (half the size, no measurable accuracy cost for this
network) and loaded into the float32 Keras model.

>>> card = load_card(model_dir("unet"))                       # doctest: +SKIP
>>> model = load_unet()                                        # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from CMBDetectionLib.errors import ModelError
from CMBDetectionLib.settings import MODELS_DIR_VAR, models_root

CARD_NAME = "model_card.json"
WEIGHTS_NAME = "weights.npz"
DEFAULT_THRESHOLD = 0.5


def model_dir(name: str = "unet", override: str | os.PathLike | None = None) -> Path:
    """Folder of model ``name`` (``override`` wins when given)."""
    return Path(override) if override is not None else models_root() / name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_card(folder: Path) -> dict[str, Any]:
    """Read ``model_card.json``; :class:`ModelError` when absent or unreadable."""
    card_path = Path(folder) / CARD_NAME
    if not card_path.is_file():
        raise ModelError(
            f"{folder}: no trained model here ({CARD_NAME} missing). Train one with `cmb-train DATA_DIR -o {folder}`, "
            f"or point {MODELS_DIR_VAR} (or --model-dir) at a folder holding one."
        )
    try:
        return json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{card_path}: not valid JSON ({exc}); restore the file from the release.") from exc


def verify_files(folder: Path, card: dict[str, Any]) -> None:
    """Check every file listed in ``card["files"]`` exists and matches its sha256."""
    for name, expected in card.get("files", {}).items():
        path = Path(folder) / name
        if not path.is_file():
            raise ModelError(f"{path}: listed in the model card but missing; reinstall or retrain the model.")
        if sha256_of(path) != expected:
            raise ModelError(f"{path}: checksum does not match the model card (file corrupted or replaced); reinstall it.")


SUPPORTED_VERSIONS = {"cmb-unet": (0,), "resnet50": (1,)}  # model name -> major versions this code can run
UNET_ARCHITECTURE = {"upsampling": "Conv2DTranspose 3x3 stride 2", "output": "sigmoid"}  # what build_unet makes
RESNET_ARCHITECTURE = "keras.applications.ResNet50"


def _major(version: object) -> int | None:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def check_supported(folder: Path, card: dict[str, Any], kind: str) -> None:
    """Refuse a card this code cannot run: a known model ``name`` of another major version, or an architecture
    other than ``kind``'s (``"unet"``: the paper UNet; ``"resnet50"``: the two-stage classifier). Cards of other
    names (your own experiments) are judged by their architecture alone.

    >>> check_supported(Path("m"), {"name": "cmb-unet", "version": "0.6.0"}, "unet")
    >>> check_supported(Path("m"), {"name": "cmb-unet", "version": "7.0"}, "unet")
    Traceback (most recent call last):
    ...
    CMBDetectionLib.errors.ModelError: m: model cmb-unet version 7.0 is not supported by this version of CMBDetection
    (it runs 0.x); install the matching CMBDetection release or use a supported model.
    """
    name, version = card.get("name"), card.get("version")
    if name in SUPPORTED_VERSIONS and _major(version) not in SUPPORTED_VERSIONS[name]:
        runs = ", ".join(f"{major}.x" for major in SUPPORTED_VERSIONS[name])
        raise ModelError(f"{folder}: model {name} version {version} is not supported by this version of CMBDetection "
                         f"(it runs {runs}); install the matching CMBDetection release or use a supported model.")
    architecture = card.get("architecture")
    if kind == "unet":
        declared = architecture if isinstance(architecture, dict) else {}
        wrong = {key: declared[key] for key, value in UNET_ARCHITECTURE.items() if key in declared and declared[key] != value}
        fits = architecture is None or (isinstance(architecture, dict) and not wrong)
    else:
        fits = architecture is None or (isinstance(architecture, str) and architecture.startswith(RESNET_ARCHITECTURE))
    if not fits:
        raise ModelError(f"{folder}: the model card describes another architecture ({architecture}) than the {kind} "
                         "this code builds; use a model made for this version.")


def verified_card(folder: Path, kind: str) -> dict[str, Any]:
    """The card of the model in ``folder``, checked to be supported (:func:`check_supported`) and with every file
    it lists matching its sha256 (:func:`verify_files`): call before using any file of a model."""
    card = load_card(folder)
    check_supported(Path(folder), card, kind)
    verify_files(folder, card)
    return card


def write_card(folder: Path, card: dict[str, Any], files: list[str]) -> Path:
    """Write ``card`` with the sha256 of ``files`` (names inside ``folder``) under ``"files"``."""
    folder = Path(folder)
    card = dict(card, files={name: sha256_of(folder / name) for name in files})
    path = folder / CARD_NAME
    path.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    return path


def save_weights_npz(model, path: Path) -> Path:
    """Store the model's weights as float16 arrays, keyed by position (``w000``, ``w001``...)."""
    arrays = {f"w{n:03d}": w.astype(np.float16) for n, w in enumerate(model.get_weights())}
    np.savez_compressed(path, **arrays)
    return Path(path)


def load_weights_npz(model, path: Path) -> None:
    """Load float16 weights saved by :func:`save_weights_npz` into a float32 model of the same architecture."""
    try:
        with np.load(path) as data:
            weights = [data[key].astype(np.float32) for key in sorted(data.files)]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise ModelError(f"{path}: the weights file is damaged ({exc}); reinstall or retrain the model.") from None
    expected = model.get_weights()
    if len(weights) != len(expected) or any(w.shape != e.shape for w, e in zip(weights, expected)):
        raise ModelError(f"{path}: weights do not fit the {model.name} architecture of this version; use a matching model.")
    model.set_weights(weights)


def operating_threshold(folder: str | os.PathLike | None = None) -> float:
    """The UNet's probability threshold chosen on validation data (card ``metrics.threshold``); 0.5 without one."""
    folder = model_dir("unet", folder)
    if not (folder / CARD_NAME).is_file():
        return DEFAULT_THRESHOLD
    return float(load_card(folder).get("metrics", {}).get("threshold", DEFAULT_THRESHOLD))


def load_unet(folder: str | os.PathLike | None = None):
    """Build the paper UNet and load the verified weights of the ``unet`` model (or of ``folder``)."""
    from CMBDetectionLib.probability.unet.network import build_unet

    folder = model_dir("unet", folder)
    card = verified_card(folder, "unet")
    weights = folder / card.get("weights", WEIGHTS_NAME)
    if not weights.is_file():
        raise ModelError(f"{weights}: weights file missing; reinstall or retrain the model.")
    model = build_unet(tuple(card.get("architecture", {}).get("encoder_filters", (16, 32, 64, 128))))
    load_weights_npz(model, weights)
    return model
