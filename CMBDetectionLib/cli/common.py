"""Conventions shared by every ``cmb-*`` command.

- ``--help`` describes every option; errors go to stderr as one ``error: ...`` line saying what to do.
- Exit codes: 0 success, 1 a run failed (bad data, failed model), 2 bad command line (argparse), 130 interrupted.
- Long work shows a tqdm progress bar on stderr (``--quiet`` hides it).

>>> def main(argv=None):
...     parser = make_parser("cmb-x", "Does x.")
...     return run_cli(lambda args: 0, parser, argv)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from CMBDetectionLib.errors import CLIError, VolumeError

# TensorFlow's start-up banner (CPU features, absl) is noise on a command line; set before TF is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def make_parser(prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, only errors and summaries")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (debug level)")
    return parser


@contextmanager
def progress_bar(total: int, description: str, quiet: bool = False) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; shows a tqdm bar on stderr unless ``quiet``."""
    from tqdm import tqdm

    with tqdm(total=total, desc=description, unit="", disable=quiet, file=sys.stderr, leave=False) as bar:
        yield bar.update


@contextmanager
def percent_bar(description: str, quiet: bool = False) -> Iterator[Callable[[float], None]]:
    """Yield ``progress(fraction)`` (0..1, as the engine reports it) driving a 0-100 % bar; it never moves back."""
    with progress_bar(100, description, quiet) as advance:
        done = [0]

        def progress(fraction: float) -> None:
            step = int(100 * fraction) - done[0]
            if step > 0:
                advance(step)
                done[0] += step

        yield progress


def run_cli(
    body: Callable[[argparse.Namespace], int],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv``, run ``body`` and turn known failures into one-line errors and exit codes."""
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s: %(message)s",
    )
    try:
        return body(args)
    except (CLIError, VolumeError, FileNotFoundError, ValueError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
