"""Install what the engine needs into Slicer's Python, on first use and only with the user's consent.

Slicer 5.11 and newer provide ``pip_ensure`` (it asks the user itself and does nothing in ``--testing`` mode);
older versions get our own confirmation and ``slicer.util.pip_install``. Slicer's own numpy, SimpleITK and vtk
are never replaced: newer Slicer skips them, older Slicer gets them pinned to the installed versions.

>>> missing_requirements(["numpy>=1.0", "surely-not-installed-package"])
['surely-not-installed-package']
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path
from typing import Callable

REQUIREMENTS_FILE = Path(__file__).resolve().parent.parent / "Resources" / "requirements.txt"
PROTECTED = ("numpy", "SimpleITK", "vtk")  # Slicer's own builds; replacing them breaks Slicer


def load_requirements(path: Path = REQUIREMENTS_FILE) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


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
    return [r for r in (load_requirements() if requirements is None else requirements) if not _is_satisfied(r)]


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


def ensure_dependencies(confirm: Callable[[str], bool], requester: str = "CMB Detection") -> bool:
    """Install missing requirements after asking; True when everything needed is importable afterwards."""
    missing = missing_requirements()
    if not missing:
        return True
    pip_ensure = _pip_ensure()
    if pip_ensure is not None:
        from packaging.requirements import Requirement

        pip_ensure([Requirement(r) for r in missing], skip_packages=list(PROTECTED), requester=requester)
    else:
        message = (
            f"{requester} needs these Python packages, which will now be downloaded and installed "
            f"(this can take several minutes):\n\n" + "\n".join(missing) + "\n\nInstall them?"
        )
        if not confirm(message):
            return False
        import slicer

        slicer.util.pip_install(" ".join([*missing, *_pins()]))
    importlib.invalidate_caches()
    return not missing_requirements()
