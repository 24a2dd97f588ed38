"""Two-stage method (Afzal et al. 2022): skull removal, k-means candidates, shape filter, ResNet50 classifier.

Volume -> axial orientation -> brain mask -> local contrast -> darkest k-means cluster -> 2-10 mm round regions
around its minima, ranked (candidates) -> one patch per candidate -> ResNet50 probability -> [3D false-positive
filter] -> each candidate's voxels filled with its score (0 elsewhere) on the input grid.
``pipeline.detect(image, method="two-stage")`` thresholds that map like the UNet's, so both methods give the
same outputs.

The ResNet50 sees one 2D patch; on it a vein cut across looks like a microbleed, so alone it keeps tens of false
positives per subject. When the model card lists a 3D false-positive filter (:mod:`lesions.filter`, the UNet's
kind, fitted on this method's candidates by ``cmb-train --method lesion-filter``), each candidate's score is
the filter's, from the classifier's probability and the candidate's 3D shape and contrast
(:mod:`lesions.features`).

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
from CMBDetectionLib.lesions.features import candidate_features
from CMBDetectionLib.lesions.filter import LesionFilter, listed_lesion_filter
from CMBDetectionLib.model_store import CARD_NAME, load_card
from CMBDetectionLib.model_store import model_dir as resolve_model_dir
from CMBDetectionLib.probability.two_stage.brain_mask import brain_mask_array
from CMBDetectionLib.probability.two_stage.classifier import MODEL_NAME, to_network_input
from CMBDetectionLib.probability.two_stage.kmeans_candidates import (
    MAX_CANDIDATES,
    MAX_DIAMETER_MM,
    MAX_ELONGATION,
    MIN_DIAMETER_MM,
    N_CLUSTERS,
    Candidate,
    find_kmeans_candidates,
)
from CMBDetectionLib.probability.two_stage.patches import FIELD_OF_VIEW_MM, extract_patches
from CMBDetectionLib.probability.two_stage.runtime import ClassifierRunner, check_choice, open_classifier
from CMBDetectionLib.probability.unet.slicing import from_axial, normalise_intensity, orientation_of, to_axial

CLASSIFY_BATCH = 32
CHANNELS = {"2.5d": "axial slices k-1, k, k+1 through the candidate centre",
            "paper": "axial slice k through the candidate centre, repeated in all three channels"}


@dataclass(frozen=True)
class StageSettings:
    """Stage-one and patch settings shared by training and inference (stored in the model card)."""

    patch_size: int = 64
    field_of_view_mm: float = FIELD_OF_VIEW_MM
    patch_input: str = "2.5d"  # a key of patches.PATCH_INPUTS; cards before v1.1 used 2.5d without saying so
    n_clusters: int = N_CLUSTERS
    min_diameter_mm: float = MIN_DIAMETER_MM
    max_diameter_mm: float = MAX_DIAMETER_MM
    max_elongation: float = MAX_ELONGATION
    max_candidates: int = MAX_CANDIDATES  # the classifier sees the best-ranked ones only

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> StageSettings:
        stored = {**card.get("candidates", {}), **card.get("patches", {})}
        return cls(**{k: stored[k] for k in cls.__dataclass_fields__ if k in stored})

    def shape_limits(self) -> dict[str, float]:
        """The size/shape filter's keyword arguments (:func:`kmeans_candidates.filter_components`)."""
        return {k: getattr(self, k) for k in ("min_diameter_mm", "max_diameter_mm", "max_elongation")}

    def card_sections(self) -> dict[str, dict[str, Any]]:
        return {
            "candidates": {"n_clusters": self.n_clusters, **self.shape_limits(), "max_candidates": self.max_candidates},
            "patches": {
                "patch_size": self.patch_size,
                "field_of_view_mm": self.field_of_view_mm,
                "patch_input": self.patch_input,
                "channels": CHANNELS[self.patch_input],
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
    labels, found = find_kmeans_candidates(array, brain, spacing, n_clusters=settings.n_clusters,
                                           max_candidates=settings.max_candidates, **settings.shape_limits())
    centres = np.array([c.centre_kji for c in found], dtype=float).reshape(-1, 3)
    patches = extract_patches(
        normalise_intensity(array), centres, spacing, patch_size=settings.patch_size,
        field_of_view_mm=settings.field_of_view_mm, patch_input=settings.patch_input,
    )
    return StageOne(brain.astype(np.uint8), labels, found, patches)


@lru_cache(maxsize=2)
def _cached_classifier(folder: str, stamp: float, backend: str, device: str) -> tuple[ClassifierRunner, dict[str, Any]]:
    return open_classifier(folder, backend, device)


def load_model(
    model_dir: str | os.PathLike | None = None, backend: str = "auto", device: str = "auto"
) -> tuple[ClassifierRunner, dict[str, Any]]:
    """(classifier runner, card) of the ResNet50 folder (:func:`.runtime.open_classifier`), cached while its card
    is unchanged."""
    folder = resolve_model_dir(MODEL_NAME, model_dir).resolve()
    card = folder / CARD_NAME
    return _cached_classifier(str(folder), card.stat().st_mtime if card.exists() else 0.0, backend, device)


def classify_patches(
    runner: ClassifierRunner, patches: np.ndarray, *,
    progress: Callable[[float], None] | None = None, cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """CMB probability of each patch, ``CLASSIFY_BATCH`` at a time (checking ``cancel`` between batches)."""
    scores = np.zeros(len(patches), dtype=np.float32)
    for start in range(0, len(patches), CLASSIFY_BATCH):
        if cancel is not None and cancel():
            raise DetectionCancelled("detection cancelled")
        stop = min(start + CLASSIFY_BATCH, len(patches))
        scores[start:stop] = runner.predict(to_network_input(patches[start:stop]))
        if progress is not None:
            progress(stop / len(patches))
    return scores


def lesion_filter_of(model_dir: str | os.PathLike | None = None) -> LesionFilter | None:
    """The 3D false-positive filter the ResNet50 folder's card lists, or None."""
    return listed_lesion_filter(resolve_model_dir(MODEL_NAME, model_dir))


def classifier_map(first: StageOne, classifier_scores: np.ndarray) -> np.ndarray:
    """``float32`` map: each candidate's voxels (``first.labels``) hold its classifier probability, 0 elsewhere."""
    return np.concatenate([[0.0], classifier_scores]).astype(np.float32)[first.labels]


def candidate_table(axial: sitk.Image, first: StageOne, probability: np.ndarray) -> np.ndarray:
    """The 3D feature rows (:data:`lesions.features.FEATURE_NAMES`) of stage one's candidates, scored by
    ``probability`` (:func:`classifier_map`)."""
    return candidate_features(sitk.GetArrayViewFromImage(axial), probability, first.labels, axial.GetSpacing()[::-1])


def candidate_scores(
    axial: sitk.Image, first: StageOne, classifier_scores: np.ndarray, lesion_filter: LesionFilter | None
) -> np.ndarray:
    """:func:`classifier_map`, or with ``lesion_filter`` each candidate's filter score in its place."""
    probability = classifier_map(first, classifier_scores)
    if lesion_filter is None:
        return probability
    return lesion_filter.score_map(first.labels, candidate_table(axial, first, probability))


def predict_probability(
    image: sitk.Image,
    *,
    device: str = "auto",
    backend: Any = "auto",
    progress: Callable[[float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    model_dir: str | os.PathLike | None = None,
    lesion_filter: bool | LesionFilter = True,
) -> np.ndarray:
    """``[k, j, i] float32`` on ``image``'s grid: each kept candidate's voxels hold its score.

    ``backend``: ``auto`` (the model's ONNX export with ONNX Runtime when both are there, else TensorFlow),
    ``onnxruntime`` or ``tensorflow``, or a ready runner (:class:`.runtime.ClassifierRunner`, used with the card
    of ``model_dir``). ``lesion_filter``: True scores with the card's 3D false-positive filter when it lists one,
    False with the classifier alone; a :class:`LesionFilter` is used as given (training chooses its threshold so).
    """
    if isinstance(backend, str):
        check_choice(backend, device)  # reject a bad name before the long work
        runner, card = load_model(model_dir, backend, device)
    else:
        runner, card = backend, load_card(resolve_model_dir(MODEL_NAME, model_dir))
    if isinstance(lesion_filter, bool):
        lesion_filter = lesion_filter_of(model_dir) if lesion_filter else None
    orientation = orientation_of(image)
    axial = to_axial(sitk.Cast(image, sitk.sitkFloat32))
    if cancel is not None and cancel():
        raise DetectionCancelled("detection cancelled")
    first = stage_one(axial, StageSettings.from_card(card))
    if progress is not None:
        progress(0.5)
    scaled = None if progress is None else (lambda f: progress(0.5 + 0.45 * f))
    scores = classify_patches(runner, first.patches, progress=scaled, cancel=cancel)
    probability = candidate_scores(axial, first, scores, lesion_filter)
    result = sitk.GetImageFromArray(probability)
    result.CopyInformation(axial)
    if progress is not None:
        progress(1.0)
    return sitk.GetArrayFromImage(from_axial(result, orientation))
