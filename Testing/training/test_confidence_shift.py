"""Confidence-shift augmentation of the 3D filter's training data (training/confidence_shift.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logit

from CMBDetectionLib.lesions.features import FEATURE_NAMES
from CMBDetectionLib.training.confidence_shift import SCORE_FEATURES, SHIFT, confidence_shifted
from CMBDetectionLib.training.lesion_filter import fit_on_subjects

SCORES = [FEATURE_NAMES.index(name) for name in SCORE_FEATURES]
SHAPE = FEATURE_NAMES.index("dark_elongation")


def _subject(rng: np.random.Generator, n_true: int = 15, n_false: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Candidates whose network score and shape both tell CMBs (score ~ +3, round) from the rest (score ~ -3)."""
    targets = np.r_[np.ones(n_true, int), np.zeros(n_false, int)]
    features = rng.normal(0.0, 1.0, (len(targets), len(FEATURE_NAMES)))
    features[:, SCORES] = np.where(targets[:, None] == 1, 3.0, -3.0) + rng.normal(0, 0.5, (len(targets), 1))
    features[:, SHAPE] = np.where(targets == 1, 1.0, 3.0) + rng.normal(0, 0.3, len(targets))
    return features, targets


def test_each_copy_lowers_every_score_of_a_subject_by_one_amount_and_keeps_the_rest():
    rng = np.random.default_rng(1)
    features, targets = _subject(rng)
    x, y = confidence_shifted([(features, targets)], copies=2, rng=np.random.default_rng(2))
    assert len(x) == 3 * len(features) and (y == np.tile(targets, 3)).all()
    for copy in (x[len(features):2 * len(features)], x[2 * len(features):]):
        shift = copy[:, SCORES] - features[:, SCORES]
        assert np.allclose(shift, shift[0, 0])
        assert SHIFT["low"] <= shift[0, 0] <= SHIFT["high"]
        others = [i for i in range(len(FEATURE_NAMES)) if i not in SCORES]
        assert (copy[:, others] == features[:, others]).all()


def test_candidates_pushed_under_the_floor_drop_out():
    features, targets = _subject(np.random.default_rng(3))
    floor = float(logit(0.005))
    x, y = confidence_shifted([(features, targets)], copies=4, rng=np.random.default_rng(4), floor_logit=floor)
    shifted = x[len(features):]
    assert (shifted[:, SCORES[0]] >= floor).all()
    assert len(shifted) < 4 * len(features)            # negatives near -3 fall under -5.3 for most shifts
    assert (y[len(features):] == 1).sum() == 4 * targets.sum()   # CMBs near +3 never do


@dataclass(frozen=True)
class _Tables:
    """A candidate source serving prepared tables (the pair is only a key)."""

    tables: dict[str, tuple[np.ndarray, np.ndarray]]
    score_floor: float | None = 0.005

    def table(self, pair: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        features, targets = self.tables[pair]
        labels = np.arange(1, len(targets) + 1)
        return labels * targets > 0, labels, features


def test_a_filter_fitted_with_shifts_keeps_a_round_cmb_its_network_is_unsure_of():
    rng = np.random.default_rng(5)
    source = _Tables({f"s{i}": _subject(rng) for i in range(12)})
    pairs = list(source.tables)
    plain, counts = fit_on_subjects(pairs, source, shift_copies=0)
    shifted, shifted_counts = fit_on_subjects(pairs, source, shift_copies=SHIFT["copies"])
    assert counts == shifted_counts == {"n_candidates": 12 * 75, "n_true_candidates": 12 * 15}
    unsure_cmb = np.zeros((1, len(FEATURE_NAMES)))
    unsure_cmb[0, SCORES] = -2.0          # the network scores it 0.12 instead of 0.95
    unsure_cmb[0, SHAPE] = 1.0            # round, as the CMBs
    assert shifted.score(unsure_cmb)[0] > 0.9
    assert plain.score(unsure_cmb)[0] < shifted.score(unsure_cmb)[0] - 0.3
    vein = unsure_cmb.copy()
    vein[0, SHAPE] = 3.0                  # elongated, as the false candidates
    assert shifted.score(vein)[0] < 0.1
