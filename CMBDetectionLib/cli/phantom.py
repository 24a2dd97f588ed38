"""``cmb-phantom``: write synthetic SWI subjects with ground-truth microbleeds.

>>> main(["-o", "phantoms", "--n", "2", "--seed", "1000"])     # doctest: +SKIP
0
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Sequence

from CMBDetectionLib.cli.common import EXIT_OK, CLIError, make_parser, progress_bar, run_cli

log = logging.getLogger("cmb-phantom")

EPILOG = """\
Per subject (seed = --seed + i) it writes, in OUTPUT:
  phantom_SSSSS_swi.nii.gz    int16 SWI magnitude
  phantom_SSSSS_cmb.nii.gz    uint8 ground-truth CMB mask (one component per CMB)
  phantom_SSSSS_brain.nii.gz  uint8 brain mask
  phantom_SSSSS_cmbs.json     CMB list: centre_ras (mm), diameter_mm, region, category, side
Seeds: tests < 1000, training 1000-8999, held-out evaluation 9000+, demo 424308.
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of mm, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("cmb-phantom", "Generate realistic synthetic SWI volumes with known microbleeds.", EPILOG)
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument("--n", type=_positive_int, default=1, help="number of subjects (default 1)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the first subject (default 0)")
    parser.add_argument("--size", type=_positive_int, default=256, help="in-plane matrix (default 256)")
    parser.add_argument("--spacing", type=_positive_float, default=0.9, help="in-plane voxel size in mm (default 0.9)")
    parser.add_argument("--slice-thickness", type=_positive_float, default=2.0, help="slice spacing in mm (default 2)")
    parser.add_argument("--slices", type=_positive_int, default=70, help="number of axial slices (default 70)")
    parser.add_argument("--mimics", action="store_true", help="also write vein and calcification masks")
    return parser


def _check_output(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create output folder {folder} ({exc.strerror}); choose a writable folder with -o.") from exc
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise CLIError(f"output folder {folder} is not writable; choose a writable folder with -o.")


def _run(args: argparse.Namespace) -> int:
    from CMBDetectionLib.phantoms.generator import generate_subject, write_subject

    _check_output(args.output)
    started = time.perf_counter()
    n_cmbs = 0
    with progress_bar(args.n, "phantoms", args.quiet) as advance:
        for i in range(args.n):
            subject = generate_subject(args.seed + i, args.size, args.spacing, args.slice_thickness, args.slices)
            try:
                write_subject(subject, args.output, mimics=args.mimics)
            except (OSError, RuntimeError) as exc:  # disk full, permissions changed mid-run
                raise CLIError(f"cannot write subject {subject.seed} to {args.output}: {exc}") from exc
            n_cmbs += len(subject.cmbs)
            log.debug("seed %d: %d CMBs, %.1f s", subject.seed, len(subject.cmbs), subject.timings["total"])
            advance(1)
    if not args.quiet:
        print(f"wrote {args.n} subjects ({n_cmbs} CMBs) to {args.output} in {time.perf_counter() - started:.0f} s")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_run, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
