"""``cmb-eval``: compare predicted CMB masks with ground truth (voxel and VALDO lesion-level metrics).

>>> main(["--gt", "phantoms/", "--pred", "results/", "-o", "report.csv"])   # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import SimpleITK as sitk

from CMBDetectionLib.cli.common import EXIT_OK, CLIError, make_parser, run_cli
from CMBDetectionLib.imageio.geometry import check_same_grid
from CMBDetectionLib.imageio.subject_files import ROLE_SUFFIXES, volumes_by_subject
from CMBDetectionLib.imageio.volumes import read_image_file

EPILOG = """pairing: files are matched by subject key = file stem without a trailing "_cmb" and then "_swi".
  ground truth: GT/<name>_cmb.nii.gz (cmb-phantom), or every volume in GT when none ends in _cmb
  prediction:   PRED/<name>_swi_cmb.nii.gz or PRED/<name>_cmb.nii.gz (cmb-detect); an optional
                PRED/<stem>_prob.nii.gz (cmb-detect --save-probability) adds AUC-ROC and BCE.
metrics: Dice, Jaccard, SVD (1 - Dice), accuracy, sensitivity, specificity, precision, FPR, AUC-ROC, BCE;
  lesion level (VALDO 2021 Task 2): 6-connected lesions matched one-to-one when centres of mass are < 5 mm apart,
  lesion sensitivity / precision / F1, false positives per subject, |count difference|, Dice of matched lesions.
checks: a prediction (and probability map) must lie on its ground truth's grid (size, spacing, origin,
  direction); ground truth without a prediction is named in a warning, or is an error with --strict."""

TABLE_COLUMNS = ("dice", "sensitivity", "precision", "n_gt", "n_pred", "tp", "fp", "lesion_sensitivity", "lesion_f1")


def _volumes(folder: Path, suffix: str = "") -> dict[str, Path]:
    """Volumes of ``folder`` ending in ``suffix`` by subject key (``sub-01_swi_cmb`` and ``sub-01_cmb``: ``sub-01``)."""
    return volumes_by_subject(folder, suffix, ROLE_SUFFIXES)


def pair_files(gt_dir: Path, pred_dir: Path, strict: bool = False) -> list[tuple[str, Path, Path, Path | None]]:
    """(subject, gt mask, predicted mask, probability map or None) for each subject found in both folders.

    Ground truth without a prediction is reported on stderr (an error with ``strict``); predictions without
    ground truth cannot be scored and are named too.
    """
    for folder, flag in ((gt_dir, "--gt"), (pred_dir, "--pred")):
        if not folder.is_dir():
            raise CLIError(f"{flag} {folder}: not a folder.")
    gt = _volumes(gt_dir, "_cmb") or _volumes(gt_dir)
    pred, prob = _volumes(pred_dir, "_cmb"), _volumes(pred_dir, "_prob")
    common = sorted(set(gt) & set(pred))
    if not common:
        raise CLIError(
            f"no subject has both a ground truth in {gt_dir} ({len(gt)} found) and a prediction in {pred_dir} "
            f"({len(pred)} *_cmb files found); see --help for the naming rule."
        )
    report_unpaired(sorted(set(gt) - set(pred)), sorted(set(pred) - set(gt)), pred_dir, strict)
    return [(key, gt[key], pred[key], prob.get(key)) for key in common]


def report_unpaired(no_prediction: list[str], no_truth: list[str], pred_dir: Path, strict: bool) -> None:
    """Name the subjects left out of the scores; with ``strict``, a missing prediction is an error."""
    def names(keys: list[str]) -> str:
        return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

    if no_prediction and strict:
        raise CLIError(f"{len(no_prediction)} subject(s) have ground truth but no prediction in {pred_dir} "
                       f"({names(no_prediction)}); run cmb-detect on them, or drop --strict to score the others.")
    if no_prediction:
        print(f"cmb-eval: warning: {len(no_prediction)} subject(s) have ground truth but no prediction and are not "
              f"scored ({names(no_prediction)}); --strict makes this an error.", file=sys.stderr)
    if no_truth:
        print(f"cmb-eval: warning: {len(no_truth)} prediction(s) have no ground truth and are not scored "
              f"({names(no_truth)}).", file=sys.stderr)


def evaluate_subject(gt_path: Path, pred_path: Path, prob_path: Path | None) -> dict[str, float]:
    from CMBDetectionLib.evaluation.metrics import subject_metrics

    gt_image = read_image_file(gt_path)
    pred_image = read_image_file(pred_path)
    check_same_grid(pred_image, gt_image, str(pred_path), f"its ground truth {gt_path}")
    probability = None
    if prob_path:
        prob_image = read_image_file(prob_path)
        check_same_grid(prob_image, gt_image, str(prob_path), f"its ground truth {gt_path}")
        probability = sitk.GetArrayFromImage(prob_image)
    return subject_metrics(sitk.GetArrayFromImage(gt_image) > 0, sitk.GetArrayFromImage(pred_image) > 0,
                           gt_image.GetSpacing()[::-1], probability)


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def print_table(rows: list[dict], summary: dict[str, dict[str, float]]) -> None:
    width = max(len("subject"), *(len(r["subject"]) for r in rows))
    print("subject".ljust(width), *(c.rjust(10) for c in TABLE_COLUMNS))
    for row in rows:
        print(row["subject"].ljust(width), *(_fmt(row[c]).rjust(10) for c in TABLE_COLUMNS))
    for stat in ("mean", "median"):
        print(stat.ljust(width), *(_fmt(summary[stat][c]).rjust(10) for c in TABLE_COLUMNS))


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("cmb-eval", "Score predicted CMB masks against ground-truth masks.", EPILOG)
    parser.add_argument("--gt", required=True, metavar="DIR", help="folder of ground-truth masks")
    parser.add_argument("--pred", required=True, metavar="DIR", help="folder of predicted masks (cmb-detect output)")
    parser.add_argument("-o", "--output", metavar="CSV", help="write per-subject metrics and the summary here")
    parser.add_argument("--strict", action="store_true",
                        help="fail when a subject with ground truth has no prediction (default: warn and score the others)")
    return parser


def body(args: argparse.Namespace) -> int:
    from CMBDetectionLib.evaluation.metrics import summarise
    from CMBDetectionLib.outputs.csv_files import write_csv

    rows = [{"subject": key, **evaluate_subject(g, p, q)} for key, g, p, q in pair_files(Path(args.gt), Path(args.pred), args.strict)]
    summary = summarise(rows)
    print_table(rows, summary)
    if args.output:
        columns = list(rows[0])
        stats = [{"subject": stat, **summary[stat]} for stat in ("mean", "median")]
        write_csv(rows + stats, columns, Path(args.output))
        print(f"cmb-eval: report written to {args.output}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
