"""``cmb-pacs``: a PACS worker over Orthanc's REST API; detects CMBs in new SWI series, stores a SEG and an SR.

>>> main(["--orthanc", "http://localhost:8042", "--username", "cmb", "--once"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from functools import cache

import SimpleITK as sitk

from CMBDetectionLib.cli.common import EXIT_FAILED, EXIT_OK, CLIError, make_parser, run_cli
from CMBDetectionLib.errors import PacsError
from CMBDetectionLib.pacs.orthanc_client import OrthancClient
from CMBDetectionLib.pacs.worker import DEFAULT_MATCH, Outcome, PacsWorker, series_rule
from CMBDetectionLib.results import DetectionResult

PASSWORD_VARIABLE = "CMB_PACS_PASSWORD"

EPILOG = f"""The worker processes MR series whose SeriesDescription matches RULE (a case-insensitive regular expression;
default: SWI, SWAN or T2*, not minIP or phase), once Orthanc has received them completely. For each it runs
cmb-detect (the shipped UNet, default settings) and stores into the same study a DICOM SEG (one segment "CMB n"
per lesion; none when no lesion is found) and a DICOM SR (TID 1500: a measurement group per lesion, the counts).
A series is processed once: one that an SR of this software references is skipped (delete that SR to redo it).
A failure is one line on stderr; the other series go on.

exit codes with --once: 0 every series went well (or none was new), 1 any series failed or Orthanc could not be
used, 2 bad command line. The password may come from ${PASSWORD_VARIABLE} instead of --password.

examples:
  cmb-pacs --orthanc http://localhost:8042 --username cmb --password secret --once
  cmb-pacs --orthanc http://pacs:8042 --username cmb --poll-seconds 60 --match 'swi|t2\\*'"""


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("cmb-pacs", "Detect CMBs in new SWI series of an Orthanc PACS; store DICOM SEG and SR.",
                         EPILOG)
    parser.add_argument("--orthanc", required=True, metavar="URL", help="Orthanc's REST address, like http://host:8042")
    parser.add_argument("--username", metavar="U", help="Orthanc user (HTTP basic authentication)")
    parser.add_argument("--password", metavar="P", default=os.environ.get(PASSWORD_VARIABLE),
                        help=f"that user's password (default: ${PASSWORD_VARIABLE})")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="process what is there now, then exit")
    mode.add_argument("--poll-seconds", type=float, metavar="N", help="look for new series every N seconds, forever")
    parser.add_argument("--match", metavar="RULE", default=DEFAULT_MATCH,
                        help="regular expression on SeriesDescription selecting the series to process")
    return parser


@cache
def _backend():
    """The UNet's inference backend, loaded at the first series (a pass with nothing new loads no model)."""
    from CMBDetectionLib.probability.backends.choice import make_backend

    return make_backend("auto", None, "auto")


def detect_default(image: sitk.Image) -> DetectionResult:
    """``cmb-detect``'s default detection (UNet, 3D filter, outlines redrawn, MARS) on one volume."""
    from CMBDetectionLib.pipeline import detect

    return detect(image, method="unet", backend=_backend())


def _report(outcome: Outcome) -> None:
    if outcome.error is None:
        print(outcome.line(), flush=True)
    else:
        print(f"cmb-pacs: error: {outcome.line()}", file=sys.stderr, flush=True)


def body(args: argparse.Namespace) -> int:
    if args.poll_seconds is not None and args.poll_seconds <= 0:
        raise CLIError(f"--poll-seconds {args.poll_seconds}: must be more than 0.")
    worker = PacsWorker(OrthancClient(args.orthanc, args.username, args.password), series_rule(args.match),
                        detect_default)
    if args.once:
        outcomes = worker.run_once(_report)
        return EXIT_FAILED if any(outcome.error for outcome in outcomes) else EXIT_OK
    while True:
        try:
            worker.run_once(_report)
        except PacsError as exc:  # the PACS may come back: keep polling
            print(f"cmb-pacs: error: {exc}", file=sys.stderr, flush=True)
        time.sleep(args.poll_seconds)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
