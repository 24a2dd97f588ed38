"""``cmb-serve``: the detection engine as an HTTP service (a job queue), for clients such as the Slicer module.

>>> main(["--token-file", "tokens.txt", "--data-dir", "/srv/cmb", "--workers", "2"])   # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence
from pathlib import Path

from CMBDetectionLib.cli.common import CLIError, make_parser, run_cli

EPILOG = """endpoints (OpenAPI docs at /docs; every /v1/jobs endpoint needs 'Authorization: Bearer <token>'):
  GET    /v1/health                     status, models and device (no token)
  POST   /v1/jobs                       multipart: volume (NIfTI, NRRD, MHA or a zip of one DICOM series),
                                        optional method, threshold, and true/false: mars, lesion_filter,
                                        redraw_outlines -> 202 {"id", "status": "queued"}
  GET    /v1/jobs/{id}                  status (queued, running, done, failed, cancelled), progress 0..1,
                                        error (failed), lesions (done)
  GET    /v1/jobs/{id}/files            the result files, named as cmb-detect names them
  GET    /v1/jobs/{id}/files/{name}     one result file
  DELETE /v1/jobs/{id}                  cancel a queued or running job; delete a finished one and its files

The token file lists one token per line (at least 16 characters; '#' starts a comment); it is read again when
it changes. The data folder holds the job database (jobs.sqlite), the uploads, the results and audit.log; it
survives restarts: finished jobs stay readable, queued jobs run, interrupted ones are re-queued.

examples:
  python -c "import secrets; print(secrets.token_urlsafe(32))" > tokens.txt
  cmb-serve --token-file tokens.txt --data-dir /srv/cmb --workers 2
  curl -H "Authorization: Bearer $(head -1 tokens.txt)" -F volume=@sub-01_swi.nii.gz http://127.0.0.1:8000/v1/jobs"""


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("cmb-serve", "Serve cerebral microbleed detection over HTTP as a job queue.", EPILOG)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; use TLS for others)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--token-file", required=True, metavar="FILE",
                        help="file of accepted bearer tokens, one a line")
    parser.add_argument("--data-dir", default="cmb-serve-data", metavar="DIR",
                        help="folder for the job database, uploads, results and audit log (default ./cmb-serve-data)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="CPU jobs run at once, each in its own process (default 1; a GPU runs one at a time)")
    parser.add_argument("--max-upload-mb", type=float, default=1024, metavar="N",
                        help="largest accepted upload in MiB; larger ones get 413 (default 1024)")
    parser.add_argument("--keep-days", type=float, default=30, metavar="N",
                        help="delete finished jobs and their files after N days (default 30)")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                        help="auto: a GPU when ONNX Runtime has one, else the CPU (default)")
    parser.add_argument("--certfile", metavar="FILE", help="TLS certificate (PEM) to serve HTTPS directly")
    parser.add_argument("--keyfile", metavar="FILE", help="TLS private key (PEM) of --certfile")
    return parser


def serving_device(requested: str) -> str:
    """``cpu`` or ``gpu``: what the workers will run on, from what ONNX Runtime offers here."""
    if requested == "cpu":
        return "cpu"
    from CMBDetectionLib.probability.backends.onnxruntime_backend import CPU_PROVIDER, choose_providers

    try:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    except ImportError:
        available = []
    return "cpu" if choose_providers(requested, available)[0] == CPU_PROVIDER else "gpu"


def _check(args: argparse.Namespace) -> None:
    """Refuse a bad command line before anything starts, with one line saying what to fix."""
    from CMBDetectionLib.service.auth import read_tokens

    read_tokens(args.token_file)  # TokenFileError (a ValueError) names the problem
    if not 0 < args.port < 65536:
        raise CLIError(f"--port {args.port}: must lie between 1 and 65535.")
    for name in ("workers", "max_upload_mb", "keep_days"):
        if getattr(args, name) <= 0:
            raise CLIError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be greater than 0.")
    if bool(args.certfile) != bool(args.keyfile):
        raise CLIError("--certfile and --keyfile go together; give both to serve HTTPS, or neither.")
    for path in filter(None, (args.certfile, args.keyfile)):
        if not Path(path).is_file():
            raise CLIError(f"{path}: no such file; give the PEM certificate and key for HTTPS.")


def _exposed_without_tls(host: str) -> bool:
    """True when ``host`` is reachable from other machines: tokens and scans would cross the network in clear.

    >>> _exposed_without_tls("127.0.0.1"), _exposed_without_tls("0.0.0.0"), _exposed_without_tls("localhost")
    (False, True, False)
    """
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def body(args: argparse.Namespace) -> int:
    _check(args)
    try:
        import uvicorn

        from CMBDetectionLib.service.app import ServiceSettings, create_app
    except ImportError as exc:
        raise CLIError(f"cmb-serve needs the server packages ({exc.name} is missing); "
                       "pip install 'cmbdetection[server]'.") from None
    settings = ServiceSettings(args.data_dir, args.token_file, args.workers, args.max_upload_mb, args.keep_days,
                               serving_device(args.device))
    if _exposed_without_tls(args.host) and not args.certfile:
        print(f"cmb-serve: warning: listening on {args.host} without TLS; put it behind an HTTPS reverse proxy or "
              "give --certfile/--keyfile.", file=sys.stderr)
    # No access log: request paths name result files, which carry the upload's name. audit.log says who did what.
    uvicorn.run(create_app(settings), host=args.host, port=args.port, access_log=False,
                log_level="warning" if args.quiet else "info", ssl_certfile=args.certfile, ssl_keyfile=args.keyfile,
                timeout_graceful_shutdown=30)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
