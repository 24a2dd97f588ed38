"""Score a detector on the out-of-distribution test matrix (:mod:`CMBDetectionLib.phantoms.ood_sets`).

Generates each set's subjects into ``--data`` (only those missing, several processes), detects CMBs in each with
``pipeline.detect`` (the shipped UNet unless ``--model-dir``), scores them with the project's VALDO-style lesion
metrics, prints per set and pooled over the OOD sets (``baseline`` is the unshifted generator, shown for
reference) lesion sensitivity (matched CMBs / all CMBs), false positives per subject and mean Dice, names the
worst set and writes everything to a JSON file. The matrix's seeds (20000-29999) are never for training or tuning.

    python scripts/ood_matrix.py --n 2 --data /tmp/ood --json ood_results.json
    python scripts/ood_matrix.py --sets snr-8-12,oblique --n 4 --model-dir my_model/ --threshold 0.1
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from CMBDetectionLib.phantoms.ood_sets import OOD_SETS, SEEDS_PER_SET, ood_seeds, ood_set  # noqa: E402

#: the issue's targets: every set, and all OOD sets pooled
SET_TARGET = {"sensitivity": 0.85, "fp_per_subject": 1.5}
POOLED_TARGET = {"sensitivity": 0.90, "fp_per_subject": 1.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--sets", default=",".join(OOD_SETS),
                        help="comma-separated set names (default: all): " + ", ".join(OOD_SETS))
    parser.add_argument("--n", type=int, default=4, help=f"subjects per set, 1-{SEEDS_PER_SET} (default 4)")
    parser.add_argument("--data", type=Path, default=Path("ood_data"),
                        help="folder of the generated sets, one subfolder per set (default ood_data/)")
    parser.add_argument("--method", choices=("unet", "two-stage"), default="unet",
                        help="detection method (default unet; two-stage: k-means candidates + ResNet50)")
    parser.add_argument("--model-dir", default=None, help="model folder (default: the method's shipped model)")
    parser.add_argument("--threshold", type=float, default=None, help="operating threshold (default: the model's)")
    parser.add_argument("--jobs", type=int, default=2, help="processes generating phantoms (default 2)")
    parser.add_argument("--mars", action="store_true", help="also run the MARS rating and count its failures")
    parser.add_argument("--json", type=Path, default=None, help="results file (default DATA/ood_results.json)")
    args = parser.parse_args(argv)
    try:
        args.sets = [ood_set(name.strip()).name for name in args.sets.split(",") if name.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    if not args.sets:
        parser.error("--sets is empty; give at least one set name.")
    if not 1 <= args.n <= SEEDS_PER_SET:
        parser.error(f"--n {args.n} is out of range; use 1-{SEEDS_PER_SET} subjects per set.")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs} must be at least 1.")
    return args


def subject_paths(data: Path, set_name: str, seed: int) -> dict[str, Path]:
    """Where one subject's SWI volume and CMB mask are (``DATA/SET/phantom_SSSSS_*``)."""
    stem = data / set_name / f"phantom_{seed:05d}"
    return {"swi": Path(f"{stem}_swi.nii.gz"), "cmb": Path(f"{stem}_cmb.nii.gz")}


def _generate(job: tuple[str, int, str]) -> tuple[str, int, float]:
    """Generate and write one subject (a worker process); returns its set, seed and seconds."""
    from CMBDetectionLib.phantoms.generator import generate_subject, write_subject

    set_name, seed, folder = job
    started = time.perf_counter()
    write_subject(generate_subject(seed, settings=OOD_SETS[set_name].settings), folder)
    return set_name, seed, time.perf_counter() - started


def generate_missing(sets: list[str], n: int, data: Path, jobs: int) -> None:
    """Write every subject of ``sets`` not yet in ``data``, ``jobs`` at a time."""
    todo = []
    for name in sets:
        (data / name).mkdir(parents=True, exist_ok=True)
        todo += [(name, seed, str(data / name)) for seed in ood_seeds(OOD_SETS[name], n)
                 if not all(p.exists() for p in subject_paths(data, name, seed).values())]
    if not todo:
        return
    print(f"generating {len(todo)} subjects with {jobs} processes", flush=True)
    with Pool(min(jobs, len(todo))) as pool:
        for name, seed, seconds in pool.imap_unordered(_generate, todo):
            print(f"  {name} {seed}: {seconds:.1f} s", flush=True)


