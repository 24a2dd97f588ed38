"""Train the paper UNet (Adam 1e-4, binary cross-entropy, batch 4) and write a shippable model folder.

Output folder layout:

- ``weights.npz`` (float16) and ``model_card.json`` (architecture, data, recipe, held-out metrics, sha256);
- ``split.json`` (the seeded 80:20 subject split, or the given validation subjects; reused by ``--resume``);
- ``checkpoints/last.keras`` + ``checkpoints/state.json`` (saved every epoch, model and optimiser state);
- ``training_log.csv`` and ``loss_curve.png``; ``cache/`` (preprocessed slices, memory-mapped).

>>> summary = train(TrainConfig(data_dir="phantoms", out_dir="models/unet", epochs=2, steps_per_epoch=20))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras

from CMBDetectionLib import __version__
from CMBDetectionLib.evaluation.metrics import THRESHOLD_RULE, choose_threshold, metric_block
from CMBDetectionLib.lesions.filter import FILTER_FILE
from CMBDetectionLib.model_store import (
    DEFAULT_THRESHOLD,
    WEIGHTS_NAME,
    load_card,
    load_weights_npz,
    model_dir,
    save_weights_npz,
    write_card,
)
from CMBDetectionLib.probability.unet.network import DROPOUT_RATE, ENCODER_FILTERS, LEAKY_ALPHA, build_unet
from CMBDetectionLib.training.data import CropBatches, TrainingPair, find_pairs, load_stack, split_subjects
from CMBDetectionLib.training.onnx_export import add_onnx_to_model_dir
from CMBDetectionLib.training.randomisation import RANGES
from CMBDetectionLib.training.validation_scores import evaluate_maps

log = logging.getLogger(__name__)

CHECKPOINT = Path("checkpoints") / "last.keras"
STATE = Path("checkpoints") / "state.json"
PAPER_AUGMENTATION = "random rotation, flips, gamma/contrast/brightness/noise"
RANDOMISED = ("domain randomisation (training.randomisation): random rotation, flips and scale; tissue contrast "
              "remapped (inverted, flat, random curves; CMBs and veins kept darker than their background); bias field, "
              "gamma, Rician noise (SNR {snr[0]:g}-{snr[1]:g}), blur, coarser in-plane pixels (x{pixel_factor[0]:g}-"
              "{pixel_factor[1]:g}), thick slices, N/2 ghosts, motion lines, partial-slab normalisation; each with its "
              "own probability").format(**RANGES)
#: Ali et al. 2023, for comparison with the recipe actually used (the card's ``recipe``)
PAPER_RECIPE = {"optimizer": "Adam", "learning_rate": 1e-4, "loss": "binary cross-entropy", "batch_size": 4,
                "split": "80:20 by subject", "augmentation": "rotations and flips"}
#: candidate operating thresholds, scored on the validation subjects
THRESHOLD_GRID = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)


@dataclass
class TrainConfig:
    data_dir: str
    out_dir: str
    epochs: int = 15
    steps_per_epoch: int = 200
    validation_steps: int = 25
    batch_size: int = 4
    crop: int = 128
    learning_rate: float = 1e-4
    dice_weight: float = 0.0
    positive_fraction: float = 0.5
    val_fraction: float = 0.2
    seed: int = 0
    eval_dir: str | None = None
    threshold: float | None = None  # None: chosen on validation from THRESHOLD_GRID
    resume: bool = False
    init_from: str | None = None  # model folder whose weights start training (fine-tuning); Adam starts afresh
    validation_subjects: str | None = None  # split.json or name list: keeps validation fixed as data grow
    time_limit_minutes: float | None = None  # stop after the epoch in which this wall time is reached
    workers: int = 1  # processes drawing augmented batches (CPU-bound; more keep a GPU busy)
    randomise: bool = False  # domain randomisation (training.randomisation) instead of the paper's augmentation
    eager: bool = False  # skip graph tracing (tens of seconds): slower steps, for smoke runs on tiny data


@keras.saving.register_keras_serializable(package="CMBDetection")
class BceDiceLoss(keras.losses.Loss):
    """Binary cross-entropy (the paper's loss) plus ``dice_weight`` x soft Dice loss (0 = paper)."""

    def __init__(self, dice_weight: float = 0.0, name: str = "bce_dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.dice_weight = float(dice_weight)

    def call(self, y_true, y_pred):
        ops = keras.ops
        bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=(1, 2))
        if not self.dice_weight:
            return bce
        overlap = ops.sum(y_true * y_pred, axis=(1, 2, 3))
        total = ops.sum(y_true, axis=(1, 2, 3)) + ops.sum(y_pred, axis=(1, 2, 3))
        return bce + self.dice_weight * (1.0 - (2.0 * overlap + 1.0) / (total + 1.0))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dice_weight": self.dice_weight}


def compiled_unet(config: TrainConfig) -> keras.Model:
    model = build_unet()
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=BceDiceLoss(config.dice_weight),
                  run_eagerly=config.eager)
    return model


