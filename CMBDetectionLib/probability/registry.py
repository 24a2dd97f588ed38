"""The probability methods by name: what a method must offer (:class:`ProbabilityMethod`) and which ones exist.

A method turns an SWI volume into a CMB probability map on the volume's own grid; the lesion stage takes it from
there, whatever the method. Each :class:`MethodEntry` names the model folder the method reads (under the models
root) and loads its implementation on first use, because implementations import TensorFlow or ONNX Runtime when
they run and importing the registry (and the pipeline) must stay light.

>>> sorted(METHODS), method_entry("two-stage").model_folder
(['two-stage', 'unet'], 'resnet50')
>>> method_entry("nnunet")
Traceback (most recent call last):
ValueError: method 'nnunet' unknown; choose one of unet, two-stage.
>>> probability = method_entry("unet").load().predict_probability(image, device="cpu")   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import SimpleITK as sitk


class ProbabilityMethod(Protocol):
    """The contract of a method (a module or an object): one function from a volume to a probability map."""

    def predict_probability(
        self,
        image: sitk.Image,
        *,
        device: str = "auto",
        backend: Any = "auto",
        progress: Callable[[float], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        model_dir: str | os.PathLike | None = None,
    ) -> np.ndarray:
        """CMB probability ``[k, j, i] float32`` in 0..1 on ``image``'s grid.

        ``device`` is ``auto``, ``cpu`` or ``gpu``; ``backend`` a backend name or a ready backend object;
        ``progress(fraction)`` gets 0..1; ``cancel()`` returning True raises ``errors.DetectionCancelled``;
        ``model_dir`` overrides the method's model folder. Bad arguments raise ``ValueError`` saying what to use.
        """
        ...


def _unet() -> ProbabilityMethod:
    from CMBDetectionLib.probability.unet import inference

    return inference


def _two_stage() -> ProbabilityMethod:
    from CMBDetectionLib.probability.two_stage import method

    return method


@dataclass(frozen=True)
class MethodEntry:
    """A registered method: its name, the shipped model folder it reads, and how to load its implementation."""

    name: str
    model_folder: str
    load: Callable[[], ProbabilityMethod]


METHODS: dict[str, MethodEntry] = {
    entry.name: entry
    for entry in (
        MethodEntry("unet", "unet", _unet),  # Ali et al. 2023: the 2D UNet slice by slice (the default)
        MethodEntry("two-stage", "resnet50", _two_stage),  # Afzal et al. 2022: k-means candidates + ResNet50
    )
}


def method_entry(name: str) -> MethodEntry:
    """The registered method ``name``; ValueError listing the registered names when there is none."""
    if name not in METHODS:
        raise ValueError(f"method {name!r} unknown; choose one of {', '.join(METHODS)}.")
    return METHODS[name]
