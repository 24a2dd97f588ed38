"""The shipped models, installed as the package ``cmbdetection_models`` (one folder per model, each with its card).

This folder stays at the repository's top level; pyproject.toml maps it to that package name so that a wheel
carries the models. Code finds them through :func:`CMBDetectionLib.settings.models_root`, never by importing this.
"""
