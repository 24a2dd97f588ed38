"""Training and evaluation of the two-stage method's ResNet50 on candidate patches (``cmb-train --method two-stage``).

Recipe (Afzal et al. 2022, Algorithm 1): 80:20 split by subject, Adam 1e-4, batch 16, 11 epochs, classes
balanced by oversampling augmented CMB patches. Training patches are the stage-one candidates of each
subject, labelled CMB when their centre lies within 5 mm of a ground-truth CMB; ground-truth CMBs that stage
one missed are added as extra CMB patches (training subjects only). Validation patches are candidates only,
so the patch metrics are those of the real detector.

OUT_DIR receives ``weights.npz`` + ``model_card.json`` (what ships), ``checkpoints/last.keras`` (every epoch;
a rerun resumes from it), ``training_log.csv`` and ``cache/`` (per-subject patches; delete after training).

>>> card = train_two_stage("phantoms/", "runs/resnet50", patch_size=64, epochs=11, batch_size=16,
...                        lr=1e-4, imagenet_weights=None, seed=0, progress=None)       # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy.spatial.distance import cdist

from CMBDetectionLib.evaluation.metrics import MATCH_DISTANCE_MM, match_lesions
from CMBDetectionLib.evaluation.patch_metrics import patch_metrics
from CMBDetectionLib.lesions.extraction import component_centres_mm, label_components
from CMBDetectionLib.probability.two_stage.method import StageSettings, classify_patches, stage_one
from CMBDetectionLib.probability.two_stage.patches import balanced_batch, extract_patches
from CMBDetectionLib.probability.unet.slicing import normalise_intensity, to_axial
from CMBDetectionLib.training.data import TrainingPair, find_pairs, read_labelled, split_subjects

VALIDATION_CAP = 256  # patches scored after each epoch (all CMB patches first); the full set is scored at the end


def load_axial(pair: TrainingPair) -> tuple[sitk.Image, np.ndarray]:
    """A pair's volume (float32) in axial orientation and its mask as a ``[k, j, i]`` uint8 array on that grid;
    the mask must share the volume's grid (:func:`data.read_labelled`)."""
    image, truth = read_labelled(pair)
    mask = sitk.GetImageFromArray(truth.astype(np.uint8))
    mask.CopyInformation(image)
    return to_axial(image), sitk.GetArrayFromImage(to_axial(mask))


def subject_patches(pair: TrainingPair, settings: StageSettings, *, add_missed: bool) -> dict[str, np.ndarray]:
    """Candidate patches of one subject with labels; ``add_missed`` appends patches at missed ground-truth CMBs."""
    image, gt = load_axial(pair)
    spacing = np.asarray(image.GetSpacing()[::-1], dtype=float)
    first = stage_one(image, settings)
    gt_labels, n_gt = label_components(gt)
    gt_mm = component_centres_mm(gt_labels, n_gt, spacing)
    cand_mm = np.array([c.centre_kji for c in first.candidates], dtype=float).reshape(-1, 3) * spacing
    near = cdist(cand_mm, gt_mm) < MATCH_DISTANCE_MM if len(cand_mm) and n_gt else np.zeros((len(cand_mm), n_gt), bool)
    labels = near.any(axis=1).astype(np.uint8)
    patches = first.patches
    found = near.any(axis=0)
    if add_missed and (~found).any():
        volume = normalise_intensity(sitk.GetArrayFromImage(image))
        extra = extract_patches(volume, gt_mm[~found] / spacing, spacing, patch_size=settings.patch_size,
                                field_of_view_mm=settings.field_of_view_mm, patch_input=settings.patch_input)
        patches, labels = np.concatenate([patches, extra]), np.concatenate([labels, np.ones(len(extra), np.uint8)])
    return {"patches": patches.astype(np.float16), "labels": labels, "n_gt": np.int32(n_gt), "gt_found": np.int32(found.sum())}


