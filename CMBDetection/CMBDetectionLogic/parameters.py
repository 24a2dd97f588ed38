"""The user's choices for one detection run, validated, and their two spellings (engine call, CLI).

>>> settings = DetectionSettings(method="two-stage", device="cpu", threshold=0.4)
>>> settings.cli_args()
['--method', 'two-stage', '--device', 'cpu', '--threshold', '0.4']
>>> DetectionSettings(threshold=0.9, lesion_filter=False, redraw_outlines=False).cli_args()[-2:]
['--no-lesion-filter', '--detector-outlines']
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

#: method value -> label shown in the GUI
METHODS = {"unet": "UNet (end to end)", "two-stage": "Two-stage (k-means candidates + ResNet50)"}
#: device value -> label shown in the GUI
DEVICES = {"auto": "Auto (GPU if available)", "gpu": "GPU", "cpu": "CPU"}
#: each shipped model's operating threshold, by (method, 3D false-positive filter on): on the filter's lesion
#: score (chosen on validation data, ``lesion_filter.json``), else on the network's own output; constants because
#: the engine may not be installed yet when Slicer loads the module (a test keeps them equal to the cards)
DEFAULT_THRESHOLDS = {("unet", True): 0.2, ("unet", False): 0.95, ("two-stage", True): 0.2, ("two-stage", False): 0.5}
DEFAULT_THRESHOLD = DEFAULT_THRESHOLDS[("unet", True)]


def threshold_after_change(previous: tuple[str, bool] | None, current: tuple[str, bool]) -> float | None:
    """The threshold to show when the (method, filter) choice goes from ``previous`` to ``current``: that choice's
    default, since scores of another model or stage mean another thing; None when nothing changed or on the
    first look (a saved scene keeps its threshold).

    >>> threshold_after_change(("unet", True), ("two-stage", True)), threshold_after_change(None, ("unet", False))
    (0.2, None)
    """
    return DEFAULT_THRESHOLDS[current] if previous is not None and previous != current else None


class Method(str, Enum):
    """Detection method; ``label`` is what Slicer's parameter-node combo box shows."""

    UNET = "unet"
    TWO_STAGE = "two-stage"

    @staticmethod
    def label(member: Method) -> str:
        return METHODS[member.value]


class Device(str, Enum):
    AUTO = "auto"
    GPU = "gpu"
    CPU = "cpu"

    @staticmethod
    def label(member: Device) -> str:
        return DEVICES[member.value]


@dataclass(frozen=True)
class DetectionSettings:
    method: str = "unet"
    device: str = "auto"
    threshold: float = DEFAULT_THRESHOLD
    lesion_filter: bool = True  # the method's 3D false-positive filter; the threshold then applies to its scores
    redraw_outlines: bool = True  # each lesion redrawn at half signal loss on the image (else the detector's outline)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} unknown; choose one of {', '.join(METHODS)}.")
        if self.device not in DEVICES:
            raise ValueError(f"device {self.device!r} unknown; choose one of {', '.join(DEVICES)}.")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold {self.threshold} must lie strictly between 0 and 1.")

    def detector_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``CMBDetectionLib.pipeline.detect``."""
        return {"method": self.method, "device": self.device, "threshold": self.threshold,
                "use_lesion_filter": self.lesion_filter, "redraw_outlines": self.redraw_outlines}

    def cli_args(self) -> list[str]:
        """Options of the ``cmb-detect`` command line."""
        args = ["--method", self.method, "--device", self.device, "--threshold", f"{self.threshold:g}"]
        if not self.lesion_filter:
            args.append("--no-lesion-filter")
        if not self.redraw_outlines:
            args.append("--detector-outlines")
        return args
