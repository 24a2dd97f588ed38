"""The detection pipeline: volume -> probability map [-> 3D lesion filter] -> lesions [-> outlines redrawn,
vein check] -> MARS rating -> result.

The CLI (``cmb-detect``) and the Slicer module both call :func:`detect`. Methods come from
:mod:`probability.registry` (each a :class:`~CMBDetectionLib.probability.registry.ProbabilityMethod`); they are
imported only when used, so importing this module stays light (no TensorFlow, no ONNX Runtime).

>>> result = detect(read_volume("sub-01_swi.nii.gz"), device="cpu")      # doctest: +SKIP
>>> [lesion.centre_ras for lesion in result.lesions]                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.errors import DetectionCancelled, ModelError
from CMBDetectionLib.lesions.extraction import extract_lesions, lesion_labels, lesions_from_labels, remove_lesions
from CMBDetectionLib.lesions.filter import LesionFilter, lesion_probability, listed_lesion_filter
from CMBDetectionLib.lesions.outline import outline_lesions, vein_like
from CMBDetectionLib.model_store import CARD_NAME, DEFAULT_THRESHOLD, load_card, operating_threshold, sha256_of
from CMBDetectionLib.model_store import model_dir as find_model_dir
from CMBDetectionLib.probability.registry import method_entry
from CMBDetectionLib.results import DetectionResult, Lesion

log = logging.getLogger(__name__)

# Share of the progress bar given to the probability map (and to the lesion filter); lesions and MARS take the rest.
PREDICTION_SHARE = 0.9
FILTERED_PREDICTION_SHARE = 0.6


def _scaled(progress: Callable[[float], None] | None, start: float, share: float) -> Callable[[float], None] | None:
    if progress is None:
        return None
    return lambda fraction: progress(start + share * min(max(fraction, 0.0), 1.0))


def model_provenance(method: str, model_dir: str | os.PathLike | None) -> dict[str, str]:
    """Name, version and card checksum (the card lists every model file's sha256) of the model a run uses, from
    its card (empty when the card cannot be read).

    >>> model_provenance("unet", None)["model_version"]
    '0.7.0'
    """
    folder = find_model_dir(method_entry(method).model_folder, model_dir)
    try:
        card = load_card(folder)
    except ModelError:
        return {"model_name": "", "model_version": "", "model_card_sha256": ""}
    return {"model_name": str(card.get("name", "")), "model_version": str(card.get("version", "")),
            "model_card_sha256": sha256_of(folder / CARD_NAME)}


def lesion_filter_for(method: str, model_dir: str | os.PathLike | None, enabled: bool = True) -> LesionFilter | None:
    """The method's 3D false-positive filter when ``enabled`` and its model folder's card lists one, else None."""
    if not enabled:
        return None
    folder = find_model_dir(method_entry(method).model_folder, model_dir)
    return listed_lesion_filter(folder)


def default_threshold(method: str, model_dir: str | os.PathLike | None, lesion_filter: LesionFilter | None) -> float:
    """The operating threshold chosen on validation data: the filter's (on lesion scores) when it runs, else the
    UNet card's (on voxel probabilities); 0.5 for the two-stage classifier."""
    if lesion_filter is not None:
        return lesion_filter.threshold
    return operating_threshold(model_dir) if method == "unet" else DEFAULT_THRESHOLD


@contextmanager
def _stage(timings: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall seconds the block takes to ``timings[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def start_registration(image: sitk.Image) -> Future:
    """Register ``image`` to MNI in a background thread; the future holds the ``MniRegistration`` or its error.

    SimpleITK releases the GIL, so the registration overlaps the network instead of following it.

    >>> registration = start_registration(read_volume("sub-01_swi.nii.gz"))   # doctest: +SKIP
    >>> registration.result().coverage                                         # doctest: +SKIP
    0.97
    """
    from CMBDetectionLib.mars.registration import register_to_mni

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cmb-mars")
    future = executor.submit(register_to_mni, image)
    executor.shutdown(wait=False)  # the thread ends with its one task
    return future


def rate_mars(image: sitk.Image, lesions: list[Lesion], label_map: np.ndarray,
              registration: Any) -> list[dict[str, Any]]:
    """Fill each lesion's MARS fields (region, side, category, certainty) and return the count table.

    ``registration`` is the ``MniRegistration`` of ``image`` (:func:`start_registration`'s result).
    """
    from CMBDetectionLib.mars.rating import MarsRater, count_table

    rater = MarsRater(registration, image)
    rater.annotate(lesions, label_map)
    return count_table(lesions)


def outlined_lesions(image: sitk.Image, probability: np.ndarray, threshold: float) -> tuple[np.ndarray, list[Lesion]]:
    """Lesions above ``threshold`` redrawn at half signal loss, without those taken for veins (:mod:`lesion_outline`);
    scores stay those of the detector's voxels."""
    detected = lesion_labels(probability, image, threshold)
    label_map, growth = outline_lesions(sitk.GetArrayViewFromImage(image), detected, image.GetSpacing()[::-1])
    lesions = lesions_from_labels(label_map, probability, image, scored_labels=detected)
    scores = np.ones(len(growth))
    scores[[lesion.label - 1 for lesion in lesions]] = [lesion.max_probability for lesion in lesions]
    return remove_lesions(label_map, lesions, vein_like(growth, scores))


def detect(
    image: sitk.Image,
    *,
    method: str = "unet",
    threshold: float | None = None,
    device: str = "auto",
    backend: Any = "auto",
    model_dir: str | os.PathLike | None = None,
    mars: bool = True,
    use_lesion_filter: bool = True,
    redraw_outlines: bool = True,
    progress: Callable[[float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> DetectionResult:
    """Detect CMBs in ``image`` (a 3D SWI volume) and return masks, lesions and provenance.

    ``progress(fraction)`` receives 0..1; ``cancel()`` returning True raises :class:`DetectionCancelled`.
    ``backend`` is a name (``auto``, ``tensorflow``, ``onnxruntime``, ``keras``) or a ready backend object.
    With ``use_lesion_filter`` (the default) and a filter in the method's model folder, the candidates go
    through the 3D false-positive filter (:mod:`lesion_filter`) and ``threshold`` applies to lesion scores.
    ``threshold=None`` takes the operating threshold chosen on validation data (:func:`default_threshold`).
    With ``redraw_outlines`` (the default) each lesion is redrawn at half signal loss and lesions whose outline
    runs along a vein on a low score are dropped (:func:`outlined_lesions`).
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    entry = method_entry(method)  # an unknown method fails before any model is read
    lesion_filter = lesion_filter_for(method, model_dir, use_lesion_filter)
    if threshold is None:
        threshold = default_threshold(method, model_dir, lesion_filter)
    implementation = entry.load()
    # The two-stage method filters its own candidates (the filter scores stage one's regions); the UNet's map
    # goes through the filter here, on candidates found at its peaks.
    inside = {"lesion_filter": lesion_filter or False} if method == "two-stage" else {}
    after = lesion_filter is not None and not inside
    share = FILTERED_PREDICTION_SHARE if after else PREDICTION_SHARE
    registration = start_registration(image) if mars else None
    with _stage(timings, "network"):
        probability = implementation.predict_probability(
            image, device=device, backend=backend, progress=_scaled(progress, 0.0, share), cancel=cancel,
            model_dir=model_dir, **inside,
        )
    if after:
        with _stage(timings, "lesion_filter"):
            probability = lesion_probability(image, probability, lesion_filter)
        if progress is not None:
            progress(PREDICTION_SHARE)
    if cancel is not None and cancel():
        raise DetectionCancelled("detection cancelled")
    with _stage(timings, "lesions"):
        label_map, lesions = outlined_lesions(image, probability, threshold) if redraw_outlines \
            else extract_lesions(probability, image, threshold)
    mars_counts, mars_error, registered = None, None, None
    if registration is not None:
        # A partial-brain volume (RegistrationError, a RuntimeError), or atlas files missing or unreadable
        # (RuntimeError from SimpleITK, OSError, ImportError): the detections stand, without MARS, and mars_error
        # says why.
        try:
            with _stage(timings, "registration_wait"):
                registered = registration.result()
            timings["registration"] = registered.seconds
            with _stage(timings, "region_lookup"):
                mars_counts = rate_mars(image, lesions, label_map, registered)
        except (ValueError, RuntimeError, OSError, ImportError) as exc:
            mars_error = str(exc)
            log.warning("MARS rating skipped: %s", exc)
    if progress is not None:
        progress(1.0)
    provenance = {
        "method": method,
        "threshold": threshold,
        "lesion_filter": lesion_filter is not None,
        "outlines": "half signal loss" if redraw_outlines else "detector",
        "device": device,
        "backend": backend if isinstance(backend, str) else getattr(backend, "name", str(backend)),
        **model_provenance(method, model_dir),
        "seconds": round(time.perf_counter() - started, 2),
    }
    return DetectionResult(
        reference=image, probability=probability, label_map=label_map, lesions=lesions, provenance=provenance,
        mars_counts=mars_counts, mars_error=mars_error, timings=timings,
        registration=registered,
    )
