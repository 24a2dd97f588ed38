"""Qt-free logic of the CMB Detection Slicer module (importable in Slicer and in a headless ``slicer-core`` scene).

One job per file: ``parameters`` (user choices), ``volume_conversion`` (volume node <-> SimpleITK),
``result_nodes`` (the four MRML nodes), ``tables`` (typed table columns), ``correction_sync`` (keeping the nodes
consistent while a rater corrects), ``engine_outputs`` and ``background_run`` (the engine in another process),
``export`` (files), ``dependencies`` (pip installs), ``run_state`` (the detect button), ``logic`` (the facade).
"""

from .logic import CorrectionsWouldBeLost, DetectionLogic, RunOutcome, RunStatus
from .parameters import DEVICES, METHODS, DetectionSettings, Device, Method

__all__ = ["CorrectionsWouldBeLost", "DetectionLogic", "RunOutcome", "RunStatus", "DetectionSettings", "METHODS", "DEVICES", "Method", "Device"]
