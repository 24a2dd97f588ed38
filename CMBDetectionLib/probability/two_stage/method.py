"""Two-stage method (Afzal et al. 2022): skull removal, k-means candidates, shape filter, ResNet50 classifier.

Volume -> axial orientation -> brain mask -> darkest k-means cluster -> 2-10 mm round components (candidates)
-> one patch per candidate -> ResNet50 probability -> each candidate's voxels filled with its probability
(0 elsewhere) on the input grid. ``pipeline.detect(image, method="two-stage")`` thresholds that map like the
UNet's, so both methods give the same outputs.

Candidate and patch settings are read from the model card, so inference uses what the classifier was trained on.

>>> probability = predict_probability(image, device="cpu")          # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.errors import DetectionCancelled
from CMBDetectionLib.probability.two_stage.brain_mask import brain_mask_array
from CMBDetectionLib.probability.two_stage.kmeans_candidates import (
    MAX_DIAMETER_MM,
    MAX_ELONGATION,
    MIN_DIAMETER_MM,
    N_CLUSTERS,
    Candidate,
    find_kmeans_candidates,
)
from CMBDetectionLib.probability.two_stage.patches import FIELD_OF_VIEW_MM, extract_patches
from CMBDetectionLib.probability.unet.slicing import from_axial, normalise_intensity, orientation_of, to_axial

CLASSIFY_BATCH = 32


@dataclass(frozen=True)
class StageSettings:
    """Stage-one and patch settings shared by training and inference (stored in the model card)."""

    patch_size: int = 64
    field_of_view_mm: float = FIELD_OF_VIEW_MM
    n_clusters: int = N_CLUSTERS
    min_diameter_mm: float = MIN_DIAMETER_MM
    max_diameter_mm: float = MAX_DIAMETER_MM
    max_elongation: float = MAX_ELONGATION

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> StageSettings:
        stored = {**card.get("candidates", {}), **card.get("patches", {})}
        return cls(**{k: stored[k] for k in cls.__dataclass_fields__ if k in stored})

    def card_sections(self) -> dict[str, dict[str, Any]]:
        return {
            "candidates": {k: getattr(self, k) for k in ("n_clusters", "min_diameter_mm", "max_diameter_mm", "max_elongation")},
            "patches": {
                "patch_size": self.patch_size,
                "field_of_view_mm": self.field_of_view_mm,
                "channels": "axial slices k-1, k, k+1 through the candidate centre",
            },
        }


@dataclass
class StageOne:
    """Stage-one output on the axial array: brain mask, candidate labels, candidates and their patches."""

    brain: np.ndarray
    labels: np.ndarray
    candidates: list[Candidate]
    patches: np.ndarray


def stage_one(axial: sitk.Image, settings: StageSettings = StageSettings()) -> StageOne:
    """Brain mask, candidates and patches of an image already in axial orientation (``preprocessing.to_axial``)."""
    array = sitk.GetArrayFromImage(axial).astype(np.float32, copy=False)
    spacing = tuple(axial.GetSpacing()[::-1])
    brain = brain_mask_array(array, spacing)
    labels, found = find_kmeans_candidates(
        array, brain, spacing, n_clusters=settings.n_clusters, min_diameter_mm=settings.min_diameter_mm,
        max_diameter_mm=settings.max_diameter_mm, max_elongation=settings.max_elongation,
    )
    centres = np.array([c.centre_kji for c in found], dtype=float).reshape(-1, 3)
    patches = extract_patches(
        normalise_intensity(array), centres, spacing, patch_size=settings.patch_size,
        field_of_view_mm=settings.field_of_view_mm,
    )
    return StageOne(brain.astype(np.uint8), labels, found, patches)


@lru_cache(maxsize=2)
def _cached_classifier(folder: str, stamp: float):
    from CMBDetectionLib.probability.two_stage.classifier import load_classifier

    return load_classifier(folder)


def load_model(model_dir: str | os.PathLike | None = None):
    """(Keras model, card) of the ResNet50 folder, cached while its card is unchanged."""
    from CMBDetectionLib.model_store import CARD_NAME
    from CMBDetectionLib.model_store import model_dir as resolve

    folder = resolve("resnet50", model_dir).resolve()
    card = folder / CARD_NAME
    return _cached_classifier(str(folder), card.stat().st_mtime if card.exists() else 0.0)


def _tf_device(device: str) -> str | None:
    if device in ("auto", ""):
        return None
    if device.lower() == "cpu":
        return "/CPU:0"
    if device.lower().startswith(("gpu", "cuda")):
        return "/GPU:0"
    raise ValueError(f"device {device!r} unknown; use auto, cpu or gpu.")


def classify_patches(
    model, patches: np.ndarray, *, device: str = "auto",
    progress: Callable[[float], None] | None = None, cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """CMB probability of each patch, ``CLASSIFY_BATCH`` at a time (checking ``cancel`` between batches)."""
    import tensorflow as tf

    from CMBDetectionLib.probability.two_stage.classifier import classify

    scores = np.zeros(len(patches), dtype=np.float32)
    name = _tf_device(device)
    for start in range(0, len(patches), CLASSIFY_BATCH):
        if cancel is not None and cancel():
            raise DetectionCancelled("detection cancelled")
        stop = min(start + CLASSIFY_BATCH, len(patches))
        if name is None:
            scores[start:stop] = classify(model, patches[start:stop])
        else:
            with tf.device(name):
                scores[start:stop] = classify(model, patches[start:stop])
        if progress is not None:
            progress(stop / len(patches))
    return scores


def predict_probability(
    image: sitk.Image,
    *,
    device: str = "auto",
    backend: Any = "auto",
    progress: Callable[[float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    model_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """``[k, j, i] float32`` on ``image``'s grid: each kept candidate's voxels hold its classifier probability.

    Only the TensorFlow backend exists for the ResNet50 (``backend`` ``auto`` or ``tensorflow``).
    """
    if isinstance(backend, str) and backend not in ("auto", "tensorflow"):
        raise ValueError(f"backend {backend!r} is not available for the two-stage method; use auto or tensorflow.")
    _tf_device(device)  # reject a bad device name before the long work
    model, card = load_model(model_dir)
    orientation = orientation_of(image)
    axial = to_axial(sitk.Cast(image, sitk.sitkFloat32))
    if cancel is not None and cancel():
        raise DetectionCancelled("detection cancelled")
    first = stage_one(axial, StageSettings.from_card(card))
    if progress is not None:
        progress(0.5)
    scaled = None if progress is None else (lambda f: progress(0.5 + 0.5 * f))
    scores = classify_patches(model, first.patches, device=device, progress=scaled, cancel=cancel)
    probability = np.concatenate([[0.0], scores]).astype(np.float32)[first.labels]
    result = sitk.GetImageFromArray(probability)
    result.CopyInformation(axial)
    if progress is not None:
        progress(1.0)
    return sitk.GetArrayFromImage(from_axial(result, orientation))
