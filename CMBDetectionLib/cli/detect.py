"""``cmb-detect``: find cerebral microbleeds in SWI volumes and write masks, tables and Slicer files.

>>> main(["--demo", "-o", "demo_output"])        # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from CMBDetectionLib.cli.common import EXIT_FAILED, EXIT_OK, check_threshold, make_parser, percent_bar, run_cli
from CMBDetectionLib.errors import CLIError, CMBDetectionError, one_line
from CMBDetectionLib.imageio.volumes import read_volume_and_headers
from CMBDetectionLib.outputs.folder import output_folder
from CMBDetectionLib.outputs.stems import distinct_stems
from CMBDetectionLib.probability.backends.choice import BACKEND_FACTORIES
from CMBDetectionLib.probability.backends.protocol import DEVICES
from CMBDetectionLib.probability.registry import METHODS

log = logging.getLogger(__name__)

EPILOG = """outputs, for an input with stem S (file name without .nii.gz etc., or the DICOM folder's name; characters
other than letters, digits and . _ + - become _; inputs with the same stem get their parent folder's name in front):
  S_cmb.nii.gz        lesion label map on the input's grid: 0 background, n inside lesion n (> 0 is the CMB mask)
  S_lesions.csv       one row per lesion (schema_version 1): id, centre (RAS mm and voxel i,j,k), diameter, volume,
                      probability, MARS fields, accepted, source
  S_cmb.seg.nrrd      Slicer segmentation, one segment "CMB n" per lesion
  S_lesions.mrk.json  Slicer markups point list, one point "CMB n" per lesion
  S_mars.csv          MARS counts per region (when MARS rating is available)
  S_prob.nii.gz       probability map: lesion scores after the 3D filter (only with --save-probability)
  S_cmb.seg.dcm       DICOM SEG in the source study, one segment "CMB n" per lesion (DICOM input with a lesion)
  S_cmb.sr.dcm        DICOM SR (TID 1500): a measurement group per lesion, MARS counts (DICOM input)
A run replaces all files of S as one set (written aside, then moved in under a lock on the folder), so files
of an earlier run of S that this run does not write are removed, and a failed run leaves the earlier set intact.

examples:
  cmb-detect sub-01_swi.nii.gz -o results/
  cmb-detect /data/dicom/sub-02 --series 1.2.840... -o results/ --device cpu
  cmb-detect --demo -o demo_output/"""


def demo_volume() -> Path:
    """The SWI phantom shipped inside the package."""
    return Path(str(resources.files("CMBDetectionLib") / "data" / "demo_swi.nii.gz"))


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("cmb-detect", "Detect cerebral microbleeds (CMBs) in SWI volumes.", EPILOG)
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="SWI volume file (.nii.gz, .nrrd, .mha ...) or DICOM folder")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the result files (created)")
    parser.add_argument("--demo", action="store_true", help="run on the bundled demo phantom (no INPUT needed)")
    parser.add_argument("--method", choices=tuple(METHODS), default="unet",
                        help="unet: end-to-end UNet (default); two-stage: k-means candidates + ResNet50 classifier")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto: GPU when one is visible, else CPU (default)")
    parser.add_argument("--backend", choices=("auto", *BACKEND_FACTORIES), default="auto",
                        help="inference library (default auto: the fastest available; keras: any KERAS_BACKEND)")
    parser.add_argument("--threshold", type=float,
                        help="threshold, 0..1, on the lesion score of the 3D false-positive filter (with "
                             "--no-lesion-filter: on the UNet's voxel probability or the ResNet50's patch probability); "
                             "default: the operating threshold chosen on validation data (model card), else 0.5")
    parser.add_argument("--no-lesion-filter", action="store_true",
                        help="without the 3D false-positive filter, as in the papers: threshold the UNet's voxel "
                             "probabilities, or the ResNet50's patch probabilities, directly")
    parser.add_argument("--detector-outlines", action="store_true",
                        help="keep the detector's lesions and outlines: no redrawing at half signal loss on the SWI "
                             "image, and no dropping of low-score lesions whose outline runs along a vein")
    parser.add_argument("--series", metavar="UID", help="DICOM series UID when a folder holds several series")
    parser.add_argument("--allow-slice-gaps", action="store_true",
                        help="read a DICOM series whose slices are unevenly spaced (a missing slice) onto an averaged "
                             "grid, with a warning naming the gap; refused by default")
    parser.add_argument("--model-dir", metavar="DIR", help="use the model in DIR instead of the shipped one")
    parser.add_argument("--no-mars", action="store_true", help="skip MARS anatomical rating (faster)")
    parser.add_argument("--save-probability", action="store_true", help="also write S_prob.nii.gz")
    return parser


def _inputs(args: argparse.Namespace) -> list[str]:
    inputs = list(args.inputs)
    if args.demo:
        if not demo_volume().exists():
            raise CLIError(f"{demo_volume()}: the demo volume is missing from this installation; reinstall the package.")
        inputs.append(str(demo_volume()))
    if not inputs:
        raise CLIError("no INPUT given; name one or more SWI volumes or DICOM folders, or use --demo.")
    check_threshold(args.threshold)
    return inputs


def _detect_one(path: str, stem: str, args: argparse.Namespace, backend) -> str:
    """Run the pipeline on one input and write its files named ``stem``; returns the summary line."""
    from CMBDetectionLib.outputs.files import write_outputs
    from CMBDetectionLib.pipeline import detect

    image, datasets = read_volume_and_headers(path, args.series, allow_slice_gaps=args.allow_slice_gaps)
    with percent_bar(stem, args.quiet) as progress:
        result = detect(image, method=args.method, threshold=args.threshold, device=args.device, backend=backend,
                        model_dir=args.model_dir, mars=not args.no_mars, use_lesion_filter=not args.no_lesion_filter,
                        redraw_outlines=not args.detector_outlines, progress=progress)
    paths = write_outputs(result, args.output, stem, save_probability=args.save_probability, dicom_datasets=datasets)
    log.debug("%s: stage seconds %s", stem, ", ".join(f"{name} {s:.2f}" for name, s in result.timings.items()))
    return f"{stem}: {len(result.lesions)} CMB(s), {result.provenance['seconds']:.1f} s -> {paths['mask']}"


def _shared_backend(args: argparse.Namespace):
    """One UNet backend for all inputs (loading the model once); other methods get the name."""
    if args.method != "unet":
        return args.backend
    from CMBDetectionLib.probability.backends.choice import make_backend

    return make_backend(args.backend, args.model_dir, args.device)


def body(args: argparse.Namespace) -> int:
    inputs = _inputs(args)
    stems = distinct_stems(inputs)  # a clash is refused here, before any work
    output_folder(args.output)
    backend = _shared_backend(args)
    if not isinstance(backend, str) and not args.quiet:  # the Slicer module shows this device (background_run.py)
        print(f"cmb-detect: UNet inference on {backend.device} ({backend.name})", file=sys.stderr)
    failures = 0
    for path, stem in zip(inputs, stems, strict=True):
        try:
            print(_detect_one(path, stem, args, backend))
        except (CMBDetectionError, ValueError, OSError, RuntimeError) as exc:  # one bad input never stops the others
            failures += 1
            message = one_line(exc)
            message = message if str(path) in message else f"{path}: {message}"
            print(f"cmb-detect: error: {message}", file=sys.stderr)
    if failures:
        print(f"cmb-detect: {failures} of {len(inputs)} input(s) failed.", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
