"""The second stage of the two-stage method: a ResNet50 that says CMB or not for one candidate patch.

Afzal et al. 2022 fine-tune an ImageNet ResNet50 on 224x224x3 patches. Here the input size is configurable
(64x64x3 for CPU training); the three channels are three adjacent axial slices (see ``patch_data``).
ImageNet weights are used when the user's machine has Keras' ``notop`` file (nothing is downloaded);
otherwise the network is trained from scratch. The model card records which.

>>> model = build_classifier(64)
>>> model.input_shape, model.output_shape
((None, 64, 64, 3), (None, 1))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from CMBDetectionLib.errors import ModelError
from CMBDetectionLib.model_store import load_weights_npz, model_dir, save_weights_npz, verified_card, write_card

MODEL_NAME = "resnet50"
DEFAULT_PATCH_SIZE = 64
MIN_PATCH_SIZE = 32  # ResNet50 downsamples 32x
IMAGENET_NOTOP = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


def imagenet_weights_path(explicit: str | os.PathLike | None = None) -> Path | None:
    """The ImageNet ``notop`` weights file: ``explicit`` if given (must exist), else Keras' cache if present."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ImageNet weights file not found; give the path of {IMAGENET_NOTOP}.")
        return path
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / IMAGENET_NOTOP
    return cache if cache.is_file() else None


def build_classifier(patch_size: int = DEFAULT_PATCH_SIZE, imagenet_weights: str | os.PathLike | None = None):
    """``keras.applications.ResNet50`` (no top, global average pooling) plus one sigmoid unit.

    ``imagenet_weights`` is a path to the ``notop`` .h5 file, or None for random initialisation.
    """
    import keras

    if patch_size < MIN_PATCH_SIZE:
        raise ValueError(f"patch size {patch_size} is too small for ResNet50; use at least {MIN_PATCH_SIZE}.")
    base = keras.applications.ResNet50(
        include_top=False,
        weights=str(imagenet_weights) if imagenet_weights is not None else None,
        input_shape=(patch_size, patch_size, 3),
        pooling="avg",
    )
    output = keras.layers.Dense(1, activation="sigmoid", name="cmb_probability")(base.output)
    return keras.Model(base.input, output, name="resnet50_cmb")


IMAGENET_BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)  # keras' resnet50 "caffe" preprocessing


def to_network_input(patches: np.ndarray) -> np.ndarray:
    """Patches normalised to ~0..1 -> ResNet50's expected input (0..255, channels reversed to BGR, ImageNet
    channel means removed: ``keras.applications.resnet50.preprocess_input``, in numpy so inference needs no Keras).

    The same mapping is used with and without ImageNet weights, so either model sees identical inputs.

    >>> to_network_input(np.ones((1, 1, 1, 3), np.float32)).astype(np.float64).round(3).tolist()
    [[[[151.061, 138.221, 131.32]]]]
    """
    scaled = np.clip(patches, 0.0, 1.5).astype(np.float32) * np.float32(255.0)
    return np.ascontiguousarray(scaled[..., ::-1] - IMAGENET_BGR_MEAN)


def save_classifier(model, folder: str | os.PathLike, card: dict[str, Any]) -> Path:
    """Write ``weights.npz`` (float16) and ``model_card.json`` (with sha256) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights_npz(model, folder / "weights.npz")
    card = dict(card, weights="weights.npz")
    return write_card(folder, card, ["weights.npz"])


def load_classifier(folder: str | os.PathLike | None = None) -> tuple[Any, dict[str, Any]]:
    """Build the ResNet50 of the card in ``folder`` (default: shipped ``models/resnet50``) with its verified weights."""
    folder = model_dir(MODEL_NAME, folder)
    card = verified_card(folder, "resnet50")
    patch_size = int(card.get("input_shape", [DEFAULT_PATCH_SIZE])[0])
    weights = folder / card.get("weights", "weights.npz")
    if not weights.is_file():
        raise ModelError(f"{weights}: weights file missing; reinstall or retrain with `cmb-train --method two-stage`.")
    model = build_classifier(patch_size)
    load_weights_npz(model, weights)
    return model, card
