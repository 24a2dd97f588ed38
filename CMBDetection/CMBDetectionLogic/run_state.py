"""What the "Detect microbleeds" button shows, from one state: text, enabled and a tooltip saying why.

>>> detect_button(RunState.NO_INPUT)
ButtonState(text='Detect microbleeds', enabled=False, tooltip='Select an SWI volume first.')
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


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


def method_note(method: str, tensorflow_installed: Callable[[], bool] = _tensorflow_installed) -> str:
    """What the panel says about a method before a run; empty when there is nothing to say.

    >>> method_note("two-stage", lambda: False)[:40]
    'The two-stage method needs TensorFlow, w'
    """
    if method == "two-stage" and not tensorflow_installed():
        return ("The two-stage method needs TensorFlow, which this module does not install (the UNet runs on ONNX "
                "Runtime). Choose the UNet, or install it: slicer.util.pip_install(['tensorflow']).")
    return ""
