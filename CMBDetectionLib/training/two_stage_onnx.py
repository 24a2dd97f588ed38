"""Export the two-stage method's ResNet50 classifier to ONNX, so detection runs with ONNX Runtime alone.

The graph takes ``patches: (batch, p, p, 3) float32`` (the output of ``classifier.to_network_input``) and returns
``cmb_probability: (batch, 1)``. With ``float16=True`` (the default) every large weight is *stored* as float16 and
cast back to float32 by a ``Cast`` node, which ONNX Runtime folds once when the session starts: the file is half
the size and the arithmetic stays float32. The shipped weights were float16 already (``weights.npz``); the export
folds batch normalisation into the convolutions, so the stored values are rounded once more (the model card
records the measured difference to the TensorFlow model).

Needs TensorFlow, tf2onnx and onnx (training dependencies); running the file needs only onnxruntime.

    python -m CMBDetectionLib.training.two_stage_onnx models/resnet50 [--drop-npz]

>>> add_onnx_to_resnet_dir("runs/resnet50")             # doctest: +SKIP
PosixPath('runs/resnet50/resnet50.onnx')
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from CMBDetectionLib.training.onnx_export import export_onnx

ONNX_NAME = "resnet50.onnx"
INPUT_NAME = "patches"
MIN_FLOAT16_SIZE = 1024  # smaller tensors (biases, scales) stay float32: they cost nothing and keep full precision


def store_float16(model_proto, min_size: int = MIN_FLOAT16_SIZE):
    """Store every float32 initialiser of ``model_proto`` with at least ``min_size`` values as float16, read back
    through a ``Cast`` to float32 under its old name (so the graph computes in float32); returns the model."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model_proto.graph
    casts = []
    for index, tensor in enumerate(list(graph.initializer)):
        values = numpy_helper.to_array(tensor)
        if values.dtype != np.float32 or values.size < min_size:
            continue
        name = tensor.name  # read before the copy below renames ``tensor`` (the same message)
        stored = f"{name}__float16"
        graph.initializer[index].CopyFrom(numpy_helper.from_array(values.astype(np.float16), stored))
        casts.append(helper.make_node("Cast", [stored], [name], to=TensorProto.FLOAT, name=f"{stored}_cast"))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model_proto


def export_classifier(model, path: str | os.PathLike, *, float16: bool = True) -> Path:
    """Write the Keras classifier ``model`` to ``path`` as ONNX (float16 storage when ``float16``); returns it."""
    import onnx

    path = Path(path)
    export_onnx(model, path, size=int(model.input_shape[1]), channels=3, input_name=INPUT_NAME)
    if float16:
        converted = store_float16(onnx.load(str(path)))
        onnx.checker.check_model(converted)
        onnx.save(converted, str(path))
    return path


def _next_minor(version: object) -> str:
    """``"1.0"`` -> ``"1.1"``: the same weights in another format."""
    major, _, minor = str(version).partition(".")
    return f"{major}.{int(minor.split('.')[0] or 0) + 1}"


def onnx_card(card: dict[str, Any], *, drop_npz: bool, check: dict[str, float]) -> dict[str, Any]:
    """``card`` updated for the ONNX export: name, version (minor bump), storage, the measured agreement."""
    out = {k: v for k, v in card.items() if k != "files"}
    out.update(version=_next_minor(card.get("version", "1.0")), onnx=ONNX_NAME)
    out["format_change"] = (f"v{out['version']}: the v{card.get('version')} weights exported to {ONNX_NAME} (float16 "
                            "storage, float32 arithmetic); detection needs no TensorFlow. Weights unchanged.")
    out["onnx_check"] = check
    if drop_npz:
        out.pop("weights", None)
        out["storage"] = (f"{ONNX_NAME} only; weights.npz (Keras, float16) is needed only to continue training: "
                          f"restore it with `git show <v{card.get('version')} commit>:models/resnet50/weights.npz`")
    return out


def agreement(model, path: Path, network_input: np.ndarray) -> dict[str, float]:
    """Max and mean absolute difference of the probabilities of ``model`` (TensorFlow) and the ONNX file, and how
    many patches fall on the other side of 0.5."""
    from CMBDetectionLib.probability.two_stage.runtime import OnnxClassifier

    keras_scores = np.asarray(model.predict_on_batch(network_input), np.float32).reshape(-1)
    onnx_scores = OnnxClassifier(path, device="cpu").predict(network_input)
    difference = np.abs(keras_scores - onnx_scores)
    return {"patches": int(len(network_input)), "max_abs_diff": float(difference.max()),
            "mean_abs_diff": float(difference.mean()),
            "decisions_changed_at_0.5": int(np.sum((keras_scores >= 0.5) != (onnx_scores >= 0.5)))}


def add_onnx_to_resnet_dir(folder: str | os.PathLike, check_input: np.ndarray | None = None, *,
                           drop_npz: bool = False, float16: bool = True) -> Path:
    """Export the model in ``folder`` to ``folder/resnet50.onnx``, list it in the card (minor version bump) and,
    with ``drop_npz``, delete ``weights.npz``. ``check_input`` (network input, default: 32 random patches) measures
    the agreement recorded in the card."""
    from CMBDetectionLib.model_store import load_card, write_card
    from CMBDetectionLib.probability.two_stage.classifier import load_classifier, to_network_input

    folder = Path(folder)
    model, _ = load_classifier(folder)
    path = export_classifier(model, folder / ONNX_NAME, float16=float16)
    if check_input is None:
        size = int(model.input_shape[1])
        check_input = to_network_input(np.random.default_rng(0).random((32, size, size, 3), dtype=np.float32))
    card = onnx_card(load_card(folder), drop_npz=drop_npz, check=agreement(model, path, check_input))
    files = [ONNX_NAME] + ([] if drop_npz else [card.get("weights", "weights.npz")])
    if drop_npz:
        (folder / "weights.npz").unlink(missing_ok=True)
    write_card(folder, card, files)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export a two-stage ResNet50 model folder to ONNX.")
    parser.add_argument("folder", type=Path, help="model folder with model_card.json and weights.npz")
    parser.add_argument("--drop-npz", action="store_true", help="delete weights.npz afterwards (ship ONNX only)")
    parser.add_argument("--float32", action="store_true", help="store float32 weights (twice the size)")
    args = parser.parse_args(argv)
    print(add_onnx_to_resnet_dir(args.folder, drop_npz=args.drop_npz, float16=not args.float32))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
