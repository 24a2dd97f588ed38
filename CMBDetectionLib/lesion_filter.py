"""3D false-positive reduction for the UNet: a logistic-regression score per lesion candidate.

The 2D UNet (Ali et al. 2023) alone trades sensitivity for false positives steeply, because on one slice a
vein cut across looks like a microbleed. Like the second stage of Afzal et al. 2022 (and most CMB
detectors since), a second, 3D look at each candidate separates the two: :mod:`lesion_candidates` finds
every UNet peak, :mod:`lesion_features` measures each in 3D, and this module scores them. The output is a
*lesion probability map*: each candidate's voxels carry its score, the rest 0, so thresholding and lesion
extraction downstream are unchanged, and a lesion's probability is the classifier's confidence in it.

The classifier is a standardised logistic regression: one readable coefficient per feature, stored as JSON
(``lesion_filter.json`` next to the UNet weights) and evaluated with numpy, no pickles.

>>> n = len(FEATURE_NAMES); weights = np.r_[1.0, np.zeros(n - 1)]      # only the first feature counts
>>> lf = LesionFilter(FEATURE_NAMES, np.zeros(n), np.ones(n), weights, 0.0, 0.5)
>>> [round(float(s), 2) for s in lf.score(np.stack([2 * weights, np.zeros(n)]))]
[0.88, 0.5]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from .lesion_candidates import PEAK_FLOOR, find_candidates
from .lesion_features import FEATURE_NAMES, candidate_features
from .model_store import CARD_NAME, ModelError, load_card

FILTER_FILE = "lesion_filter.json"


@dataclass(frozen=True)
class LesionFilter:
    """Logistic regression on standardised :data:`FEATURE_NAMES`; ``threshold`` is its operating point on
    the lesion score (chosen on validation subjects)."""

    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float
    peak_floor: float = PEAK_FLOOR

    def score(self, features: np.ndarray) -> np.ndarray:
        """Lesion probability (0..1) of each feature row; rows with missing features score 0."""
        z = (np.asarray(features, float) - self.mean) / self.scale @ self.coef + self.intercept
        return np.where(np.isfinite(z), 1.0 / (1.0 + np.exp(-np.nan_to_num(z))), 0.0)

    def score_map(self, labels: np.ndarray, features: np.ndarray) -> np.ndarray:
        """``float32`` map giving each voxel of candidate ``i`` (``labels``) the score of feature row ``i - 1``."""
        return np.concatenate([[0.0], self.score(features)]).astype(np.float32)[labels]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "standardised logistic regression on lesion_features.FEATURE_NAMES",
            "feature_names": list(self.feature_names),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": float(self.intercept),
            "threshold": float(self.threshold),
            "peak_floor": float(self.peak_floor),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LesionFilter:
        names = tuple(data["feature_names"])
        if names != FEATURE_NAMES:
            raise ValueError(f"it scores features {names}, but this version computes {FEATURE_NAMES}")
        arrays = [np.asarray(data[k], dtype=float) for k in ("mean", "scale", "coef")]
        if any(a.shape != (len(names),) for a in arrays):
            raise ValueError("mean, scale and coef must each hold one number per feature")
        return cls(names, *arrays, float(data["intercept"]), float(data["threshold"]), float(data["peak_floor"]))

    def save(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / FILTER_FILE
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return path


def has_lesion_filter(folder: str | os.PathLike) -> bool:
    """Whether the model card lists a filter (a stale file left by retraining the UNet does not count)."""
    return (Path(folder) / CARD_NAME).is_file() and FILTER_FILE in load_card(Path(folder)).get("files", {})


def load_lesion_filter(folder: str | os.PathLike) -> LesionFilter:
    """The filter stored in a model folder; :class:`ModelError` (saying what to do) when absent or unreadable."""
    path = Path(folder) / FILTER_FILE
    if not path.is_file():
        raise ModelError(f"no lesion filter in {folder} ({FILTER_FILE} missing): train one with "
                         f"'cmb-train --method lesion-filter', or detect without it (--no-lesion-filter).")
    try:
        return LesionFilter.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as error:  # JSONDecodeError is a ValueError
        raise ModelError(f"{path} is not a usable lesion filter: {error}. Retrain it or restore the file.") from error


def fit_lesion_filter(features: np.ndarray, targets: np.ndarray, threshold: float = 0.5,
                      regularisation: float = 1.0) -> LesionFilter:
    """Fit the logistic regression on candidate rows (``targets`` 1 for true CMBs). Unweighted: the scores then
    estimate how often such a candidate is a CMB, though true candidates are rare (under 1 in 100).

    >>> rng = np.random.default_rng(0); x = rng.normal(size=(200, len(FEATURE_NAMES))); y = (x[:, 0] > 0).astype(int)
    >>> lf = fit_lesion_filter(x, y); float(np.mean((lf.score(x) >= 0.5) == y)) > 0.95
    True
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features, float)
    finite = np.isfinite(features).all(axis=1)
    if len(set(np.asarray(targets)[finite].tolist())) < 2:
        raise ValueError("the candidates hold only one class: the data need both true CMBs and false candidates")
    scaler = StandardScaler().fit(features[finite])
    model = LogisticRegression(C=regularisation, max_iter=5000).fit(scaler.transform(features[finite]), targets[finite])
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    return LesionFilter(FEATURE_NAMES, scaler.mean_, scale, model.coef_[0], float(model.intercept_[0]), threshold)


def candidate_table(image: sitk.Image, probability: np.ndarray, floor: float = PEAK_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """Candidate label map and feature table of one volume (``probability`` on ``image``'s grid)."""
    labels, _ = find_candidates(probability, floor)
    array = sitk.GetArrayViewFromImage(image)  # candidate_features casts to float32 only when needed
    return labels, candidate_features(array, probability, labels, image.GetSpacing()[::-1])


def lesion_probability(image: sitk.Image, probability: np.ndarray, lesion_filter: LesionFilter) -> np.ndarray:
    """The UNet ``probability`` map turned into a lesion probability map (``float32``, same grid)."""
    return lesion_filter.score_map(*candidate_table(image, probability, lesion_filter.peak_floor))
