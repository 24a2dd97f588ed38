"""``cmb-train``: train the paper UNet (or, with ``--method two-stage``, the two-stage method's ResNet50) on
volume/mask pairs and write a model folder with its model card.

>>> main(["phantoms/", "-o", "models/unet", "--epochs", "15", "--steps-per-epoch", "200"])   # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from CMBDetectionLib.cli.common import EXIT_OK, CLIError, make_parser, percent_bar, run_cli
from CMBDetectionLib.training.data import LAYOUT_HELP

EPILOG = LAYOUT_HELP + """

recipe (Ali et al. 2023): Adam, learning rate 1e-4, binary cross-entropy, batch 4, 80:20 split by subject,
random rotations + flips + intensity augmentation, CMB slices oversampled (--positive-fraction).
--dice-weight W adds W x soft-Dice loss to the cross-entropy (0, the paper's choice, by default).

OUTDIR receives weights.npz, model_card.json (with held-out metrics), split.json, training_log.csv,
loss_curve.png, checkpoints/ (every epoch) and cache/ (preprocessed slices; delete after training).

examples:
  cmb-train phantoms/ -o models/unet --crop 128 --steps-per-epoch 200 --epochs 15 --eval-dir heldout/
  cmb-train phantoms/ -o models/unet --epochs 20 --resume      # continue after epoch N up to 20
  cmb-train phantoms/ -o runs/tuned --init-from models/unet --randomise --lr 2e-5 --crop 256 \
      --validation-subjects models/unet/split.json   # fine-tune with domain randomisation (checkpoint each epoch)
  cmb-train fresh_phantoms/ -o models/unet --method lesion-filter --eval-dir heldout/
      # 3D false-positive filter for the UNet in models/unet: fitted on 80% of the subjects, threshold on 20%
  cmb-train fresh_phantoms/ -o models/resnet50 --method lesion-filter
      # the same for the two-stage method, on its stage-one candidates and ResNet50 probabilities
  cmb-train phantoms/ -o runs/resnet50 --method two-stage --epochs 11 --batch-size 16 --patch-size 64
      # two-stage (Afzal et al.): trains the ResNet50; add --eval-dir heldout/; a rerun resumes after the last epoch"""


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("cmb-train", "Train the CMB segmentation UNet.", EPILOG)
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder of training volume/mask pairs (layouts below)")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="model folder to write (e.g. models/unet)")
    parser.add_argument("--epochs", type=int, default=15, help="total number of epochs (default 15)")
    parser.add_argument("--steps-per-epoch", type=int, default=200, help="batches per epoch (default 200)")
    parser.add_argument("--validation-steps", type=int, default=25, help="validation batches per epoch (default 25)")
    parser.add_argument("--batch-size", type=int, default=4, help="crops per batch (default 4, the paper's)")
    parser.add_argument("--crop", type=int, default=128, help="crop size in pixels, multiple of 16 (default 128; 256 = whole slice)")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4, the paper's)")
    parser.add_argument("--dice-weight", type=float, default=0.0, help="weight of an added soft-Dice loss (default 0)")
    parser.add_argument("--positive-fraction", type=float, default=0.5, help="share of crops centred near a CMB (default 0.5)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of subjects held out for validation (default 0.2)")
    parser.add_argument("--validation-subjects", metavar="FILE",
                        help="validate on these subjects and train on all others (an earlier run's split.json or one "
                             "name per line): keeps validation fixed when you add data")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the sampling (default 0)")
    parser.add_argument("--eval-dir", metavar="DIR", help="separate held-out subjects (same layouts) evaluated at the end")
    parser.add_argument("--resume", action="store_true", help="continue from OUTDIR/checkpoints with the recorded split")
    parser.add_argument("--init-from", metavar="MODEL_DIR",
                        help="start from this model folder's weights (fine-tune, e.g. models/unet, on your own data)")
    parser.add_argument("--randomise", action="store_true",
                        help="unet: domain randomisation instead of the paper's augmentation (random tissue contrast, "
                             "inverted or flat; resolution, thick slices, bias, noise, blur, gamma, ghosts, motion, "
                             "scale, partial slabs) so the model generalises beyond the training generator")
    parser.add_argument("--time-limit", type=float, metavar="MINUTES",
                        help="stop after the epoch in which MINUTES of wall time pass (then --resume continues)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes preparing augmented batches (default 1; 4-8 keep a GPU busy)")
    parser.add_argument("--method", choices=("unet", "lesion-filter", "two-stage"), default="unet",
                        help="unet (default); lesion-filter: the 3D false-positive filter for the model already in "
                             "OUTDIR (UNet or two-stage ResNet50), on subjects it did not train on; two-stage: ResNet50 "
                             "on k-means candidate patches (Afzal et al. 2022)")
    parser.add_argument("--patch-size", type=int, default=64, help="two-stage: ResNet50 input size in pixels (default 64; paper 224)")
    parser.add_argument("--patch-input", choices=("2.5d", "paper"), default="2.5d",
                        help="two-stage: patch channels: 2.5d = slices k-1, k, k+1 (default); paper = slice k three times")
    parser.add_argument("--imagenet-weights", metavar="H5",
                        help="two-stage: Keras ResNet50 'notop' ImageNet weights file (default: Keras cache if present, else from scratch)")
    parser.add_argument("--eager", action="store_true",
                        help="no graph compilation: starts at once but each step is slower (smoke runs on tiny data)")
    return parser


def _config(args: argparse.Namespace):
    from CMBDetectionLib.training.unet import TrainConfig

    checks = [
        (args.epochs >= 1, "--epochs must be at least 1"),
        (args.steps_per_epoch >= 1, "--steps-per-epoch must be at least 1"),
        (args.batch_size >= 1, "--batch-size must be at least 1"),
        (args.crop >= 16 and args.crop % 16 == 0, f"--crop {args.crop} must be a multiple of 16 (the UNet pools 4 times)"),
        (args.lr > 0, "--lr must be positive"),
        (args.dice_weight >= 0, "--dice-weight must be 0 or more"),
        (0 <= args.positive_fraction <= 1, "--positive-fraction must lie in 0..1"),
        (args.time_limit is None or args.time_limit > 0, "--time-limit must be a positive number of minutes"),
        (args.workers >= 1, "--workers must be at least 1"),
        (not (args.init_from and args.resume), "--init-from starts a new run; it cannot be combined with --resume"),
        (not (args.init_from and Path(args.init_from).resolve() == Path(args.output).resolve()),
         f"-o {args.output} is the model --init-from starts from and would be overwritten; write to another folder"),
        (not (args.validation_subjects and args.resume), "--resume keeps the recorded split; drop --validation-subjects"),
        (args.validation_subjects is None or Path(args.validation_subjects).is_file(),
         f"--validation-subjects {args.validation_subjects}: no such file"),
    ]
    for ok, message in checks:
        if not ok:
            raise CLIError(message)
    return TrainConfig(
        data_dir=args.data_dir, out_dir=args.output, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
        validation_steps=args.validation_steps, batch_size=args.batch_size, crop=args.crop, learning_rate=args.lr,
        dice_weight=args.dice_weight, positive_fraction=args.positive_fraction, val_fraction=args.val_fraction,
        seed=args.seed, eval_dir=args.eval_dir, resume=args.resume, eager=args.eager,
        time_limit_minutes=args.time_limit, workers=args.workers, init_from=args.init_from,
        validation_subjects=args.validation_subjects, randomise=args.randomise,
    )


def _train_two_stage(args: argparse.Namespace) -> int:
    """``--method two-stage``: train the ResNet50 classifier (and evaluate on ``--eval-dir`` when given)."""
    from CMBDetectionLib.evaluation.patch_metrics import format_patch_metrics
    from CMBDetectionLib.training.two_stage import evaluate_two_stage, record_heldout, train_two_stage

    if args.patch_size < 32:
        raise CLIError(f"--patch-size {args.patch_size} is too small for ResNet50; use 32 or more")
    with percent_bar("two-stage training", args.quiet) as progress:
        card = train_two_stage(args.data_dir, args.output, patch_size=args.patch_size, epochs=args.epochs,
                               batch_size=args.batch_size, lr=args.lr, imagenet_weights=args.imagenet_weights,
                               seed=args.seed, progress=progress, steps_per_epoch=args.steps_per_epoch,
                               val_fraction=args.val_fraction, patch_input=args.patch_input)
    print(f"cmb-train: model written to {args.output}")
    print("validation patches: " + format_patch_metrics(card["metrics"]["validation_patches"]))
    if args.eval_dir:
        heldout = record_heldout(args.output, evaluate_two_stage(args.eval_dir, args.output), args.eval_dir)
        heldout = heldout["metrics"]["heldout"]
        print("held-out patches: " + format_patch_metrics(heldout["patch"]))
        print("held-out lesions: " + ", ".join(f"{k}={v:.3g}" for k, v in heldout["lesion"].items()))
    return EXIT_OK


def _train_lesion_filter(args: argparse.Namespace) -> int:
    """``--method lesion-filter``: fit the 3D false-positive filter of the model in OUTDIR (the UNet, or the
    two-stage ResNet50 when its card holds patch settings) and record it in OUTDIR's card."""
    from CMBDetectionLib.model_store import CARD_NAME, load_card
    from CMBDetectionLib.training.lesion_filter import train_lesion_filter

    if not (Path(args.output) / CARD_NAME).is_file():
        raise CLIError(f"{args.output}: no trained model here ({CARD_NAME} missing); train one first "
                       f"(cmb-train DATA -o {args.output}) or point -o at a model folder such as models/unet.")
    method = "two-stage" if "patches" in load_card(Path(args.output)) else "unet"  # the ResNet50's patch settings
    with percent_bar("lesion filter", args.quiet) as progress:
        card = train_lesion_filter(args.data_dir, args.output, method=method, val_fraction=args.val_fraction,
                                   seed=args.seed, eval_dir=args.eval_dir, progress=progress)
    record = card["lesion_filter"]
    summary = record.get("held_out", record["validation"])["mean"]
    print(f"cmb-train: {method} lesion filter written to {args.output} (threshold {record['threshold']}); "
          + ", ".join(f"{k}={summary[k]}" for k in ("lesion_sensitivity", "fp", "dice") if k in summary))
    return EXIT_OK


def body(args: argparse.Namespace) -> int:
    if not 0 < args.val_fraction < 1:  # every method splits its subjects
        raise CLIError("--val-fraction must lie strictly between 0 and 1")
    if args.method == "two-stage":
        return _train_two_stage(args)
    if args.method == "lesion-filter":
        return _train_lesion_filter(args)
    config = _config(args)
    from CMBDetectionLib.training.unet import train

    card = train(config, verbose=0 if args.quiet else 2)
    validation = card.get("metrics", {}).get("validation", {}).get("mean", {})
    print(f"cmb-train: model written to {args.output}; validation: "
          + ", ".join(f"{k}={v}" for k, v in validation.items() if k in ("lesion_sensitivity", "fp", "dice")))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