def gather(pairs: list[TrainingPair], cache: Path, settings: StageSettings, *, add_missed: bool,
           progress: Callable[[float], None] | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Patches and labels of all ``pairs`` (cached per subject in ``cache``) and stage-one recall figures."""
    cache.mkdir(parents=True, exist_ok=True)
    patches, labels, n_gt, found = [], [], 0, 0
    for n, pair in enumerate(pairs, start=1):
        path = cache / f"{pair.name}_{'train' if add_missed else 'val'}_{settings.patch_size}_{settings.patch_input}.npz"
        if not path.exists():
            np.savez(path, **subject_patches(pair, settings, add_missed=add_missed))
        with np.load(path) as data:
            patches.append(data["patches"])
            labels.append(data["labels"])
            n_gt, found = n_gt + int(data["n_gt"]), found + int(data["gt_found"])
        if progress is not None:
            progress(n / len(pairs))
    stats = {"candidate_recall": found / n_gt if n_gt else math.nan, "subjects": len(pairs)}
    return np.concatenate(patches).astype(np.float32), np.concatenate(labels), stats


def _validation_subset(labels: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    positive, negative = np.flatnonzero(labels > 0), np.flatnonzero(labels == 0)
    keep_pos = positive[: cap // 2]
    keep_neg = rng.permutation(negative)[: max(0, cap - len(keep_pos))]
    return np.sort(np.concatenate([keep_pos, keep_neg]))


def _batches(patches: np.ndarray, labels: np.ndarray, batch_size: int, steps: int, seed: int):
    """Keras dataset of balanced, augmented batches already mapped to the network input."""
    import keras

    from CMBDetectionLib.probability.two_stage.classifier import to_network_input

    class Balanced(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = 0

        def __len__(self) -> int:
            return steps

        def __getitem__(self, index: int):
            rng = np.random.default_rng((seed, self.epoch, index))
            x, y = balanced_batch(patches, labels, batch_size, rng)
            return to_network_input(x), y

        def on_epoch_end(self) -> None:
            self.epoch += 1

    return Balanced()


def _progress_callback(progress: Callable[[float], None] | None, epochs: int):
    import keras

    class Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if progress is not None:
                progress(0.3 + 0.7 * (epoch + 1) / epochs)

    return Report()


def _completed_epochs(log: Path) -> int:
    return max(0, len(log.read_text().strip().splitlines()) - 1) if log.exists() else 0


def train_two_stage(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    patch_size: int = 64,
    patch_input: str = "2.5d",
    epochs: int = 11,
    batch_size: int = 16,
    lr: float = 1e-4,
    imagenet_weights: str | os.PathLike | None = None,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
    steps_per_epoch: int | None = None,
    val_fraction: float = 0.2,
    max_subjects: int | None = None,
) -> dict[str, Any]:
    """Train the ResNet50 classifier on the subjects in ``data_dir``; write the model folder ``out_dir``.

    ``steps_per_epoch`` defaults to one pass over the non-CMB patches. A rerun with the same ``out_dir``
    resumes after the last finished epoch. Returns the model card.
    """
    import keras

    from CMBDetectionLib.probability.two_stage.classifier import (
        build_classifier,
        imagenet_weights_path,
        save_classifier,
    )
    from CMBDetectionLib.probability.two_stage.runtime import KerasClassifier

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs = find_pairs(data_dir)[:max_subjects]
    train_pairs, val_pairs = split_subjects(pairs, val_fraction, seed)
    settings = StageSettings(patch_size=patch_size, patch_input=patch_input)

    def stage(start: float, stop: float) -> Callable[[float], None] | None:
        """``progress`` of one part of the run, given as a fraction of that part."""
        return None if progress is None else (lambda f: progress(start + (stop - start) * f))

    x_train, y_train, train_stats = gather(train_pairs, out / "cache", settings, add_missed=True, progress=stage(0.0, 0.25))
    x_val, y_val, val_stats = gather(val_pairs, out / "cache", settings, add_missed=False, progress=stage(0.25, 0.3))
    steps = steps_per_epoch or max(1, int(np.sum(y_train == 0)) // max(1, batch_size // 2))

    checkpoint, log = out / "checkpoints" / "last.keras", out / "training_log.csv"
    done = _completed_epochs(log) if checkpoint.exists() else 0
    weights_file = imagenet_weights_path(imagenet_weights)
    if done:
        model = keras.models.load_model(checkpoint)
    else:
        model = build_classifier(patch_size, weights_file)
        model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy",
                      metrics=["accuracy", keras.metrics.AUC(name="auc")], jit_compile=False)
    checkpoint.parent.mkdir(exist_ok=True)
    subset = _validation_subset(y_val, VALIDATION_CAP, np.random.default_rng(seed))
    from CMBDetectionLib.probability.two_stage.classifier import to_network_input

    history = model.fit(
        _batches(x_train, y_train, batch_size, steps, seed), epochs=epochs, initial_epoch=done, verbose=2,
        validation_data=(to_network_input(x_val[subset]), y_val[subset].astype(np.float32)) if len(subset) else None,
        callbacks=[keras.callbacks.ModelCheckpoint(checkpoint), keras.callbacks.CSVLogger(log, append=bool(done)),
                   _progress_callback(progress, epochs)],
    )
    scores = classify_patches(KerasClassifier(model), x_val)
    card = {
        "name": "resnet50", "version": "1.0", "method": "two-stage (Afzal et al. 2022)",
        "architecture": "keras.applications.ResNet50(include_top=False, pooling='avg') + Dense(1, sigmoid)",
        "parameters": int(model.count_params()), "input_shape": [patch_size, patch_size, 3],
        "initialisation": f"ImageNet ({weights_file.name})" if weights_file else "from scratch (no ImageNet weights on this machine)",
        **settings.card_sections(),
        "training": {
            "data": str(data_dir), "subjects": len(train_pairs), "validation_subjects": len(val_pairs),
            "train_patches": int(len(y_train)), "train_cmb_patches": int(y_train.sum()),
            "recipe": {"optimizer": "Adam", "learning_rate": lr, "batch_size": batch_size, "epochs": epochs,
                       "steps_per_epoch": steps, "seed": seed, "loss": "binary cross-entropy",
                       "balancing": "half CMB / half non-CMB per batch, augmented (flips, rotation +-30 deg, blur)"},
            "history": {k: [round(float(v), 4) for v in vals] for k, vals in history.history.items()},
        },
        "metrics": {"validation_patches": patch_metrics(y_val, scores),
                    "stage_one": {"train": train_stats, "validation": val_stats}},
        "storage": "float16 weights.npz loaded into the float32 model",
    }
    save_classifier(model, out, card)
    return json.loads((out / "model_card.json").read_text())


def _stage_one_centres(pair: TrainingPair, settings: StageSettings) -> dict[str, np.ndarray]:
    """Stage one of a held-out subject reduced to what scoring needs: patches and centres (mm) of candidates and truth."""
    image, gt = load_axial(pair)
    spacing = np.asarray(image.GetSpacing()[::-1], dtype=float)
    first = stage_one(image, settings)
    gt_labels, n_gt = label_components(gt)
    return {"patches": first.patches.astype(np.float16),
            "cand_mm": np.array([c.centre_kji for c in first.candidates], dtype=float).reshape(-1, 3) * spacing,
            "gt_mm": component_centres_mm(gt_labels, n_gt, spacing)}


def _score_subject(name: str, cand_mm: np.ndarray, gt_mm: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    # Each candidate is one 6-connected component of the probability map, so matching candidate centres is
    # exactly the lesion matching of ``metrics.lesion_metrics`` on the thresholded map.
    kept = cand_mm[scores >= threshold]
    tp, found = len(match_lesions(gt_mm, kept)), len(match_lesions(gt_mm, cand_mm))
    return {"subject": name, "n_gt": len(gt_mm), "candidates": len(cand_mm), "candidates_found": found,
            "tp": tp, "fp": len(kept) - tp, "fn": len(gt_mm) - tp}


def evaluate_two_stage(
    data_dir: str | os.PathLike, model_dir: str | os.PathLike | None = None, *, threshold: float = 0.5,
    max_subjects: int | None = None, cache_dir: str | os.PathLike | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Held-out figures: pooled patch metrics, stage-one recall and candidates per subject, and lesion-level
    sensitivity / false positives per subject of the thresholded probability map (as ``pipeline.detect``).

    ``cache_dir`` keeps each subject's stage-one output, so re-scoring another model costs only the classifier.
    """
    from CMBDetectionLib.probability.two_stage.method import load_model

    runner, card = load_model(model_dir)
    settings = StageSettings.from_card(card)
    pairs = find_pairs(data_dir)[:max_subjects]
    rows, all_labels, all_scores = [], [], []
    for n, pair in enumerate(pairs, start=1):
        path = Path(cache_dir) / f"{pair.name}_heldout_{settings.patch_size}_{settings.patch_input}.npz" if cache_dir else None
        if path is not None and path.exists():
            with np.load(path) as stored:
                data = dict(stored)
        else:
            data = _stage_one_centres(pair, settings)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(path, **data)
        scores = classify_patches(runner, data["patches"].astype(np.float32))
        near = cdist(data["cand_mm"], data["gt_mm"]) < MATCH_DISTANCE_MM if len(data["cand_mm"]) and len(data["gt_mm"]) else None
        all_labels.append(near.any(axis=1) if near is not None else np.zeros(len(scores), bool))
        all_scores.append(scores)
        rows.append(_score_subject(pair.name, data["cand_mm"], data["gt_mm"], scores, threshold))
        if progress is not None:
            progress(n / len(pairs))
    n_gt = sum(r["n_gt"] for r in rows)
    return {
        "subjects": len(rows), "threshold": threshold,
        "patch": patch_metrics(np.concatenate(all_labels), np.concatenate(all_scores), threshold),
        "stage_one": {"candidate_sensitivity": sum(r["candidates_found"] for r in rows) / max(1, n_gt),
                      "candidates_per_subject": float(np.mean([r["candidates"] for r in rows]))},
        "lesion": {"sensitivity": sum(r["tp"] for r in rows) / max(1, n_gt),
                   "fp_per_subject": float(np.mean([r["fp"] for r in rows])), "n_gt": n_gt},
        "per_subject": rows,
    }


def record_heldout(model_dir: str | os.PathLike, results: dict[str, Any], data: str) -> dict[str, Any]:
    """Store :func:`evaluate_two_stage` summary figures (not the per-subject rows) in the model card."""
    from CMBDetectionLib.model_store import load_card, write_card

    folder = Path(model_dir)
    card = load_card(folder)
    summary = {k: v for k, v in results.items() if k != "per_subject"}
    card.setdefault("metrics", {})["heldout"] = {"data": data, **summary}
    write_card(folder, {k: v for k, v in card.items() if k != "files"}, list(card.get("files", {})))
    return card
