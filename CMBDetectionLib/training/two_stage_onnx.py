"""Export the two-stage method's ResNet50 classifier to ONNX, so detection runs with ONNX Runtime alone.

The graph takes ``patches: (batch, p, p, 3) float32`` (the output of ``classifier.to_network_input``) and returns
``cmb_probability: (batch, 1)``. Weights are *stored* smaller and read back as float32, so the arithmetic stays
float32 (ONNX Runtime converts them once when the session starts):

- ``float16`` (the default export): every large weight as float16, read through a ``Cast`` node; half the size;
- ``int8``: the large convolution kernels as int8 with one scale per output channel, read through
  ``DequantizeLinear``, the rest as float16; a quarter of the size. :func:`requantise_folder` converts a folder's
  float16 export, so a model shipped without ``weights.npz`` can be stored so too; the card records the measured
  difference.

Needs TensorFlow, tf2onnx and onnx (training dependencies) to export, onnx alone to requantise; running the file
needs only onnxruntime.

    python -m CMBDetectionLib.training.two_stage_onnx models/resnet50 [--drop-npz] [--storage int8]
    python -m CMBDetectionLib.training.two_stage_onnx models/resnet50 --requantise

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
#: smaller convolution kernels (the first layer's, the first stage's 1x1s) stay float16: 1 % of the weights, and on
#: held-out patches keeping them halved the probability change int8 makes (mean 0.0076 -> 0.0033)
MIN_INT8_SIZE = 65536
STORAGES = ("float32", "float16", "int8")


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


def _int8_per_channel(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 values and one float32 scale per output channel (axis 0) of a convolution kernel.

    >>> q, scale = _int8_per_channel(np.array([[[[0.5, -1.0]]], [[[0.0, 0.0]]]], np.float32))
    >>> q.ravel().tolist(), scale.tolist()
    ([64, -127, 0, 0], [0.007874015718698502, 1.0])
    """
    peak = np.abs(kernel.astype(np.float32)).reshape(len(kernel), -1).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    values = np.clip(np.round(kernel / scale.reshape(-1, *[1] * (kernel.ndim - 1))), -127, 127).astype(np.int8)
    return values, scale


def store_int8(model_proto, min_size: int = MIN_INT8_SIZE):
    """Store every convolution kernel with at least ``min_size`` weights as int8 (:func:`_int8_per_channel`), read
    back through ``DequantizeLinear`` to float32 under its old name; a kernel stored as float16
    (:func:`store_float16`) is quantised from those values and its ``Cast`` replaced. Returns the model."""
    from onnx import helper, numpy_helper

    graph = model_proto.graph
    initialisers = {tensor.name: tensor for tensor in graph.initializer}
    kernels = {node.input[1] for node in graph.node if node.op_type == "Conv"}
    casts = {node.output[0]: node for node in graph.node if node.op_type == "Cast" and node.input[0] in initialisers}
    replaced, nodes = set(), []
    for name in sorted(kernels):
        stored = casts[name].input[0] if name in casts else name
        if stored not in initialisers:  # already dequantised, or computed
            continue
        values = numpy_helper.to_array(initialisers[stored])
        if values.size < min_size:
            continue
        quantised, scale = _int8_per_channel(values)
        graph.initializer.extend([numpy_helper.from_array(quantised, f"{name}__int8"),
                                  numpy_helper.from_array(scale, f"{name}__scale")])
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}__int8", f"{name}__scale"], [name], axis=0,
                                      name=f"{name}__dequantise"))
        replaced.add(stored)
    kept_nodes = [node for node in graph.node if not (node.op_type == "Cast" and node.input[0] in replaced)]
    kept_initialisers = [tensor for tensor in graph.initializer if tensor.name not in replaced]
    del graph.node[:], graph.initializer[:]
    graph.node.extend(nodes + kept_nodes)
    graph.initializer.extend(kept_initialisers)
    return model_proto


def _store(path: Path, storage: str) -> None:
    """Rewrite the float32 ONNX file at ``path`` with ``storage`` (one of :data:`STORAGES`)."""
    import onnx

    if storage == "float32":
        return
    converted = store_float16(onnx.load(str(path)))
    if storage == "int8":
        converted = store_int8(converted)
    onnx.checker.check_model(converted)
    onnx.save(converted, str(path))


def export_classifier(model, path: str | os.PathLike, *, storage: str = "float16") -> Path:
    """Write the Keras classifier ``model`` to ``path`` as ONNX with weights stored as ``storage``; returns it."""
    if storage not in STORAGES:
        raise ValueError(f"storage {storage!r} unknown; choose one of {', '.join(STORAGES)}.")
    path = Path(path)
    export_onnx(model, path, size=int(model.input_shape[1]), channels=3, input_name=INPUT_NAME)
    _store(path, storage)
    return path


def _next_minor(version: object) -> str:
    """``"1.0"`` -> ``"1.1"``: the same weights in another format."""
    major, _, minor = str(version).partition(".")
    return f"{major}.{int(minor.split('.')[0] or 0) + 1}"


def onnx_card(card: dict[str, Any], *, drop_npz: bool, check: dict[str, float], storage: str = "float16") -> dict[str, Any]:
    """``card`` updated for the ONNX export: name, version (minor bump), storage, the measured agreement."""
    out = {k: v for k, v in card.items() if k != "files"}
    out.update(version=_next_minor(card.get("version", "1.0")), onnx=ONNX_NAME)
    out["format_change"] = (f"v{out['version']}: the v{card.get('version')} weights exported to {ONNX_NAME} ({storage} "
                            "storage, float32 arithmetic); detection needs no TensorFlow. Weights unchanged.")
    out["onnx_check"] = check
    if drop_npz:
        out.pop("weights", None)
        out["storage"] = (f"{ONNX_NAME} only; weights.npz (Keras, float16) is needed only to continue training: "
                          f"restore it with `git show <v{card.get('version')} commit>:models/resnet50/weights.npz`")
    return out


