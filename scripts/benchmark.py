"""Speed and memory of UNet inference: seconds per volume and peak memory, one function per figure.

Run: ``python scripts/benchmark.py [--device cpu|gpu|auto] [--backend tensorflow|...] [--slices 150]``.
Random weights are used when no trained model is installed (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def synthetic_volume(size: int, slices: int, spacing: float) -> sitk.Image:
    """A noisy volume of ``size`` x ``size`` x ``slices`` voxels (content does not change the timing)."""
    array = np.random.default_rng(0).normal(300, 50, (slices, size, size)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((spacing, spacing, 2.0))
    return image


def model_folder() -> Path:
    """The installed model, or a temporary one with random weights."""
    from CMBDetectionLib.model_store import WEIGHTS_NAME, model_dir, save_weights_npz, write_card
    from CMBDetectionLib.unet_model import build_unet

    if (model_dir("unet") / WEIGHTS_NAME).is_file():
        return model_dir("unet")
    folder = Path(tempfile.mkdtemp(prefix="cmb-bench-"))
    save_weights_npz(build_unet(), folder / WEIGHTS_NAME)
    write_card(folder, {"name": "random-weights benchmark", "weights": WEIGHTS_NAME}, [WEIGHTS_NAME])
    return folder


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seconds_per_volume(backend, size: int, slices: int, spacing: float, repeats: int = 1) -> float:
    """Wall-clock seconds of ``unet_inference.predict_probability`` on one volume (after a warm-up)."""
    from CMBDetectionLib.unet_inference import predict_probability

    image = synthetic_volume(size, slices, spacing)
    predict_probability(synthetic_volume(size, 8, spacing), backend=backend)  # warm-up: graph tracing
    start = time.perf_counter()
    for _ in range(repeats):
        predict_probability(image, backend=backend)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--slices", type=int, default=150)
    args = parser.parse_args()
    from CMBDetectionLib.backends import make_backend

    backend = make_backend(args.backend, model_folder(), args.device)
    print(f"backend={backend.name} device={backend.device}")
    for size, spacing in ((256, 0.9), (512, 0.45)):
        seconds = seconds_per_volume(backend, size, args.slices, spacing)
        print(f"{size}x{size}x{args.slices}: {seconds:.1f} s/volume, peak memory {peak_memory_mb():.0f} MB")


if __name__ == "__main__":
    main()