def read_subject_names(path: str | Path) -> list[str]:
    """Subject names from an earlier run's ``split.json`` (its ``validation`` list) or a text file, one per line.

    >>> read_subject_names("runs/unet/split.json")  # doctest: +SKIP
    ['phantom_01000', 'phantom_01005']
    """
    text = Path(path).read_text()
    if Path(path).suffix == ".json":
        try:
            names = list(json.loads(text)["validation"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a split.json with a 'validation' list ({exc}); give a cmb-train "
                             "split.json or a text file with one subject name per line.") from exc
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path} lists no subjects; give at least one validation subject.")
    return names


def _split(config: TrainConfig, out: Path) -> tuple[list[TrainingPair], list[TrainingPair]]:
    """The subject split: recorded in ``split.json`` on a fresh run, read back from it on ``--resume``.

    With ``validation_subjects`` those subjects validate and all others train, so a validation set (and the
    later filter fitted on it) stays untouched by training when subjects are added.
    """
    pairs = {pair.name: pair for pair in find_pairs(config.data_dir)}
    split_file = out / "split.json"
    if config.resume and split_file.exists():
        recorded = json.loads(split_file.read_text())
        missing = [n for n in recorded["train"] + recorded["validation"] if n not in pairs]
        if missing:
            raise ValueError(f"--resume: subjects {missing[:5]} of {split_file} are no longer in {config.data_dir}.")
        return [pairs[n] for n in recorded["train"]], [pairs[n] for n in recorded["validation"]]
    if config.validation_subjects:
        names = set(read_subject_names(config.validation_subjects))
        missing = sorted(names - pairs.keys())
        if missing:
            raise ValueError(f"--validation-subjects: {missing[:5]} of {config.validation_subjects} are not in "
                             f"{config.data_dir}; list subjects by name (e.g. phantom_01000).")
        train = [p for n, p in sorted(pairs.items()) if n not in names]
        val = [pairs[n] for n in sorted(names)]
    else:
        train, val = split_subjects(list(pairs.values()), config.val_fraction, config.seed)
    split_file.write_text(json.dumps(
        {"seed": config.seed, "val_fraction": config.val_fraction, "validation_from": config.validation_subjects,
         "train": [p.name for p in train], "validation": [p.name for p in val]}, indent=2) + "\n")
    return train, val


class _Checkpoint(keras.callbacks.Callback):
    """Save model and optimiser after every epoch, then record the epoch for ``--resume``; both files are
    written beside their targets and renamed, so a run killed mid-save keeps the previous checkpoint."""

    def __init__(self, out: Path):
        super().__init__()
        self.model_file, self.state_file = out / CHECKPOINT, out / STATE

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        partial = self.model_file.with_name("partial.keras")
        self.model.save(partial)
        os.replace(partial, self.model_file)
        partial_state = self.state_file.with_suffix(".partial")
        partial_state.write_text(json.dumps({"epochs_done": epoch + 1}) + "\n")
        os.replace(partial_state, self.state_file)


class _TimeLimit(keras.callbacks.Callback):
    """Stop after the epoch during which ``minutes`` of wall time have passed (a cluster job's limit);
    the checkpoint of that epoch is kept, so ``--resume`` continues from it."""

    def __init__(self, minutes: float):
        super().__init__()
        self.deadline = time.monotonic() + 60.0 * minutes

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if time.monotonic() >= self.deadline:
            log.info("time limit reached after epoch %d; stopping", epoch + 1)
            self.model.stop_training = True


