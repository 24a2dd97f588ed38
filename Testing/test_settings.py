"""Settings: the environment variables win when set, an empty value means unset, the models are found without them."""

from __future__ import annotations

import pytest
from repo_paths import MODELS_DIR

from CMBDetectionLib import settings
from CMBDetectionLib.mars.regions import cache_path
from CMBDetectionLib.model_store import model_dir


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_variables_mean_the_defaults(monkeypatch, value):
    monkeypatch.setenv(settings.MODELS_DIR_VAR, value)
    monkeypatch.setenv(settings.CACHE_VAR, value)
    assert settings.models_root().resolve() == MODELS_DIR.resolve()  # the editable install maps models/ here
    assert cache_path().parent == settings.DEFAULT_CACHE


def test_variables_redirect_every_reader(monkeypatch, tmp_path):
    monkeypatch.setenv(settings.MODELS_DIR_VAR, str(tmp_path / "models"))
    monkeypatch.setenv(settings.CACHE_VAR, str(tmp_path / "cache"))
    assert model_dir("unet") == tmp_path / "models" / "unet"
    assert cache_path().parent == tmp_path / "cache"
