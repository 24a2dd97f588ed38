"""Gradient-boosted decision trees as plain arrays: fitted with scikit-learn, stored as JSON, scored with numpy.

The lesion filter ships with the model, so it must load without pickles (which run code and break across
scikit-learn versions). A fitted :class:`~sklearn.ensemble.GradientBoostingClassifier` is flattened into
one node table; every leaf points to itself, so all trees are walked together for ``depth`` steps.

>>> trees = BoostedTrees(base=-1.0, roots=np.array([0]), feature=np.array([0, 0, 0]),
...                      threshold=np.array([0.5, 0, 0]), left=np.array([1, 1, 2]), right=np.array([2, 1, 2]),
...                      value=np.array([0.0, -1.0, 3.0]), depth=1)
>>> trees.decision(np.array([[0.0], [1.0]])).tolist()      # x <= 0.5 goes left (-1), else right (+3)
[-2.0, 2.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_ARRAYS = ("roots", "feature", "threshold", "left", "right", "value")


@dataclass(frozen=True)
class BoostedTrees:
    """A tree ensemble's log-odds: ``base`` plus, per tree, the value of the leaf each row reaches.

    Node ``i`` sends a row to ``left[i]`` when ``row[feature[i]] <= threshold[i]``, else to ``right[i]``;
    ``value`` holds each leaf's contribution (the learning rate already applied)."""

    base: float
    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    depth: int

    def decision(self, features: np.ndarray) -> np.ndarray:
        """Log-odds of each row of ``features`` (rows x features, finite)."""
        rows = np.asarray(features, np.float32)  # scikit-learn's trees split float32 values
        node = np.broadcast_to(self.roots, (len(rows), len(self.roots))).copy()
        for _ in range(self.depth):
            x = np.take_along_axis(rows, self.feature[node], axis=1)
            node = np.where(x <= self.threshold[node], self.left[node], self.right[node])
        return self.base + self.value[node].sum(axis=1)

    def split_counts(self, n_features: int) -> np.ndarray:
        """How many splits use each feature: a plain reading of what the trees rely on."""
        inner = self.left != np.arange(len(self.left))
        return np.bincount(self.feature[inner], minlength=n_features)

    def to_json(self) -> dict[str, Any]:
        return {"base": self.base, "depth": self.depth, **{k: getattr(self, k).tolist() for k in _ARRAYS}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BoostedTrees:
        arrays = {k: np.asarray(data[k], float if k in ("threshold", "value") else np.int64) for k in _ARRAYS}
        n = len(arrays["value"])
        if any(len(arrays[k]) != n for k in _ARRAYS[1:]) or not all(
                ((arrays[k] >= 0) & (arrays[k] < n)).all() for k in ("roots", "left", "right")):
            raise ValueError("the tree arrays differ in length or point outside the node table")
        return cls(float(data["base"]), depth=int(data["depth"]), **arrays)


def from_sklearn(model) -> BoostedTrees:
    """Flatten a fitted binary ``GradientBoostingClassifier`` (its default prior initialisation)."""
    prior = float(np.clip(model.init_.class_prior_[1], 1e-12, 1 - 1e-12))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in _ARRAYS}
    offset, depth = 0, 0
    for estimator in model.estimators_[:, 0]:
        tree = estimator.tree_
        own = np.arange(tree.node_count) + offset
        leaf = tree.children_left < 0
        parts["roots"].append(np.array([offset]))
        parts["feature"].append(np.where(leaf, 0, tree.feature))
        parts["threshold"].append(np.where(leaf, 0.0, tree.threshold))
        parts["left"].append(np.where(leaf, own, tree.children_left + offset))
        parts["right"].append(np.where(leaf, own, tree.children_right + offset))
        parts["value"].append(np.where(leaf, model.learning_rate * tree.value[:, 0, 0], 0.0))
        offset += tree.node_count
        depth = max(depth, tree.max_depth)
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    return BoostedTrees(float(np.log(prior / (1 - prior))), depth=depth, **arrays)
