"""Qt-free logic of the CMB Detection Slicer module (importable in Slicer and in a headless ``slicer-core`` scene).

One job per file: ``parameters`` (user choices), ``volume_conversion`` (volume node <-> SimpleITK),
``result_nodes`` (the four MRML nodes), ``tables`` (typed table columns), ``correction_sync`` (keeping the nodes
consistent while a rater corrects), ``background_run`` (the engine in another process),
``export`` (files), ``dependencies`` and ``onnxruntime_choice`` (pip installs), ``run_state`` (the detect button),
``support`` (Slicer and Python versions), ``scene_links`` (subject hierarchy, relinking a reloaded scene),
``sample_data`` (the demo volume), ``self_test_detector`` (the self-test's stand-in), ``logic`` (the facade).

The names below are imported on first use (PEP 562), so that ``CMBDetectionLogic.support`` can check the Slicer
version before anything that needs a newer Python is imported.
"""

import importlib

_EXPORTS = {
    "CorrectionsWouldBeLost": "logic", "DetectionLogic": "logic", "RunOutcome": "logic", "RunStatus": "logic",
    "DetectionSettings": "parameters", "METHODS": "parameters", "DEVICES": "parameters", "Method": "parameters",
    "Device": "parameters",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
