"""Settings read from the environment, in one place: where the models and the cache live.

``CMBDETECTION_MODELS_DIR`` overrides the folder holding the shipped models (one sub-folder per model);
``CMBDETECTION_CACHE`` the folder for derived data that is safe to delete (the MARS region map, the phantom
anatomy). An empty value counts as unset, so ``CMBDETECTION_CACHE= cmb-detect ...`` means the default.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

MODELS_DIR_VAR = "CMBDETECTION_MODELS_DIR"
CACHE_VAR = "CMBDETECTION_CACHE"
MODELS_PACKAGE = "cmbdetection_models"  # the top-level models/ folder, installed as a package of its own name
DEFAULT_CACHE = Path.home() / ".cache" / "cmbdetection"
_SOURCE_MODELS = Path(__file__).resolve().parent.parent / "models"  # a checkout that is not pip-installed (Slicer)


def env_path(name: str, environ: Mapping[str, str] = os.environ) -> Path | None:
    """The folder named by environment variable ``name``; None when unset or empty (blanks only).

    >>> env_path("CMBDETECTION_CACHE", {"CMBDETECTION_CACHE": " "}) is None
    True
    >>> env_path("CMBDETECTION_CACHE", {"CMBDETECTION_CACHE": "/tmp/cmb-cache"}).as_posix()
    '/tmp/cmb-cache'
    """
    value = environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def installed_models_dir() -> Path | None:
    """The folder of the installed model package (the repository's ``models/`` in an editable install), or None."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def models_root() -> Path:
    """``$CMBDETECTION_MODELS_DIR``, else the installed model package, else ``models/`` of this source tree.

    >>> (models_root() / "unet" / "model_card.json").is_file()
    True
    """
    return env_path(MODELS_DIR_VAR) or installed_models_dir() or _SOURCE_MODELS


def cache_dir() -> Path:
    """``$CMBDETECTION_CACHE``, else ``~/.cache/cmbdetection`` (not created here)."""
    return env_path(CACHE_VAR) or DEFAULT_CACHE
