"""Shared pytest set-up: keep TensorFlow quiet and within the CI machine's two cores."""

import os
import sys
from pathlib import Path

# Test helpers (synthetic_cmb, slicer_harness, repo_paths) live here; tests sit in sub-folders mirroring the package.
sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


import pytest


@pytest.fixture(scope="module")
def random_unet_dir(tmp_path_factory):
    """A model folder with a randomly initialised paper UNet and its card (per module: a test may corrupt it)."""
    from CMBDetectionLib.model_store import WEIGHTS_NAME, save_weights_npz, write_card
    from CMBDetectionLib.probability.unet.network import build_unet

    folder = tmp_path_factory.mktemp("unet")
    save_weights_npz(build_unet(), folder / WEIGHTS_NAME)
    write_card(folder, {"name": "random", "weights": WEIGHTS_NAME}, [WEIGHTS_NAME])
    return folder