def _model_and_start(config: TrainConfig, out: Path) -> tuple[keras.Model, int]:
    if config.resume:
        if not (out / CHECKPOINT).exists():
            raise ValueError(f"--resume: no checkpoint at {out / CHECKPOINT}; start without --resume.")
        model = keras.models.load_model(out / CHECKPOINT)
        model.run_eagerly = config.eager
        return model, json.loads((out / STATE).read_text())["epochs_done"]
    model = compiled_unet(config)
    if config.init_from:
        load_weights_npz(model, model_dir("unet", config.init_from) / WEIGHTS_NAME)
    return model, 0


def plot_loss_curve(log_csv: Path, png: Path) -> Path:
    """Training and validation loss per epoch from Keras' CSV log."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(log_csv)))
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("loss", "val_loss"):
        if rows and key in rows[0]:
            ax.plot(epochs, [float(r[key]) for r in rows], marker="o", label=key)
    # Log scale: the loss falls by orders of magnitude, and the late epochs are the informative ones.
    ax.set(xlabel="epoch", ylabel="loss (log scale)", title="CMB UNet training", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def evaluate_subjects(
    pairs: list[TrainingPair], backend, thresholds: Sequence[float] = (0.5,)
) -> dict[float, list[dict[str, Any]]]:
    """Voxel + lesion metrics of the model (a backend) on whole volumes: one row per subject for each threshold
    (the probability map is computed once per subject)."""
    from CMBDetectionLib.probability.unet.inference import predict_probability

    return evaluate_maps(pairs, lambda image: predict_probability(image, backend=backend), thresholds,
                         probability_scores=True)


def _provenance(folder: str | None) -> dict[str, Any] | None:
    """Name, version and weights checksum of the model a fine-tuning run started from."""
    if not folder:
        return None
    card = load_card(model_dir("unet", folder))
    return {"name": card.get("name"), "version": card.get("version"),
            "weights_sha256": card.get("files", {}).get(WEIGHTS_NAME), "previous_recipe": card.get("recipe")}


def _evaluate(config: TrainConfig, val_pairs: list[TrainingPair], backend) -> dict[str, Any]:
    """Card metrics: the operating threshold (given, or chosen on validation from THRESHOLD_GRID by THRESHOLD_RULE),
    validation metrics at it and per candidate, then the separate held-out set at that threshold."""
    chosen = config.threshold is None
    threshold = DEFAULT_THRESHOLD if chosen else config.threshold
    metrics: dict[str, Any] = {}
    if val_pairs:
        by_threshold = evaluate_subjects(val_pairs, backend, THRESHOLD_GRID if chosen else (threshold,))
        threshold = choose_threshold(by_threshold) if chosen else threshold
        metrics = {
            "threshold_selection": THRESHOLD_RULE if chosen else "given",
            "validation": metric_block(by_threshold[threshold]),
            "validation_by_threshold": {str(t): metric_block(r)["mean"] for t, r in by_threshold.items()},
        }
    if config.eval_dir:
        held_out = evaluate_subjects(find_pairs(config.eval_dir), backend, (threshold,))
        metrics["held_out"] = {"source": str(config.eval_dir), **metric_block(held_out[threshold])}
    return {"threshold": threshold, **metrics}


def _card(config: TrainConfig, train: list[TrainingPair], val: list[TrainingPair], epochs_done: int) -> dict[str, Any]:
    return {
        "name": "cmb-unet",
        "version": __version__,
        "weights": WEIGHTS_NAME,
        "weights_storage": "float16 arrays (.npz), loaded into a float32 model",
        "architecture": {
            "paper": "Ali et al. 2023, end-to-end UNet for CMB segmentation",
            "input": "(None, None, 1) fully convolutional; inference on 256x256 axial slices",
            "encoder_filters": list(ENCODER_FILTERS),
            "bottleneck_filters": 2 * ENCODER_FILTERS[-1],
            "leaky_relu_alpha": LEAKY_ALPHA,
            "dropout": DROPOUT_RATE,
            "upsampling": "Conv2DTranspose 3x3 stride 2",
            "output": "sigmoid",
        },
        "training_data": {
            "source": str(config.data_dir),
            "n_train_subjects": len(train),
            "n_validation_subjects": len(val),
            "split": (f"split.json (validation subjects as listed in {config.validation_subjects})"
                      if config.validation_subjects else "split.json (seeded, by subject)"),
        },
        "recipe": {**{k: v for k, v in asdict(config).items()
                       if k not in ("data_dir", "out_dir", "resume", "eager", "workers", "time_limit_minutes", "init_from",
                                 "validation_subjects")},
                   "optimizer": "Adam", "loss": "binary cross-entropy" + (" + Dice" if config.dice_weight else ""),
                   "epochs_done": epochs_done, "augmentation": RANDOMISED if config.randomise else PAPER_AUGMENTATION},
        "paper_recipe": PAPER_RECIPE,
        "initialised_from": _provenance(config.init_from),
        "preprocessing": "axial reorientation; 1-99th percentile inside the head -> 0..1; 256x256 square pixels, padded",
    }


def train(config: TrainConfig, verbose: int = 2) -> dict[str, Any]:
    """Run training as configured, then save weights and the model card; returns the card."""
    out = Path(config.out_dir)
    (out / CHECKPOINT).parent.mkdir(parents=True, exist_ok=True)
    train_pairs, val_pairs = _split(config, out)
    if not train_pairs:
        raise ValueError(f"{config.data_dir}: at least two subjects are needed (one to train, one to validate).")
    cache = out / "cache"
    train_batches = CropBatches([load_stack(p, cache) for p in train_pairs], batch_size=config.batch_size,
                                crop=config.crop, steps=config.steps_per_epoch,
                                positive_fraction=config.positive_fraction, randomise=config.randomise,
                                seed=config.seed, workers=config.workers)
    val_batches = CropBatches([load_stack(p, cache) for p in val_pairs], batch_size=config.batch_size,
                              crop=config.crop, steps=config.validation_steps, augment=False,
                              seed=config.seed + 1) if val_pairs else None
    model, start = _model_and_start(config, out)
    train_batches.epoch = start
    log_csv = out / "training_log.csv"
    callbacks = [_Checkpoint(out),
                 keras.callbacks.CSVLogger(log_csv, append=config.resume)]
    if config.time_limit_minutes:
        callbacks.append(_TimeLimit(config.time_limit_minutes))
    model.fit(train_batches, validation_data=val_batches, epochs=config.epochs, initial_epoch=start,
              verbose=verbose, callbacks=callbacks)
    return finish(model, config, train_pairs, val_pairs)


def finish(model: keras.Model, config: TrainConfig, train_pairs: list[TrainingPair], val_pairs: list[TrainingPair]) -> dict[str, Any]:
    """Save float16 weights and the card, evaluate the saved model on held-out subjects, export ONNX.

    Evaluation runs the stored float16 weights through Keras, so it works on any Keras backend (a GPU box may
    have JAX but no TensorFlow). Without tf2onnx the ONNX export is skipped with a warning; add it later with
    ``python -m CMBDetectionLib.training.onnx_export OUTDIR``.
    """
    from CMBDetectionLib.probability.backends.keras_backends import KerasBackend

    out = Path(config.out_dir)
    save_weights_npz(model, out / WEIGHTS_NAME)
    if (out / FILTER_FILE).exists():  # fitted to the UNet just replaced: it would misjudge the new one's candidates
        (out / FILTER_FILE).unlink()
        log.warning("removed %s (fitted to the previous UNet); refit it: cmb-train DATA -o %s --method lesion-filter",
                    FILTER_FILE, out)
    if (out / "training_log.csv").exists():
        plot_loss_curve(out / "training_log.csv", out / "loss_curve.png")
    epochs_done = json.loads((out / STATE).read_text())["epochs_done"] if (out / STATE).exists() else 0
    card = _card(config, train_pairs, val_pairs, epochs_done)
    write_card(out, card, [WEIGHTS_NAME])
    backend = KerasBackend(out)  # the stored float16 weights, as users will run them
    card["metrics"] = _evaluate(config, val_pairs, backend)
    write_card(out, card, [WEIGHTS_NAME])
    # The ONNX file is exported from the stored float16 weights, so both backends compute the same function.
    try:
        add_onnx_to_model_dir(out)
    except ImportError as exc:
        log.warning("ONNX export skipped (%s); run `python -m CMBDetectionLib.training.onnx_export %s` where "
                    "tensorflow and tf2onnx are installed.", exc, out)
    return load_card(out)

