"""Export the Keras slice UNet to ONNX, for the ONNX Runtime backend (:mod:`onnx_backend`).

Keras 3 exports through tf2onnx (``model.export(path, format="onnx")``). The graph takes
``swi_slice: (batch, 256, 256, 1) float32`` with a dynamic batch dimension and returns
``cmb_probability`` of the same shape. Height and width are fixed to the model grid because inference only ever
feeds 256x256 slices and fixed shapes let ONNX Runtime plan its memory once.

Export needs ``tf2onnx`` and ``onnx`` (training-time dependencies); running the exported file needs only
``onnxruntime``.

>>> export_onnx(build_unet(), "models/unet/unet.onnx")          # doctest: +SKIP
PosixPath('models/unet/unet.onnx')
>>> add_onnx_to_model_dir("models/unet")                        # doctest: +SKIP
PosixPath('models/unet/unet.onnx')
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from CMBDetectionLib.probability.unet.model_input import MODEL_SIZE

ONNX_NAME = "unet.onnx"
INPUT_NAME = "swi_slice"
OUTPUT_NAME = "cmb_probability"
BATCH_DIM = "batch"
OPSET = 17


def export_onnx(model, path: str | os.PathLike, size: int = MODEL_SIZE, opset: int = OPSET, *,
                channels: int = 1, input_name: str = INPUT_NAME) -> Path:
    """Write ``model`` (a Keras UNet with inference weights, or any Keras model taking ``(batch, size, size,
    channels)`` images) to ``path`` as ONNX; returns the path.

    The batch dimension stays dynamic; dropout and batch norm are exported in inference mode.
    """
    import keras

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = keras.InputSpec(shape=(None, size, size, channels), dtype="float32", name=input_name)
    # tf2onnx writes the raw graph; it is renamed and checked before it replaces ``path``.
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings():  # keras' numpy-2 patch of tf2onnx probes the removed ``np.object``
            warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)
            model.export(str(raw), format="onnx", input_signature=[spec], opset_version=opset, verbose=False)
        _finalise(raw, path)
    return path


def _finalise(raw: Path, path: Path) -> None:
    """Give the graph stable input/output names and a named batch dimension, check it, save it to ``path``."""
    import onnx

    graph_model = onnx.load(str(raw))
    graph = graph_model.graph
    old_output = graph.output[0].name
    for node in graph.node:
        node.output[:] = [OUTPUT_NAME if name == old_output else name for name in node.output]
    graph.output[0].name = OUTPUT_NAME
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(path))


def add_onnx_to_model_dir(folder: str | os.PathLike) -> Path:
    """Export the model stored in ``folder`` to ``folder/unet.onnx`` and list it (with sha256) in its card.

    The exported weights are the shipped float16 weights as loaded by :func:`model_store.load_unet`, so the
    TensorFlow and ONNX Runtime backends compute the same function.
    """
    from CMBDetectionLib.model_store import load_card, load_unet, write_card

    folder = Path(folder)
    path = export_onnx(load_unet(folder), folder / ONNX_NAME)
    card = load_card(folder)
    files = [name for name in card.get("files", {}) if name != ONNX_NAME] + [ONNX_NAME]
    write_card(folder, dict(card, onnx=ONNX_NAME), files)
    return path


if __name__ == "__main__":  # python -m CMBDetectionLib.training.onnx_export MODEL_DIR: add the export to a trained model
    import sys

    from CMBDetectionLib.model_store import model_dir

    print(add_onnx_to_model_dir(model_dir("unet", sys.argv[1] if len(sys.argv) > 1 else None)))
