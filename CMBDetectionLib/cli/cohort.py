"""``cmb-cohort``: detect CMBs over a whole cohort on Dask distributed; resumable, one folder per subject.

>>> main(["bids/", "-o", "out/", "--workers", "4"])                               # doctest: +SKIP
0
>>> main(["subjects.csv", "-o", "out/", "--scheduler", "tcp://head-node:8786"])   # doctest: +SKIP
1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from CMBDetectionLib.cli.common import EXIT_FAILED, EXIT_OK, check_threshold, make_parser, positive_int, run_cli
from CMBDetectionLib.errors import CLIError
from CMBDetectionLib.probability.backends.protocol import DEVICES
from CMBDetectionLib.probability.registry import METHODS

EPILOG = """INPUT is one of:
  a BIDS dataset       sub-*/[ses-*/]anat/*_swi.nii.gz or *_T2starw.nii.gz (subject, session from the names)
  a folder             volume files (.nii.gz, .nrrd, .mha ...) and/or DICOM series folders, one subject each
  a CSV file           columns subject,path[,session]; relative paths from the CSV's folder

OUT receives:
  OUT/<subject>[_<session>]/   the files cmb-detect writes (S_cmb.nii.gz, S_lesions.csv, S_cmb.seg.nrrd,
                               S_lesions.mrk.json, S_mars.csv), report.html, then completion.json
  OUT/cohort.csv               one row per subject: status, n_lesions, definite/possible per MARS category,
                               seconds, model version, QC (snr, brain_coverage, warnings), error
  OUT/cohort_report.html       counts, lesions by region and side, QC outliers, failures

A re-run skips every subject whose completion.json matches its input (checksum), the settings and the model, and
redoes the others; a killed run resumes where it stopped. One failing subject is recorded in cohort.csv with its
error and never stops the others; the exit code is then 1.

Workers: a local Dask cluster of --workers processes (default: half the physical cores), each detecting one subject
at a time with cores/workers threads. --scheduler uses a running Dask cluster instead (dask-jobqueue on SLURM/PBS).

examples:
  cmb-cohort /data/bids -o /data/cmb --workers 4
  cmb-cohort subjects.csv -o results/ --scheduler tcp://head-node:8786 --threshold 0.1"""


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("cmb-cohort", "Detect cerebral microbleeds over a cohort on Dask, resumably.", EPILOG)
    parser.add_argument("input", metavar="INPUT", help="BIDS dataset, folder of volumes/DICOM folders, or CSV")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (created)")
    parser.add_argument("--workers", type=positive_int, metavar="N",
                        help="local worker processes (default: half the physical cores, at least 1)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler, tcp://host:8786")
    parser.add_argument("--method", choices=tuple(METHODS), default="unet", help="detection method (default unet)")
    parser.add_argument("--threshold", type=float,
                        help="threshold, 0..1 (default: the model's operating threshold, as cmb-detect)")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto: GPU when usable, else CPU")
    parser.add_argument("--model-dir", metavar="DIR", help="use the model in DIR instead of the shipped one")
    parser.add_argument("--no-mars", action="store_true", help="skip MARS rating (no regions, no QC overlay)")
    return parser


def body(args: argparse.Namespace) -> int:
    from CMBDetectionLib.cohort.inputs import list_subjects
    from CMBDetectionLib.cohort.runner import run_cohort
    from CMBDetectionLib.cohort.tasks import CohortSettings
    from CMBDetectionLib.outputs.folder import output_folder

    check_threshold(args.threshold)
    if args.workers and args.scheduler:
        raise CLIError("--workers sizes the local cluster; with --scheduler the running cluster's workers are used: "
                       "give one of the two.")
    subjects = list_subjects(args.input, args.output)  # CohortError and OutputError: one line from run_cli
    output_folder(args.output)
    settings = CohortSettings(method=args.method, threshold=args.threshold, device=args.device,
                              model_dir=args.model_dir, mars=not args.no_mars)
    rows = run_cohort(subjects, args.output, settings, args.workers, args.scheduler, args.quiet)
    failed = [row for row in rows if row["status"] == "failed"]
    print(f"cmb-cohort: {len(rows) - len(failed)} of {len(rows)} subject(s) finished, "
          f"{sum(int(row['n_lesions']) for row in rows if row['status'] != 'failed')} CMB(s); "
          f"see {args.output}/cohort.csv and cohort_report.html")
    if failed:
        print(f"cmb-cohort: {len(failed)} subject(s) failed ({', '.join(row['key'] for row in failed[:5])}"
              f"{', ...' if len(failed) > 5 else ''}); their errors are in cohort.csv.", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