def score_difference(before: np.ndarray, after: np.ndarray) -> dict[str, float]:
    """Max and mean absolute difference of two models' probabilities on the same patches, and how many patches fall
    on the other side of 0.5.

    >>> score_difference(np.array([0.2, 0.6]), np.array([0.25, 0.4]))["decisions_changed_at_0.5"]
    1
    """
    difference = np.abs(np.asarray(before, float) - np.asarray(after, float))
    return {"patches": int(len(difference)), "max_abs_diff": float(difference.max()),
            "mean_abs_diff": float(difference.mean()),
            "decisions_changed_at_0.5": int(np.sum((np.asarray(before) >= 0.5) != (np.asarray(after) >= 0.5)))}


def agreement(model, path: Path, network_input: np.ndarray) -> dict[str, float]:
    """:func:`score_difference` of ``model`` (TensorFlow) and the ONNX file at ``path``."""
    from CMBDetectionLib.probability.two_stage.runtime import OnnxClassifier

    keras_scores = np.asarray(model.predict_on_batch(network_input), np.float32).reshape(-1)
    return score_difference(keras_scores, OnnxClassifier(path, device="cpu").predict(network_input))


def _random_input(size: int) -> np.ndarray:
    from CMBDetectionLib.probability.two_stage.classifier import to_network_input

    return to_network_input(np.random.default_rng(0).random((32, size, size, 3), dtype=np.float32))


def add_onnx_to_resnet_dir(folder: str | os.PathLike, check_input: np.ndarray | None = None, *,
                           drop_npz: bool = False, storage: str = "float16") -> Path:
    """Export the model in ``folder`` to ``folder/resnet50.onnx``, list it in the card (minor version bump) and,
    with ``drop_npz``, delete ``weights.npz``. ``check_input`` (network input, default: 32 random patches) measures
    the agreement recorded in the card."""
    from CMBDetectionLib.model_store import load_card, write_card
    from CMBDetectionLib.probability.two_stage.classifier import load_classifier

    folder = Path(folder)
    model, _ = load_classifier(folder)
    path = export_classifier(model, folder / ONNX_NAME, storage=storage)
    if check_input is None:
        check_input = _random_input(int(model.input_shape[1]))
    card = onnx_card(load_card(folder), drop_npz=drop_npz, check=agreement(model, path, check_input), storage=storage)
    files = [ONNX_NAME] + ([] if drop_npz else [card.get("weights", "weights.npz")])
    if drop_npz:
        (folder / "weights.npz").unlink(missing_ok=True)
    write_card(folder, card, files)
    return path


def requantise_folder(folder: str | os.PathLike, check_input: np.ndarray | None = None) -> dict[str, Any]:
    """Store the large convolution kernels of ``folder/resnet50.onnx`` as int8 (:func:`store_int8`), in place, bump
    the card's minor version and record the change in the probabilities on ``check_input`` (network input,
    default: 32 random patches); returns that record."""
    import onnx

    from CMBDetectionLib.model_store import load_card, write_card
    from CMBDetectionLib.probability.two_stage.runtime import OnnxClassifier

    folder = Path(folder)
    path, card = folder / ONNX_NAME, load_card(folder)
    if check_input is None:
        check_input = _random_input(int(card["input_shape"][0]))
    before = OnnxClassifier(path, device="cpu").predict(check_input)
    def dequantised(model_proto) -> int:
        return sum(node.op_type == "DequantizeLinear" for node in model_proto.graph.node)

    original = onnx.load(str(path))
    already = dequantised(original)
    converted = store_int8(original)
    if dequantised(converted) == already:
        raise ValueError(f"{path} has no float convolution kernel of {MIN_INT8_SIZE} weights or more to store as int8 "
                         "(is it int8 already?); nothing was changed.")
    onnx.checker.check_model(converted)
    trial = path.with_suffix(".int8.onnx")  # the shipped file is replaced only once the new one runs
    try:
        onnx.save(converted, str(trial))
        after = OnnxClassifier(trial, device="cpu").predict(check_input)
    except BaseException:
        trial.unlink(missing_ok=True)
        raise
    record = {"storage": "int8 convolution kernels (one scale per output channel), the rest float16; float32 "
                         "arithmetic", **score_difference(before, after)}
    trial.replace(path)
    out = {k: v for k, v in card.items() if k != "files"}
    out.update(version=_next_minor(card.get("version", "1.0")), int8_storage=record)
    out["format_change"] = f"v{out['version']}: the v{card.get('version')} model with {record['storage']}."
    write_card(folder, out, list(card.get("files", [ONNX_NAME])))
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export a two-stage ResNet50 model folder to ONNX.")
    parser.add_argument("folder", type=Path, help="model folder with model_card.json and weights.npz")
    parser.add_argument("--drop-npz", action="store_true", help="delete weights.npz afterwards (ship ONNX only)")
    parser.add_argument("--storage", choices=STORAGES, default="float16",
                        help="how the weights are stored (default float16; int8: a quarter of float32)")
    parser.add_argument("--requantise", action="store_true",
                        help="store the folder's existing float16 resnet50.onnx as int8 (no weights.npz needed)")
    args = parser.parse_args(argv)
    if args.requantise:
        print(requantise_folder(args.folder))
        return 0
    print(add_onnx_to_resnet_dir(args.folder, drop_npz=args.drop_npz, storage=args.storage))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
