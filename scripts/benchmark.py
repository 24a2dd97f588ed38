"""Speed and memory of UNet inference: seconds per volume and peak memory, one function per figure.

Run: ``python scripts/benchmark.py [--device cpu|gpu|auto] [--backend tensorflow|...] [--slices 150]
[--two-stage] [--lesion-filter] [--speed] [--stages VOLUME [--repeats 3]] [--startup]``.
Random weights are used when no trained model is installed (speed does not depend on the weights).

``--stages VOLUME`` is the stage breakdown of one warm process on one volume, for example
``python scripts/benchmark.py --stages phantom_05000_swi.nii.gz``: read, normalise, every stage
``pipeline.detect`` records (:attr:`DetectionResult.timings`), writing, the network alone on all slices with
ONNX Runtime on the CPU, the ratio end to end / network alone (pairs run side by side, median) and peak memory.
``--startup`` times ``cmb-detect --help`` and ``import CMBDetectionLib.pipeline`` in fresh interpreters.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
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
    from CMBDetectionLib.probability.unet.network import build_unet

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
    from CMBDetectionLib.probability.unet.inference import predict_probability

    image = synthetic_volume(size, slices, spacing)
    predict_probability(synthetic_volume(size, 8, spacing), backend=backend)  # warm-up: graph tracing
    start = time.perf_counter()
    for _ in range(repeats):
        predict_probability(image, backend=backend)
    return (time.perf_counter() - start) / repeats


def two_stage_seconds(device: str = "auto") -> dict[str, float]:
    """Seconds of each two-stage step on one phantom (256x256x70): brain mask, candidates + patches, ResNet50,
    and the 3D false-positive filter (features and scores) when the model has one.

    A phantom, not noise, because the stage-one cost depends on the anatomy (how many dark components).
    Uses the installed ``models/resnet50`` or, when absent, an untrained 64-pixel ResNet50.
    """
    from CMBDetectionLib.phantoms.generator import generate_subject
    from CMBDetectionLib.probability.two_stage.brain_mask import brain_mask_array
    from CMBDetectionLib.probability.two_stage.classifier import build_classifier
    from CMBDetectionLib.probability.two_stage.method import (
        StageSettings,
        candidate_scores,
        classify_patches,
        lesion_filter_of,
        load_model,
        stage_one,
    )
    from CMBDetectionLib.probability.two_stage.runtime import KerasClassifier
    from CMBDetectionLib.probability.unet.slicing import to_axial

    try:
        model, card = load_model(device=device)  # ONNX Runtime for the shipped model
    except ValueError:
        model, card = KerasClassifier(build_classifier(64), device), {"input_shape": [64, 64, 3]}
    axial = to_axial(sitk.Cast(generate_subject(303).image, sitk.sitkFloat32))
    array, spacing = sitk.GetArrayFromImage(axial), tuple(axial.GetSpacing()[::-1])
    start = time.perf_counter()
    brain_mask_array(array, spacing)
    mask_s = time.perf_counter() - start
    start = time.perf_counter()
    first = stage_one(axial, StageSettings.from_card(card))
    stage_one_s = time.perf_counter() - start - mask_s  # stage_one recomputes the mask; report the rest
    classify_patches(model, first.patches[:2])  # warm-up
    start = time.perf_counter()
    scores = classify_patches(model, first.patches)
    steps = {"brain_mask_s": mask_s, "candidates_and_patches_s": stage_one_s,
             "classifier_s": time.perf_counter() - start, "candidates": len(first.candidates)}
    lesion_filter = lesion_filter_of() if "patches" in card else None  # the untrained stand-in has none
    if lesion_filter is not None:
        start = time.perf_counter()
        candidate_scores(axial, first, scores, lesion_filter)
        steps["lesion_filter_s"] = time.perf_counter() - start
    return steps


def lesion_filter_seconds() -> dict[str, float]:
    """Seconds of the UNet's 3D false-positive filter on one phantom (256x256x70): candidates, features, scores.

    A phantom, not noise: the cost grows with the number of UNet peaks, i.e. with the anatomy. Needs the shipped
    UNet and its filter.
    """
    from CMBDetectionLib.lesions.features import candidate_features
    from CMBDetectionLib.lesions.filter import load_lesion_filter
    from CMBDetectionLib.lesions.peak_candidates import find_peak_candidates
    from CMBDetectionLib.model_store import model_dir
    from CMBDetectionLib.phantoms.generator import generate_subject
    from CMBDetectionLib.probability.unet.inference import predict_probability

    image = sitk.Cast(generate_subject(303).image, sitk.sitkFloat32)
    probability = predict_probability(image, backend="onnxruntime")
    lesion_filter = load_lesion_filter(model_dir("unet"))
    start = time.perf_counter()
    labels, peaks = find_peak_candidates(probability, lesion_filter.peak_floor)
    candidates_s = time.perf_counter() - start
    start = time.perf_counter()
    features = candidate_features(sitk.GetArrayFromImage(image), probability, labels, image.GetSpacing()[::-1])
    features_s = time.perf_counter() - start
    start = time.perf_counter()
    lesion_filter.score(features)
    return {"candidates": len(peaks), "candidates_s": candidates_s, "features_s": features_s,
            "scoring_s": time.perf_counter() - start}


# --- Inference speed and memory (issue F): pure model per backend vs end-to-end cmb-detect -------------------

SPEED_SLICES = 150
SPEED_SEED = 777  # a test-range phantom seed (< 1000)


def phantom_volume(folder: Path, size: int, n_slices: int = SPEED_SLICES) -> Path:
    """A phantom head of ``size`` x ``size`` x ``n_slices`` written to ``folder`` (field of view kept at 230 mm).

    The default 2 mm slab is 300 mm high, so as in a real acquisition part of the slices show no head.
    """
    from CMBDetectionLib.phantoms.generator import generate_subject

    path = folder / f"phantom_{size}x{size}x{n_slices}.nii.gz"
    if not path.exists():
        subject = generate_subject(SPEED_SEED, size=size, spacing=0.9 * 256 / size, n_slices=n_slices)
        sitk.WriteImage(subject.image, str(path), useCompression=True)
    return path


def speed_model_dir(folder: Path) -> Path:
    """The shipped UNet when it has an ONNX export; else a seeded random UNet exported to ``folder`` (same cost)."""
    from CMBDetectionLib.model_store import CARD_NAME, load_card, model_dir

    shipped = model_dir("unet")
    if (shipped / CARD_NAME).is_file() and "onnx" in load_card(shipped):
        return shipped
    import keras

    from CMBDetectionLib.model_store import WEIGHTS_NAME, save_weights_npz, write_card
    from CMBDetectionLib.probability.unet.network import ENCODER_FILTERS, build_unet
    from CMBDetectionLib.training.onnx_export import add_onnx_to_model_dir

    print("note: no shipped UNet with an ONNX export; timing a random-weight UNet of the same architecture")
    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(SPEED_SEED)
    model = build_unet()
    head = model.get_layer("cmb_probability")
    kernel, bias = head.get_weights()
    head.set_weights([kernel, bias - 20.0])  # random weights would "detect" half the head; keep the map near 0
    save_weights_npz(model, folder / WEIGHTS_NAME)
    write_card(folder, {"name": "random-benchmark-unet", "architecture": {"encoder_filters": list(ENCODER_FILTERS)}},
               [WEIGHTS_NAME])
    add_onnx_to_model_dir(folder)
    return folder


def model_slices(volume_path: Path) -> np.ndarray:
    """All axial slices of the volume, normalised, as one ``(n, 256, 256, 1)`` batch (what the model sees)."""
    from CMBDetectionLib.probability.unet.slicing import model_slices as preprocess

    return np.ascontiguousarray(preprocess(sitk.ReadImage(str(volume_path), sitk.sitkFloat32))[..., np.newaxis])


def pure_model_seconds(backend, slices: np.ndarray, repeats: int, batch_size: int) -> float:
    """Median seconds of ``backend.predict`` over all ``slices`` in batches (model loaded, one warm-up batch)."""
    backend.predict(slices[:batch_size])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for first in range(0, len(slices), batch_size):
            backend.predict(slices[first : first + batch_size])
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def backend_devices() -> list[str]:
    """``cpu``, plus ``gpu`` when TensorFlow or ONNX Runtime sees one."""
    import onnxruntime as ort
    import tensorflow as tf

    from CMBDetectionLib.probability.backends.onnxruntime_backend import GPU_PROVIDERS

    gpu = tf.config.list_physical_devices("GPU") or set(GPU_PROVIDERS) & set(ort.get_available_providers())
    return ["cpu", "gpu"] if gpu else ["cpu"]


# Runs cmb-detect and, at exit, writes its own peak memory (VmHWM, KiB) to the file named first. Not ru_maxrss:
# a forked child's ru_maxrss also counts what the parent (this benchmark, TensorFlow loaded) held at fork.
_CMB_DETECT_WITH_PEAK = """
import atexit, runpy, sys
peak_file = sys.argv.pop(1)
def write_peak():
    line = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
    open(peak_file, "w").write(line.split()[1])
