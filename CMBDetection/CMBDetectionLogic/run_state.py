"""What the "Detect microbleeds" button shows, from one state: text, enabled and a tooltip saying why.

>>> detect_button(RunState.NO_INPUT)
ButtonState(text='Detect microbleeds', enabled=False, tooltip='Select an SWI volume first.')
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any


class RunState(Enum):
    NO_INPUT = "no input"
    NOT_SCALAR = "input is not a scalar volume"
    READY = "ready"
    RUNNING = "running"
    CANCELLING = "cancelling"


@dataclass(frozen=True)
class ButtonState:
    text: str
    enabled: bool
    tooltip: str


_BUTTON = {
    RunState.NO_INPUT: ButtonState("Detect microbleeds", False, "Select an SWI volume first."),
    RunState.NOT_SCALAR: ButtonState("Detect microbleeds", False, "The selected volume is not a 3D scalar (SWI magnitude) volume."),
    RunState.READY: ButtonState("Detect microbleeds", True, "Detect cerebral microbleeds in the selected SWI volume."),
    RunState.RUNNING: ButtonState("Cancel", True, "Stop the running detection; earlier results are kept."),
    RunState.CANCELLING: ButtonState("Cancelling...", False, "Stopping the detection process."),
}


def detect_button(state: RunState) -> ButtonState:
    return _BUTTON[state]


def input_state(volume_node) -> RunState:
    """State before a run, from the selected input volume."""
    if volume_node is None:
        return RunState.NO_INPUT
    image = volume_node.GetImageData()
    if image is None or image.GetNumberOfScalarComponents() != 1:
        return RunState.NOT_SCALAR
    return RunState.READY


def _tensorflow_installed() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _two_stage_card() -> dict[str, Any]:
    """The card of the shipped (or ``$CMBDETECTION_MODELS_DIR``) two-stage model; ModelError when unreadable."""
    from CMBDetectionLib.model_store import load_card, model_dir
    from CMBDetectionLib.probability.two_stage.classifier import MODEL_NAME

    return load_card(model_dir(MODEL_NAME))


def method_note(
    method: str,
    card: Callable[[], dict[str, Any]] = _two_stage_card,
    tensorflow_installed: Callable[[], bool] = _tensorflow_installed,
) -> str:
    """What the panel says about a method before a run; empty when there is nothing to say.

    The two-stage classifier runs as ``two_stage.runtime.open_classifier`` picks it: the model's ONNX export on
    ONNX Runtime (which the first-use install brings), else its Keras weights on TensorFlow (never installed here).

    >>> method_note("two-stage", lambda: {"onnx": "resnet50.onnx"}, lambda: False)
    ''
    >>> method_note("two-stage", lambda: {"weights": "weights.npz"}, lambda: False)[:45]
    'The two-stage model has no ONNX export, and i'
    """
    from CMBDetectionLib.errors import ModelError

    if method != "two-stage":
        return ""
    try:
        found = card()
    except ModelError as exc:
        return f"The two-stage method cannot run: {exc}"
    if found.get("onnx") or (found.get("weights") and tensorflow_installed()):
        return ""
    return ("The two-stage model has no ONNX export, and its Keras weights need TensorFlow, which this module does "
            "not install. Choose the UNet, export the model (python -m CMBDetectionLib.training.two_stage_onnx "
            "FOLDER), or install TensorFlow: slicer.util.pip_install(['tensorflow']).")
