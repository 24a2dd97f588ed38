"""Confidence-shift augmentation of the 3D filter's training candidates: the network's score, made less sure.

The filter's first two features are the network's own score of the candidate (peak and mean, as logits). On
the generator the network was trained on it is confident on true CMBs; on another scanner every score drops
(on the project's independent real-scan benchmark the UNet's peak on most inserted CMBs was under 0.3), and a
filter that learned "a confident network means a CMB" rejects them there. So each training subject is also
seen as a less confident network would score it: all its candidates' logits lowered by one random amount
(:data:`SHIFT`); candidates then under the detector's candidate floor drop out, as they would at detection.
The trees keep using the score where it still separates and lean on the 3D description where it does not.

>>> features = np.array([[2.0, 1.0, 7.0], [-4.0, -5.0, 1.0]]); targets = np.array([1, 0])
>>> x, y = confidence_shifted([(features, targets)], copies=1, rng=np.random.default_rng(0), floor_logit=-5.0)
>>> x[:, 2].tolist(), y.tolist()        # the original rows, then the shifted copy without the row under the floor
([7.0, 1.0, 7.0], [1, 0, 1])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from CMBDetectionLib.lesions.features import FEATURE_NAMES

#: the features that carry the network's score
SCORE_FEATURES = ("peak_logit", "mean_logit")
#: shifted copies per subject and the range of the logit shift (a drop of 0.5 to 4: at 4, a 0.9 peak reads 0.14)
SHIFT = {"copies": 2, "low": -4.0, "high": -0.5}
#: copies per subject by method, as measured on the out-of-distribution matrix (README): the UNet's filter found
#: more CMBs with fewer false positives; the two-stage filter, whose ResNet50 score carries little (its ablation),
#: found fewer, so it is fitted on the candidates as they are
COPIES_BY_METHOD = {"unet": SHIFT["copies"], "two-stage": 0}


def lower_scores(features: np.ndarray, shift: float, floor_logit: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``features`` with the network's scores (:data:`SCORE_FEATURES`) moved by ``shift``, and which rows are still
    candidates (peak logit at or above ``floor_logit``; all when None).

    >>> lowered, kept = lower_scores(np.array([[2.0, 1.0, 7.0], [-4.0, -5.0, 1.0]]), -1.5, floor_logit=-5.0)
    >>> lowered[:, :2].tolist(), kept.tolist()
    ([[0.5, -0.5], [-5.5, -6.5]], [True, False])
    """
    columns = [FEATURE_NAMES.index(name) for name in SCORE_FEATURES]
    lowered = features.copy()
    lowered[:, columns] += shift
    kept = lowered[:, columns[0]] >= floor_logit if floor_logit is not None else np.ones(len(lowered), bool)
    return lowered, kept


def confidence_shifted(
    tables: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    copies: int = SHIFT["copies"],
    rng: np.random.Generator,
    floor_logit: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each subject's (feature rows, targets) followed by ``copies`` shifted copies of it, all stacked.

    ``floor_logit``: the detector's candidate floor on the peak logit (UNet peaks below it are never candidates);
    None where every candidate is scored whatever its score (the two-stage method).
    """
    rows, labels = [], []
    for features, targets in tables:
        rows.append(features)
        labels.append(targets)
        for _ in range(copies):
            shifted, kept = lower_scores(features, rng.uniform(SHIFT["low"], SHIFT["high"]), floor_logit)
            rows.append(shifted[kept])
            labels.append(targets[kept])
    return np.concatenate(rows), np.concatenate(labels)
