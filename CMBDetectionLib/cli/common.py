"""Conventions shared by every ``cmb-*`` command.

- ``--help`` describes every option; errors go to stderr as one ``error: ...`` line saying what to do.
- Exit codes: 0 success, 1 a run failed (bad data, failed model), 2 bad command line (argparse), 130 interrupted.
- Every failure the user can act on is one line: the engine's errors, any ``OSError`` (permission, full disk,
  not a folder) and decoding errors (a file that is not the text it should be); never a traceback.
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from CMBDetectionLib.errors import CLIError, CMBDetectionError, one_line  # noqa: F401  (CLIError: the commands import it from here)

# TensorFlow's start-up banner (CPU features, absl) is noise on a command line; set before TF is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXIT_OK = 0
EXIT_FAILED = 1
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
    if not args.verbose:  # highdicom logs each DICOM module it copies at INFO: noise for a user
        logging.getLogger("highdicom").setLevel(logging.WARNING)
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is printed escaped, not fatal
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        return body(args)
    except (CMBDetectionError, ValueError, OSError) as exc:  # UnicodeError is a ValueError
        print(f"{parser.prog}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def check_threshold(threshold: float | None) -> None:
    """CLIError (exit 1) unless ``--threshold`` is absent or strictly between 0 and 1.

    >>> check_threshold(1.5)
    Traceback (most recent call last):
    ...
    CMBDetectionLib.errors.CLIError: --threshold 1.5: must lie strictly between 0 and 1.
    """
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise CLIError(f"--threshold {threshold}: must lie strictly between 0 and 1.")


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
