"""``cmb-phantom``: write synthetic SWI subjects with ground-truth microbleeds.

>>> main(["-o", "phantoms", "--n", "2", "--seed", "1000"])     # doctest: +SKIP
0
>>> main(["-o", "ood/snr", "--ood-set", "snr-8-12", "--n", "4"])   # doctest: +SKIP
0
"""

from __future__ import annotations

import argparse
import logging
import os
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from CMBDetectionLib.cli.common import EXIT_OK, CLIError, make_parser, positive_int, progress_bar, run_cli
from CMBDetectionLib.phantoms.ood_sets import OOD_SETS, SEEDS_PER_SET, ood_set
from CMBDetectionLib.phantoms.settings import DEFAULT, RANDOMISED, PhantomSettings

log = logging.getLogger("cmb-phantom")

EPILOG = f"""\
Per subject (seed = --seed + i) it writes, in OUTPUT:
  phantom_SSSSS_swi.nii.gz    int16 SWI magnitude
  phantom_SSSSS_cmb.nii.gz    uint8 ground-truth CMB mask (one component per CMB)
  phantom_SSSSS_brain.nii.gz  uint8 brain mask
  phantom_SSSSS_cmbs.json     CMB list: centre_ras (mm), diameter_mm, region, category, side
Settings: the defaults are the generator the shipped models were trained on (256 x 256 x 70 at 0.9 x 0.9 x 2 mm);
--randomise draws each subject from wide domain-randomised training ranges (resolution, slices, tilt, voxel order,
contrast, noise, bias, warp, CMB size/contrast/shape, hard negatives); --ood-set NAME makes a set of the
out-of-distribution test matrix, each shifting one thing past the training ranges:
{textwrap.fill(", ".join(OOD_SETS), 110, initial_indent="  ", subsequent_indent="  ")}
Seeds: tests < 1000, training 1000-8999, held-out evaluation 9000-19999, out-of-distribution matrix
20000-29999 (set k starts at 20000 + 100 k; --ood-set picks them; never train or tune on them), demo 424308.
"""


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
    parser.add_argument("--n", type=positive_int, default=1, help="number of subjects (default 1)")
    parser.add_argument("--seed", type=_non_negative_int, default=None,
                        help="seed of the first subject (default 0; with --ood-set, the set's first seed)")
    parser.add_argument("--size", type=positive_int, default=None, help="in-plane matrix (default 256)")
    parser.add_argument("--spacing", type=_positive_float, default=None, help="in-plane voxel size in mm (default 0.9)")
    parser.add_argument("--slice-thickness", type=_positive_float, default=None, help="slice spacing in mm (default 2)")
    parser.add_argument("--slices", type=positive_int, default=None, help="number of axial slices (default 70)")
    parser.add_argument("--mimics", action="store_true", help="also write vein and calcification masks")
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--randomise", action="store_true", help="domain-randomised training settings (see below)")
    preset.add_argument("--ood-set", metavar="NAME", choices=list(OOD_SETS),
                        help="a set of the out-of-distribution test matrix (names below)")
    return parser


def _settings(args: argparse.Namespace) -> PhantomSettings:
    """The generator settings the arguments ask for, with any grid options applied."""
    grid = (args.size, args.spacing, args.slice_thickness, args.slices)
    if args.ood_set:
        if any(value is not None for value in grid):
            raise CLIError(f"--ood-set {args.ood_set} fixes its own grid; drop --size, --spacing, --slice-thickness "
                           "and --slices.")
        return ood_set(args.ood_set).settings
    return (RANDOMISED if args.randomise else DEFAULT).with_grid(*grid)  # a ValueError is a one-line CLI error


def _first_seed(args: argparse.Namespace) -> int:
    """--seed, else the OOD set's first seed, else 0; an OOD set's subjects stay in its seed block."""
    if not args.ood_set:
        return 0 if args.seed is None else args.seed
    chosen = ood_set(args.ood_set)
    first = chosen.first_seed if args.seed is None else args.seed
    last = chosen.first_seed + SEEDS_PER_SET - 1
    if not chosen.first_seed <= first <= first + args.n - 1 <= last:
        raise CLIError(f"--ood-set {chosen.name} owns seeds {chosen.first_seed}-{last}; "
                       "choose --seed and --n within them.")
    return first


def _check_output(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create output folder {folder} ({exc.strerror}); choose a writable folder with -o.") from exc
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise CLIError(f"output folder {folder} is not writable; choose a writable folder with -o.")


def _run(args: argparse.Namespace) -> int:
    from CMBDetectionLib.phantoms.generator import generate_subject, write_subject

    settings, first = _settings(args), _first_seed(args)
    _check_output(args.output)
    started = time.perf_counter()
    n_cmbs = 0
    with progress_bar(args.n, "phantoms", args.quiet) as advance:
        for i in range(args.n):
            subject = generate_subject(first + i, settings=settings)
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