def score_subject(paths: dict[str, Path], model_dir: str | None, threshold: float | None, mars: bool,
                  method: str = "unet", backend: Any = "auto") -> dict:
    """Detect in one subject and score it against its ground truth; the row keeps the figures and the run time."""
    from CMBDetectionLib.evaluation.metrics import subject_metrics
    from CMBDetectionLib.imageio.volumes import read_volume
    from CMBDetectionLib.pipeline import detect

    image = read_volume(paths["swi"])
    started = time.perf_counter()
    result = detect(image, method=method, model_dir=model_dir, threshold=threshold, mars=mars, backend=backend)
    seconds = time.perf_counter() - started
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(paths["cmb"]))) > 0
    row = subject_metrics(truth, result.label_map > 0, image.GetSpacing()[::-1])
    mars_error = result.mars_error
    return {k: row[k] for k in ("n_gt", "n_pred", "tp", "fp", "dice")} | {"seconds": round(seconds, 1),
                                                                          "mars_error": mars_error}


def summarise(rows: list[dict]) -> dict:
    """Per-set figures: pooled lesion sensitivity, mean false positives per subject, mean Dice."""
    n_gt = sum(r["n_gt"] for r in rows)
    return {
        "subjects": len(rows),
        "cmbs": n_gt,
        "sensitivity": sum(r["tp"] for r in rows) / n_gt if n_gt else math.nan,
        "fp_per_subject": float(np.mean([r["fp"] for r in rows])),
        "dice": float(np.mean([r["dice"] for r in rows])),
        "mars_failures": sum(r["mars_error"] is not None for r in rows),
    }


def meets(summary: dict, target: dict) -> bool:
    """Whether a summary reaches a sensitivity target (when it has CMBs) within a false-positive budget."""
    sensitive = not summary["cmbs"] or summary["sensitivity"] >= target["sensitivity"]
    return sensitive and summary["fp_per_subject"] <= target["fp_per_subject"]


def worst_set(summaries: dict[str, dict]) -> str:
    """The OOD set with the lowest sensitivity (ties: the most false positives); sets without CMBs count by FP."""
    shifted = {name: s for name, s in summaries.items() if ood_set(name).is_shifted}
    pool = shifted or summaries
    return min(pool, key=lambda name: (np.nan_to_num(pool[name]["sensitivity"], nan=1.0),
                                       -pool[name]["fp_per_subject"]))


def print_table(summaries: dict[str, dict], pooled: dict | None) -> None:
    """One line per set, then the pooled OOD line, with whether each meets the issue's target."""
    print(f"\n{'set':<20} {'subj':>4} {'CMBs':>5} {'sens':>6} {'FP/subj':>8} {'Dice':>6}  target")
    lines = list(summaries.items()) + ([("pooled OOD", pooled)] if pooled else [])
    for name, s in lines:
        target = POOLED_TARGET if name == "pooled OOD" else SET_TARGET
        mark = "-" if name == "baseline" else ("met" if meets(s, target) else "MISSED")
        print(f"{name:<20} {s['subjects']:>4} {s['cmbs']:>5} {s['sensitivity']:>6.2f} {s['fp_per_subject']:>8.2f} "
              f"{s['dice']:>6.2f}  {mark}")


def _without_nan(value):
    """``value`` with NaN as None and tuples as lists (strict JSON)."""
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_nan(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def shared_backend(method: str, model_dir: str | None) -> Any:
    """The UNet's backend, made once for every subject (an ONNX Runtime session per subject would cost each its
    start-up); the two-stage method chooses its own."""
    if method != "unet":
        return "auto"
    from CMBDetectionLib.probability.backends.choice import make_backend

    return make_backend("auto", model_dir)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    generate_missing(args.sets, args.n, args.data, args.jobs)
    rows: dict[str, list[dict]] = {}
    backend = shared_backend(args.method, args.model_dir)
    for name in args.sets:
        rows[name] = []
        for seed in ood_seeds(OOD_SETS[name], args.n):
            row = score_subject(subject_paths(args.data, name, seed), args.model_dir, args.threshold, args.mars,
                                args.method, backend)
            rows[name].append({"seed": seed, **row})
            print(f"  {name} {seed}: {row['tp']}/{row['n_gt']} found, {row['fp']} FP, {row['seconds']} s", flush=True)
    summaries = {name: summarise(r) for name, r in rows.items()}
    shifted_rows = [row for name, r in rows.items() if ood_set(name).is_shifted for row in r]
    pooled = summarise(shifted_rows) if shifted_rows else None
    print_table(summaries, pooled)
    worst = worst_set(summaries)
    print(f"\nworst set: {worst} ({ood_set(worst).shift})")
    out = args.json or args.data / "ood_results.json"
    out.write_text(json.dumps(_without_nan({
        "method": args.method, "model_dir": args.model_dir or "shipped", "threshold": args.threshold, "n": args.n,
        "targets": {"per_set": SET_TARGET, "pooled": POOLED_TARGET},
        "sets": {name: {"shift": ood_set(name).shift, "changed_settings": ood_set(name).changed_settings(),
                        "summary": summaries[name], "subjects": rows[name]} for name in args.sets},
        "pooled_ood": pooled, "worst_set": worst,
    }), indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