atexit.register(write_peak)
sys.argv[0] = "cmb-detect"
runpy.run_module("CMBDetectionLib.cli.detect", run_name="__main__", alter_sys=True)
"""


def run_cmb_detect(volume_path: Path, model_dir: Path, out_dir: Path, *options: str) -> tuple[float, float]:
    """Run ``cmb-detect --backend auto`` as a subprocess (interpreter start and imports included):
    (wall seconds, peak resident memory MiB). Linux (reads /proc)."""
    peak_file = out_dir.with_suffix(".peak")
    command = [sys.executable, "-c", _CMB_DETECT_WITH_PEAK, str(peak_file), str(volume_path), "-o", str(out_dir),
               "--model-dir", str(model_dir), "--backend", "auto", "--quiet", *options]
    start = time.perf_counter()
    completed = subprocess.run(command, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"cmb-detect failed on {volume_path} (exit {completed.returncode})")
    return seconds, int(peak_file.read_text()) / 1024


def inference_speed(work: Path, repeats: int = 3) -> dict[str, float]:
    """Pure-model time of each backend and device (150 slices 256x256), end-to-end cmb-detect time, their ratio,
    and peak memory of cmb-detect on 256x256x150 and 512x512x150 phantoms. Prints and returns the figures."""
    from CMBDetectionLib.probability.backends.keras_backends import TensorFlowBackend
    from CMBDetectionLib.probability.backends.onnxruntime_backend import OnnxRuntimeBackend
    from CMBDetectionLib.probability.unet.inference import BATCH_SIZE, head_slices

    model_dir = speed_model_dir(work / "model")
    volume_256 = phantom_volume(work, 256)
    slices = model_slices(volume_256)
    figures: dict[str, float] = {}
    print(f"volume {volume_256.name}: {len(head_slices(slices[..., 0]))} of {len(slices)} slices show the head")
    for device in backend_devices():
        for name, backend_class in (("tensorflow", TensorFlowBackend), ("onnxruntime", OnnxRuntimeBackend)):
            seconds = pure_model_seconds(backend_class(model_dir, device), slices, repeats, BATCH_SIZE)
            figures[f"pure_{name}_{device}_s"] = seconds
            per_slice_ms = 1000 * seconds / len(slices)
            print(f"pure model {name:11s} {device}: {seconds:6.2f} s for {len(slices)} slices ({per_slice_ms:.0f} ms/slice)")
    # The machine's speed drifts (shared CPU): pair each end-to-end run with a pure-model run next to it.
    ort = OnnxRuntimeBackend(model_dir, "cpu")
    for label, options in (("", ()), ("_no_mars", ("--no-mars",)), ("_no_filter", ("--no-mars", "--no-lesion-filter"))):
        pairs = []
        for _ in range(repeats):
            pure = pure_model_seconds(ort, slices, 1, BATCH_SIZE)
            pairs.append((pure, *run_cmb_detect(volume_256, model_dir, work / "out256", *options)))
        figures[f"end_to_end{label}_s"] = float(np.median([e2e for _, e2e, _ in pairs]))
        figures[f"ratio{label}"] = float(np.median([e2e / pure for pure, e2e, _ in pairs]))
        figures[f"peak_rss_256{label}_mib"] = max(rss for _, _, rss in pairs)
        print(f"end-to-end cmb-detect {' '.join(options) or '(MARS on)':10s} (subprocess, --backend auto): "
              f"{figures[f'end_to_end{label}_s']:.2f} s = {figures[f'ratio{label}']:.2f}x the pure ONNX Runtime time "
              f"(median of {repeats} pairs run side by side); peak {figures[f'peak_rss_256{label}_mib']:.0f} MiB")
    seconds, figures["peak_rss_512_mib"] = run_cmb_detect(phantom_volume(work, 512), model_dir, work / "out512")
    print(f"cmb-detect on 512x512x{SPEED_SLICES}: {seconds:.2f} s, peak {figures['peak_rss_512_mib']:.0f} MiB")
    return figures


def _median_stages(runs: list[dict[str, float]]) -> dict[str, float]:
    return {name: float(np.median([run.get(name, 0.0) for run in runs])) for name in runs[0]}


def stage_breakdown(volume_path: Path, repeats: int = 3) -> dict[str, float]:
    """Seconds of each stage of ``cmb-detect`` on one volume in a warm process (ONNX Runtime, CPU), the network
    alone on every slice, their ratio and peak memory. Prints and returns the medians over ``repeats`` runs."""
    from CMBDetectionLib.imageio.volumes import read_volume
    from CMBDetectionLib.model_store import model_dir
    from CMBDetectionLib.outputs.files import write_outputs
    from CMBDetectionLib.pipeline import detect
    from CMBDetectionLib.probability.backends.onnxruntime_backend import OnnxRuntimeBackend
    from CMBDetectionLib.probability.unet.inference import BATCH_SIZE
    from CMBDetectionLib.probability.unet.slicing import normalise_intensity

    backend = OnnxRuntimeBackend(model_dir("unet"), "cpu")
    slices = model_slices(volume_path)
    detect(read_volume(str(volume_path)), device="cpu", backend=backend)  # warm-up: atlas, template, caches
    runs = []
    with tempfile.TemporaryDirectory(prefix="cmb-stages-") as out:
        for _ in range(repeats):
            network_alone = pure_model_seconds(backend, slices, 1, BATCH_SIZE)  # beside each run: the CPU drifts
            start = time.perf_counter()
            image = read_volume(str(volume_path))
            read = time.perf_counter() - start
            start = time.perf_counter()
            normalise_intensity(sitk.GetArrayViewFromImage(image))  # inside "network"; timed apart for the table
            normalise = time.perf_counter() - start
            start = time.perf_counter()
            result = detect(image, device="cpu", backend=backend)
            detect_s = time.perf_counter() - start
            start = time.perf_counter()
            write_outputs(result, out, "bench")
            write = time.perf_counter() - start
            end_to_end = read + detect_s + write
            runs.append({"read": read, "normalise (in network)": normalise, **result.timings, "writing": write,
                         "end_to_end": end_to_end, "network_alone_all_slices": network_alone,
                         "ratio": end_to_end / network_alone, "lesions_found": len(result.lesions)})
    figures = _median_stages(runs)
    print(f"{volume_path.name}: {sitk.ReadImage(str(volume_path)).GetSize()}, {len(slices)} slices, "
          f"median of {repeats} warm runs (ONNX Runtime, CPU)")
    for name, value in figures.items():
        print(f"  {name:28s} {value:8.2f}" + ("" if name in ("ratio", "lesions_found") else " s"))
    figures["peak_rss_mib"] = peak_memory_mb()
    print(f"  {'peak memory (this process)':28s} {figures['peak_rss_mib']:8.0f} MiB")
    return figures


def startup_seconds(repeats: int = 5) -> dict[str, float]:
    """Median wall seconds of ``cmb-detect --help`` and of ``import CMBDetectionLib.pipeline``, each in a fresh
    interpreter (what every command and a Slicer background run pay before any work)."""
    commands = {"cmb-detect --help": [sys.executable, "-m", "CMBDetectionLib.cli.detect", "--help"],
                "import CMBDetectionLib.pipeline": [sys.executable, "-c", "import CMBDetectionLib.pipeline"]}
    figures = {}
    for name, command in commands.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
            times.append(time.perf_counter() - start)
        figures[name] = float(np.median(times))
        print(f"start-up {name:32s} {figures[name]:.2f} s (median of {repeats})")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--slices", type=int, default=150)
    parser.add_argument("--two-stage", action="store_true", help="also time the two-stage method on a phantom")
    parser.add_argument("--lesion-filter", action="store_true", help="also time the UNet's 3D false-positive filter")
    parser.add_argument("--speed", action="store_true",
                        help="pure model (TF, ONNX Runtime) vs end-to-end cmb-detect on phantoms, peak memory (minutes)")
    parser.add_argument("--stages", type=Path, metavar="VOLUME",
                        help="only the stage breakdown of detection on VOLUME (warm process, ONNX Runtime, CPU)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of --stages (median; default 3)")
    parser.add_argument("--startup", action="store_true", help="only the start-up and import times")
    args = parser.parse_args()
    if args.stages is not None and not args.stages.is_file():
        parser.error(f"--stages {args.stages}: no such file; give an SWI volume (e.g. made by cmb-phantom).")
    if args.stages is not None or args.startup:
        if args.startup:
            startup_seconds()
        if args.stages is not None:
            stage_breakdown(args.stages, max(1, args.repeats))
        return
    from CMBDetectionLib.probability.backends.choice import make_backend

    backend = make_backend(args.backend, model_folder(), args.device)
    print(f"backend={backend.name} device={backend.device}")
    for size, spacing in ((256, 0.9), (512, 0.45)):
        seconds = seconds_per_volume(backend, size, args.slices, spacing)
        print(f"{size}x{size}x{args.slices}: {seconds:.1f} s/volume, peak memory {peak_memory_mb():.0f} MB")
    if args.two_stage:
        steps = two_stage_seconds(args.device)
        print("two-stage 256x256x70 phantom: " + ", ".join(f"{k}={v:.1f}" for k, v in steps.items())
              + f", peak memory {peak_memory_mb():.0f} MB")
    if args.lesion_filter:
        steps = lesion_filter_seconds()
        print("lesion filter 256x256x70 phantom: " + ", ".join(f"{k}={v:.2f}" for k, v in steps.items()))
    if args.speed:
        with tempfile.TemporaryDirectory(prefix="cmb-speed-") as work:
            inference_speed(Path(work))


if __name__ == "__main__":
    main()
