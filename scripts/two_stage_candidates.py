"""Stage one of the two-stage method (skull removal, k-means candidates, shape/size filter) on phantom sets.

For every subject of each set folder (``phantom_SSSSS_swi.nii.gz`` with its ``_cmb.nii.gz`` mask, as
``scripts/ood_matrix.py`` and ``cmb-phantom`` write them) prints, per set: CMBs, candidate sensitivity (a CMB is
found when a candidate centre lies within ``MATCH_DISTANCE_MM`` of it, one to one), candidates per subject, and
where each missed CMB drops out (:mod:`CMBDetectionLib.probability.two_stage.stage_survivors`): outside the brain
mask, on its rim, not in the k-means dark cluster, no region passing the shape/size filter, or ranked past the
cap. Then the pooled line and whether the issue's target (sensitivity >= 0.95 with at most about 150 candidates per subject) is met.

    python scripts/two_stage_candidates.py /work/data/ood --n 2 --json stage_one.json
    python scripts/two_stage_candidates.py /tmp/train_phantoms --flat        # one folder of subjects
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from CMBDetectionLib.probability.two_stage.stage_survivors import STAGES, stage_survivors  # noqa: E402
from CMBDetectionLib.probability.unet.slicing import to_axial  # noqa: E402

TARGET_SENSITIVITY = 0.95
TARGET_CANDIDATES = 150


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("data", type=Path, help="folder of sets (one subfolder each), or of subjects with --flat")
    parser.add_argument("--flat", action="store_true", help="DATA holds the subjects directly (one set)")
    parser.add_argument("--sets", default=None, help="comma-separated subfolders to run (default: all)")
    parser.add_argument("--n", type=int, default=None, help="at most N subjects per set (default: all)")
    parser.add_argument("--json", type=Path, default=None, help="also write per-subject rows to this file")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"{args.data}: not a folder; give the folder holding the phantom sets.")
    if args.n is not None and args.n < 1:
        parser.error(f"--n {args.n} must be at least 1.")
    return args


def set_folders(args: argparse.Namespace) -> dict[str, Path]:
    """Set name -> folder of its subjects."""
    if args.flat:
        return {args.data.name: args.data}
    names = args.sets.split(",") if args.sets else sorted(p.name for p in args.data.iterdir() if p.is_dir())
    missing = [n for n in names if not (args.data / n).is_dir()]
    if missing:
        raise SystemExit(f"error: {', '.join(missing)}: no such set folder in {args.data}; check --sets.")
    return {name: args.data / name for name in names}


def subject_row(swi: Path) -> dict:
    """Stage one on one subject (axial orientation, as detection runs it) and its survivors per stage."""
    image = to_axial(sitk.ReadImage(str(swi), sitk.sitkFloat32))
    truth = to_axial(sitk.ReadImage(str(swi).replace("_swi.nii.gz", "_cmb.nii.gz")))
    started = time.perf_counter()
    survivors = stage_survivors(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(truth) > 0,
                                tuple(image.GetSpacing()[::-1]))
    return {"subject": swi.name.replace("_swi.nii.gz", ""), "cmbs": survivors.n_cmbs,
            "found": int(survivors.found.sum()), "candidates": survivors.n_candidates, **survivors.lost(),
            "seconds": round(time.perf_counter() - started, 1)}


def summary(rows: list[dict]) -> dict:
    """Pooled sensitivity, mean candidates per subject and lost CMBs per stage of ``rows``."""
    cmbs = sum(r["cmbs"] for r in rows)
    return {"subjects": len(rows), "cmbs": cmbs, "sensitivity": sum(r["found"] for r in rows) / cmbs if cmbs else float("nan"),
            "candidates": float(np.mean([r["candidates"] for r in rows])),
            **{stage: sum(r[stage] for r in rows) for stage in STAGES}}


def print_line(name: str, s: dict) -> None:
    lost = " ".join(f"{s[stage]:>7}" for stage in STAGES)
    print(f"{name:<20} {s['subjects']:>4} {s['cmbs']:>5} {s['sensitivity']:>6.3f} {s['candidates']:>7.1f} {lost}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows: dict[str, list[dict]] = {}
    print(f"{'set':<20} {'subj':>4} {'CMBs':>5} {'sens':>6} {'cand/s':>7} " + " ".join(f"{s:>7}" for s in STAGES))
    for name, folder in set_folders(args).items():
        subjects = sorted(folder.glob("*_swi.nii.gz"))[: args.n]
        if not subjects:
            print(f"{name}: no *_swi.nii.gz subjects, skipped", file=sys.stderr)
            continue
        rows[name] = [subject_row(swi) for swi in subjects]
        print_line(name, summary(rows[name]))
    pooled = summary([r for name, rs in rows.items() if name != "baseline" for r in rs])
    print_line("pooled (not baseline)", pooled)
    per_set_ok = all(summary(r)["sensitivity"] >= TARGET_SENSITIVITY for r in rows.values() if summary(r)["cmbs"])
    ok = per_set_ok and pooled["candidates"] <= TARGET_CANDIDATES
    print(f"target (every set >= {TARGET_SENSITIVITY} with <= ~{TARGET_CANDIDATES} candidates/subject): "
          f"{'met' if ok else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"sets": rows, "pooled": pooled}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
