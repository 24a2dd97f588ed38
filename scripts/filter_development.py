"""Develop the UNet's 3D false-positive filter on cached candidate tables (minutes instead of hours per variant).

``cache`` runs the UNet once per labelled subject of a phantom folder and stores its candidate table
(:func:`lesions.filter.candidate_table`), which ground-truth CMB each candidate lies on, and the number of CMBs.
``compare`` fits filter variants on one cached folder (80:20 by subject, seeded, as ``cmb-train --method
lesion-filter`` splits) and prints, for its validation part and for each further cached folder, lesion sensitivity
(mean per subject / pooled) and false positives per subject at each threshold, also with every network score
lowered by 2 (a less confident network). Figures are candidate-level approximations of what ``detect()`` reports
(no outline redraw or vein check); use them to compare variants, and ``scripts/ood_matrix.py`` or
``cmb-train --eval-dir`` for the figures to report. Never cache the out-of-distribution matrix for choosing.

    python scripts/filter_development.py cache phantoms/ cache/fit --jobs 2
    python scripts/filter_development.py compare cache/fit cache/fresh_randomised --shift-copies 0,2
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import lru_cache
from multiprocessing import Pool
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy import ndimage
from scipy.special import logit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from CMBDetectionLib.lesions.filter import fit_lesion_filter  # noqa: E402
from CMBDetectionLib.lesions.peak_candidates import PEAK_FLOOR  # noqa: E402
from CMBDetectionLib.training.confidence_shift import SHIFT, confidence_shifted, lower_scores  # noqa: E402
from CMBDetectionLib.training.data import TrainingPair, find_pairs, split_subjects  # noqa: E402

THRESHOLDS = (0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
STRESS_SHIFT = -2.0  # logit drop of the "less confident network" rows
Table = tuple[np.ndarray, np.ndarray, int]  # features, CMB number under each candidate (0: none), CMBs


@lru_cache(maxsize=1)
def _source(model_dir: str | None):
    """The UNet candidate source of a worker process: one single-threaded ONNX Runtime session for all its subjects."""
    from CMBDetectionLib.probability.backends.choice import make_backend
    from CMBDetectionLib.training.filter_candidates import UNetCandidates

    return UNetCandidates(make_backend("onnxruntime", model_dir, "cpu", threads=1))


def _cache_one(job: tuple[TrainingPair, str, str | None]) -> str:
    """Cache one subject (in a worker process)."""
    pair, out, model_dir = job
    target = Path(out) / f"{pair.name}.npz"
    if not target.exists():
        truth, labels, features = _source(model_dir).table(pair)
        cmbs, n_cmbs = ndimage.label(truth, np.ones((3, 3, 3)))
        under = np.zeros(int(labels.max()), np.int32)
        both = (labels > 0) & (cmbs > 0)
        under[labels[both] - 1] = cmbs[both]
        np.savez(target, features=features.astype(np.float32), cmb=under, n_cmbs=n_cmbs)
    return pair.name


def load_tables(folder: Path, names: set[str] | None = None) -> dict[str, Table]:
    """The cached tables of ``folder`` (only ``names`` when given)."""
    tables = {}
    for path in sorted(folder.glob("*.npz")):
        if names is None or path.stem in names:
            data = np.load(path)
            tables[path.stem] = (data["features"].astype(float), data["cmb"], int(data["n_cmbs"]))
    return tables


def less_confident(tables: dict[str, Table], shift: float) -> dict[str, Table]:
    """Every candidate's network score lowered by ``shift``; those under the candidate floor dropped."""
    out = {}
    for name, (features, cmb, n) in tables.items():
        lowered, kept = lower_scores(features, shift, float(logit(PEAK_FLOOR)))
        out[name] = (lowered[kept], cmb[kept], n)
    return out


def curve(score, tables: dict[str, Table]) -> str:
    """'threshold:mean sensitivity/pooled sensitivity/FP per subject' at each of :data:`THRESHOLDS`."""
    parts = []
    for threshold in THRESHOLDS:
        per_subject, found_all, cmbs_all, fps = [], 0, 0, []
        for features, cmb, n in tables.values():
            kept = score(features) >= threshold if len(features) else np.zeros(0, bool)
            found = len(np.unique(cmb[kept & (cmb > 0)]))
            fps.append(int((kept & (cmb == 0)).sum()))
            found_all, cmbs_all = found_all + found, cmbs_all + n
            if n:
                per_subject.append(found / n)
        parts.append(f"{threshold}:{np.mean(per_subject):.3f}/{found_all / max(cmbs_all, 1):.3f}/{np.mean(fps):.2f}")
    return "  ".join(parts)


def compare(fit_folder: Path, eval_folders: list[Path], copies: list[int]) -> None:
    """Fit one filter per number of shifted copies; print its curves on every set."""
    subjects = [SimpleNamespace(name=p.stem) for p in sorted(fit_folder.glob("*.npz"))]
    train, validation = (set(s.name for s in part) for part in split_subjects(subjects, 0.2, 0))
    fit = load_tables(fit_folder, train)
    sets = {"validation": load_tables(fit_folder, validation)} | {f.name: load_tables(f) for f in eval_folders}
    floor = float(logit(PEAK_FLOOR))
    for n_copies in copies:
        rows = [(features, (cmb > 0).astype(int)) for features, cmb, _ in fit.values()]
        x, y = confidence_shifted(rows, copies=n_copies, rng=np.random.default_rng(0), floor_logit=floor)
        lesion_filter = fit_lesion_filter(x, y)
        for name, tables in sets.items():
            print(f"copies {n_copies} {name:<16} {curve(lesion_filter.score, tables)}", flush=True)
            print(f"copies {n_copies} {name + ' -2':<16} {curve(lesion_filter.score, less_confident(tables, STRESS_SHIFT))}",
                  flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    cache = commands.add_parser("cache", help="cache the UNet candidate tables of a phantom folder")
    cache.add_argument("data", type=Path)
    cache.add_argument("out", type=Path)
    cache.add_argument("--model-dir", default=None, help="UNet folder (default: the shipped one)")
    cache.add_argument("--jobs", type=int, default=2)
    comparison = commands.add_parser("compare", help="fit variants on one cached folder, score them on others")
    comparison.add_argument("fit", type=Path)
    comparison.add_argument("eval", type=Path, nargs="*")
    comparison.add_argument("--shift-copies", default=f"0,{SHIFT['copies']}",
                            help="comma-separated numbers of confidence-shifted copies, one variant each")
    args = parser.parse_args(argv)
    if args.command == "cache":
        args.out.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        jobs = [(pair, str(args.out), args.model_dir) for pair in find_pairs(args.data)]
        with Pool(max(1, args.jobs)) as pool:
            for done, name in enumerate(pool.imap_unordered(_cache_one, jobs), start=1):
                print(f"{done}/{len(jobs)} {name}", flush=True)
        return 0
    compare(args.fit, args.eval, [int(c) for c in args.shift_copies.split(",")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
