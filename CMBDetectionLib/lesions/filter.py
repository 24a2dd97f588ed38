"""3D false-positive reduction: a boosted-tree score per lesion candidate, for either method.

The 2D UNet (Ali et al. 2023) alone trades sensitivity for false positives steeply, because on one slice a
vein cut across looks like a microbleed. Like the second stage of Afzal et al. 2022 (and most CMB
detectors since), a second, 3D look at each candidate separates the two: :mod:`lesion_candidates` finds
every UNet peak, :mod:`lesion_features` measures each in 3D, and this module scores them. The output is a
*lesion probability map*: each candidate's voxels carry its score, the rest 0, so thresholding and lesion
extraction downstream are unchanged, and a lesion's probability is the classifier's confidence in it. The
two-stage method's 2D ResNet50 has the same blind spot; it uses the same kind of filter on its own candidates
(stage one's regions, scored by the ResNet50: :mod:`two_stage.method`).

The classifier is gradient-boosted decision trees (:data:`BOOSTING`): the features interact (a faint UNet
peak on a compact dark blob is a CMB, on a long dark tube a vein), which a linear score cannot express.
It is stored as JSON (``lesion_filter.json`` next to the model's weights) and evaluated with numpy
(:mod:`boosted_trees`), no pickles.

>>> n = len(FEATURE_NAMES)                       # one stump on the first feature: log-odds -2 or +2
>>> stump = BoostedTrees(0.0, np.array([0]), np.zeros(3, int), np.zeros(3), np.array([1, 1, 2]),
...                      np.array([2, 1, 2]), np.array([0.0, -2.0, 2.0]), depth=1)
>>> lf = LesionFilter(FEATURE_NAMES, stump, 0.5)
>>> [round(float(s), 2) for s in lf.score(np.stack([np.ones(n), np.zeros(n), np.full(n, np.nan)]))]
[0.88, 0.12, 0.0]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy.special import expit

from CMBDetectionLib.errors import ModelError
from CMBDetectionLib.lesions.boosted_trees import BoostedTrees, from_sklearn
from CMBDetectionLib.lesions.features import FEATURE_NAMES, candidate_features
from CMBDetectionLib.lesions.peak_candidates import PEAK_FLOOR, find_peak_candidates
from CMBDetectionLib.model_store import CARD_NAME, load_card

FILTER_FILE = "lesion_filter.json"
KIND = "gradient-boosted trees on lesion_features.FEATURE_NAMES"


#: scikit-learn ``GradientBoostingClassifier`` settings: shallow trees (feature pairs and triples), at least
#: 20 candidates per leaf (true CMBs are rare: smaller leaves memorise them), a slow learning rate and row
#: subsampling, seeded so that a refit gives the same filter. Chosen by 5-fold cross-validation by subject
#: on the filter's training data against the logistic regression it replaced.
BOOSTING = {"n_estimators": 300, "learning_rate": 0.05, "max_depth": 3, "min_samples_leaf": 20, "subsample": 0.8,
            "random_state": 0}


@dataclass(frozen=True)
class LesionFilter:
    """Boosted trees on :data:`FEATURE_NAMES`; ``threshold`` is its operating point on the lesion score
    (chosen on validation subjects)."""

    feature_names: tuple[str, ...]
    trees: BoostedTrees
    threshold: float
    peak_floor: float = PEAK_FLOOR

    def score(self, features: np.ndarray) -> np.ndarray:
        """Lesion probability (0..1) of each feature row; rows with missing features score 0."""
        features = np.asarray(features, float).reshape(-1, len(self.feature_names))
        finite = np.isfinite(features).all(axis=1)
        scores = np.zeros(len(features))
        scores[finite] = expit(self.trees.decision(features[finite]))
        return scores

    def score_map(self, labels: np.ndarray, features: np.ndarray) -> np.ndarray:
        """``float32`` map giving each voxel of candidate ``i`` (``labels``) the score of feature row ``i - 1``."""
        return np.concatenate([[0.0], self.score(features)]).astype(np.float32)[labels]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "feature_names": list(self.feature_names),
            "threshold": float(self.threshold),
            "peak_floor": float(self.peak_floor),
            "trees": self.trees.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LesionFilter:
        if data.get("kind") != KIND:
            raise ValueError(f"it is a '{data.get('kind')}', this version reads '{KIND}'")
        names = tuple(data["feature_names"])
        if names != FEATURE_NAMES:
            raise ValueError(f"it scores features {names}, but this version computes {FEATURE_NAMES}")
        trees = BoostedTrees.from_json(data["trees"])
        if len(trees.feature) and trees.feature.max() >= len(names):
            raise ValueError("its trees split on features it does not list")
        return cls(names, trees, float(data["threshold"]), float(data["peak_floor"]))

    def save(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / FILTER_FILE
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return path


def has_lesion_filter(folder: str | os.PathLike) -> bool:
    """Whether the model card lists a filter (a stale file left by retraining the UNet does not count)."""
    return (Path(folder) / CARD_NAME).is_file() and FILTER_FILE in load_card(Path(folder)).get("files", {})


def listed_lesion_filter(folder: str | os.PathLike) -> LesionFilter | None:
    """The filter a model folder's card lists (:func:`has_lesion_filter`), loaded; None when it lists none."""
    return load_lesion_filter(folder) if has_lesion_filter(folder) else None


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


def fit_lesion_filter(features: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> LesionFilter:
    """Fit the trees on candidate rows (``targets`` 1 for true CMBs; rows with missing features are left out).
    Unweighted: the scores then estimate how often such a candidate is a CMB, though true candidates are rare
    (under 1 in 100).

    >>> rng = np.random.default_rng(0); x = rng.normal(size=(200, len(FEATURE_NAMES))); y = (x[:, 0] > 0).astype(int)
    >>> lf = fit_lesion_filter(x, y); float(np.mean((lf.score(x) >= 0.5) == y)) > 0.95
    True
    """
    from sklearn.ensemble import GradientBoostingClassifier

    features = np.asarray(features, float)
    finite = np.isfinite(features).all(axis=1)
    if len(set(np.asarray(targets)[finite].tolist())) < 2:
        raise ValueError("the candidates hold only one class: the data need both true CMBs and false candidates")
    model = GradientBoostingClassifier(**BOOSTING).fit(features[finite], np.asarray(targets)[finite])
    return LesionFilter(FEATURE_NAMES, from_sklearn(model), threshold)


def candidate_table(image: sitk.Image, probability: np.ndarray, floor: float = PEAK_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """Candidate label map and feature table of one volume (``probability`` on ``image``'s grid)."""
    labels, _ = find_peak_candidates(probability, floor)
    array = sitk.GetArrayViewFromImage(image)  # candidate_features casts to float32 only when needed
    return labels, candidate_features(array, probability, labels, image.GetSpacing()[::-1])


def lesion_probability(image: sitk.Image, probability: np.ndarray, lesion_filter: LesionFilter) -> np.ndarray:
    """The UNet ``probability`` map turned into a lesion probability map (``float32``, same grid)."""
    return lesion_filter.score_map(*candidate_table(image, probability, lesion_filter.peak_floor))
