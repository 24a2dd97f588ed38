"""The package list: pyproject.toml cannot combine package discovery with a package whose folder is named otherwise.

The engine's packages are discovered; the top-level ``models/`` folder is shipped as ``cmbdetection_models``.
Namespace discovery keeps folders without ``__init__.py`` (``CMBDetectionLib/data``, one per model) as packages,
so that their files are package data. Everything else is configured in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

NOT_CODE = ["*__pycache__"]
ENGINE = find_namespace_packages(include=["CMBDetectionLib", "CMBDetectionLib.*"], exclude=NOT_CODE)
MODELS = ["cmbdetection_models", *(f"cmbdetection_models.{name}" for name in find_namespace_packages("models", exclude=NOT_CODE))]

setup(packages=ENGINE + MODELS, package_dir={"cmbdetection_models": "models"})
