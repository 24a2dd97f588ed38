"""Install what the engine needs into Slicer's Python, on first use and only with the user's consent.

The list is ``Resources/requirements.txt`` plus the ONNX Runtime build for this workstation's GPU
(:mod:`onnxruntime_choice`); TensorFlow is not installed (inference runs on ONNX Runtime). Slicer 5.11 and newer
provide ``pip_ensure`` (it asks the user itself, offers a restart and does nothing in ``--testing`` mode); 5.10
gets our own confirmation and ``slicer.util.pip_install``, always with a **list**: given one string, Slicer splits
it with ``shlex`` and pip would receive ``tensorflow>=2;``, ``platform_machine``, ``==`` as separate requirements.
Slicer's own numpy, SimpleITK and vtk are never replaced: newer Slicer skips them, older Slicer gets them pinned
to the installed versions.

>>> missing_requirements(["numpy>=1.0", "surely-not-installed-package"])
['surely-not-installed-package']
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .onnxruntime_choice import ONNXRUNTIME_DISTRIBUTIONS, detect_workstation, onnxruntime_requirement

REQUIREMENTS_FILE = Path(__file__).resolve().parent.parent / "Resources" / "requirements.txt"
PROTECTED = ("numpy", "SimpleITK", "vtk")  # Slicer's own builds; replacing them breaks Slicer


def load_requirements(path: Path = REQUIREMENTS_FILE) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def slicer_requirements() -> list[str]:
    """Everything detection needs here: the requirements file and this workstation's ONNX Runtime build."""
    return [*load_requirements(), onnxruntime_requirement(detect_workstation())]


def _is_satisfied(requirement: str) -> bool:
    from packaging.requirements import Requirement

    parsed = Requirement(requirement)
    if parsed.marker is not None and not parsed.marker.evaluate():
        return True
    try:
        installed = importlib.metadata.version(parsed.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return parsed.specifier.contains(installed, prereleases=True)


def missing_requirements(requirements: list[str] | None = None) -> list[str]:
    """The requirements not satisfied in this Python (all markers evaluated here)."""
    return [r for r in (slicer_requirements() if requirements is None else requirements) if not _is_satisfied(r)]


def _installed_versions() -> dict[str, str]:
    return {dist.metadata["Name"].lower(): dist.version for dist in importlib.metadata.distributions() if dist.metadata["Name"]}


def updated_but_imported(before: dict[str, str], after: dict[str, str], imported: set[str]) -> list[str]:
    """Distributions whose version changed (or that are new) and whose modules this Python had already imported:
    the old code stays in memory until Slicer restarts.

    >>> updated_but_imported({"scipy": "1.10"}, {"scipy": "1.13", "tqdm": "4.6"}, {"scipy", "numpy"})
    ['scipy']
    """
    providers = importlib.metadata.packages_distributions()
    modules_of: dict[str, set[str]] = {}
    for module, distributions in providers.items():
        for distribution in distributions:
            modules_of.setdefault(distribution.lower(), set()).add(module)
    changed = [name for name, version in after.items() if before.get(name) != version]
    return sorted(name for name in changed if (modules_of.get(name, {name.replace("-", "_")}) & imported))


def other_onnxruntime_builds(wanted: list[str], installed: dict[str, str]) -> list[str]:
    """Installed ONNX Runtime distributions that a requirement in ``wanted`` replaces (only one may be present).

    >>> other_onnxruntime_builds(["onnxruntime-gpu[cuda,cudnn]>=1.21"], {"onnxruntime": "1.20.1", "scipy": "1.13"})
    ['onnxruntime']
    """
    from packaging.requirements import Requirement

    names = {Requirement(r).name.lower() for r in wanted}
    if not names & set(ONNXRUNTIME_DISTRIBUTIONS):
        return []
    return [name for name in ONNXRUNTIME_DISTRIBUTIONS if name in installed and name not in names]


def _pip_ensure():
    """``pip_ensure`` from Slicer >= 5.11 (moved between modules while it was new), or None."""
    for module in ("slicer.packaging", "slicer.pydeps"):
        try:
            function = getattr(importlib.import_module(module), "pip_ensure", None)
        except ImportError:
            continue
        if function is not None:
            return function
    return None


def _pins() -> list[str]:
    pins = []
    for name in PROTECTED:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass  # built into Slicer (vtk), pip cannot replace it
    return pins


@dataclass
class InstallOutcome:
    """``ready``: everything importable now; ``restart_for``: updated packages Slicer had already imported."""

    ready: bool
    message: str = ""
    restart_for: list[str] = field(default_factory=list)


def _install_with_pip_install(missing: list[str]) -> list[str]:
    """Slicer <= 5.10: remove a conflicting ONNX Runtime build, install as one list; returns what needs a restart."""
    import slicer

    before = _installed_versions()
    conflicting = other_onnxruntime_builds(missing, before)
    if conflicting:
        slicer.util.pip_uninstall(conflicting)
    slicer.util.pip_install([*missing, *_pins()])
    importlib.invalidate_caches()
    return updated_but_imported(before, _installed_versions(), set(sys.modules))


def ensure_dependencies(
    confirm: Callable[[str], bool], requester: str = "CMB Detection", requirements: list[str] | None = None
) -> InstallOutcome:
    """Install missing requirements (default :func:`slicer_requirements`) after asking."""
    missing = missing_requirements(requirements)
    if not missing:
        return InstallOutcome(True)
    pip_ensure = _pip_ensure()
    restart_for: list[str] = []
    if pip_ensure is not None:
        from packaging.requirements import Requirement

        try:  # 5.11+: asks, removes nothing, offers the restart itself
            pip_ensure([Requirement(r) for r in missing], skip_packages=list(PROTECTED), requester=requester)
        except RuntimeError as exc:  # raised when the user declines
            return InstallOutcome(False, f"Nothing was installed ({exc}).")
    else:
        message = (
            f"{requester} needs these Python packages, which will now be downloaded and installed "
            f"(this can take several minutes):\n\n" + "\n".join(missing) + "\n\nInstall them?"
        )
        if not confirm(message):
            return InstallOutcome(False, "Detection needs the listed Python packages; nothing was installed.")
        restart_for = _install_with_pip_install(missing)
    importlib.invalidate_caches()
    still = missing_requirements(requirements)
    if still:
        return InstallOutcome(False, "These packages are still missing: " + ", ".join(still) + "; see the Python console.", restart_for)
    return InstallOutcome(True, "", restart_for)
