"""``cmb-detect``: find cerebral microbleeds in SWI volumes and write masks, tables and Slicer files.

>>> main(["--demo", "-o", "demo_output"])        # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib import resources
from pathlib import Path
from typing import Sequence

from CMBDetectionLib.imageio.volumes import read_volume, volume_stem
from CMBDetectionLib.cli.common import EXIT_FAILED, EXIT_OK, CLIError, make_parser, percent_bar, run_cli

log = logging.getLogger(__name__)

EPILOG = """outputs, for an input with stem S (file name without .nii.gz etc., or the DICOM folder's name):
  S_cmb.nii.gz        0/1 CMB mask (uint8) on the input's grid
  S_lesions.csv       one row per lesion: centre (RAS mm and voxel i,j,k), diameter, volume, probability, MARS fields
  S_cmb.seg.nrrd      Slicer segmentation, one segment "CMB n" per lesion
  S_lesions.mrk.json  Slicer markups point list, one point "CMB n" per lesion
  S_mars.csv          MARS counts per region (when MARS rating is available)
  S_prob.nii.gz       probability map: lesion scores after the 3D filter (only with --save-probability)

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
    parser.add_argument("--method", choices=("unet", "two-stage"), default="unet",
                        help="unet: end-to-end UNet (default); two-stage: k-means candidates + ResNet50 classifier")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                        help="auto: GPU when one is visible, else CPU (default)")
    parser.add_argument("--backend", choices=("auto", "tensorflow", "onnxruntime", "keras"), default="auto",
                        help="inference library (default auto: the fastest available; keras: any KERAS_BACKEND)")
    parser.add_argument("--threshold", type=float,
                        help="threshold, 0..1, on the lesion score of the UNet's 3D false-positive filter (on the "
                             "voxel probability with --no-lesion-filter or --method two-stage); default: the operating "
                             "threshold chosen on validation data (model card), 0.5 for two-stage")
    parser.add_argument("--no-lesion-filter", action="store_true",
                        help="unet: threshold the UNet's voxel probabilities directly, as in the paper, without the "
                             "3D false-positive filter")
    parser.add_argument("--detector-outlines", action="store_true",
                        help="keep the detector's lesions and outlines: no redrawing at half signal loss on the SWI "
                             "image, and no dropping of low-score lesions whose outline runs along a vein")
    parser.add_argument("--series", metavar="UID", help="DICOM series UID when a folder holds several series")
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
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise CLIError(f"--threshold {args.threshold}: must lie strictly between 0 and 1.")
    return inputs


def _detect_one(path: str, args: argparse.Namespace, backend) -> str:
    """Run the pipeline on one input and write its files; returns the summary line."""
    from CMBDetectionLib.outputs.files import write_outputs
    from CMBDetectionLib.pipeline import detect
    from CMBDetectionLib.imageio.volumes import write_image, array_to_image

    image = read_volume(path, args.series)
    stem = volume_stem(path)
    with percent_bar(stem, args.quiet) as progress:
        result = detect(image, method=args.method, threshold=args.threshold, device=args.device, backend=backend,
                        model_dir=args.model_dir, mars=not args.no_mars, use_lesion_filter=not args.no_lesion_filter,
                        redraw_outlines=not args.detector_outlines, progress=progress)
    paths = write_outputs(result, args.output, stem)
    if args.save_probability:
        write_image(array_to_image(result.probability, image), Path(args.output) / f"{stem}_prob.nii.gz")
    return f"{stem}: {len(result.lesions)} CMB(s), {result.provenance['seconds']:.1f} s -> {paths['mask']}"


def _shared_backend(args: argparse.Namespace):
    """One UNet backend for all inputs (loading the model once); other methods get the name."""
    if args.method != "unet":
        return args.backend
    from CMBDetectionLib.probability.backends.choice import make_backend

    return make_backend(args.backend, args.model_dir, args.device)


def body(args: argparse.Namespace) -> int:
    inputs = _inputs(args)
    backend = _shared_backend(args)
    failures = 0
    for path in inputs:
        try:
            print(_detect_one(path, args, backend))
        except (CLIError, ValueError, FileNotFoundError, RuntimeError) as exc:
            failures += 1
            message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            print(f"cmb-detect: error: {message}", file=sys.stderr)
    if failures:
        print(f"cmb-detect: {failures} of {len(inputs)} input(s) failed.", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
