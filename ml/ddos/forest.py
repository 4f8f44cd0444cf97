"""A fitted Isolation Forest's scoring, vectorised over every tree at once.

scikit-learn scores an Isolation Forest one tree at a time (a joblib task, an input check and a
``tree.apply`` per tree): for the ten rows of one DDoS verdict that overhead, not the maths, is
what costs 10-15 ms. Here the 200 trees are packed into padded arrays and walked together,
level by level (a tree is at most ``ceil(log2(max_samples))`` deep), which turns one verdict's
forest into about ten numpy operations on a (rows, trees) array.

The result is scikit-learn's ``score_samples`` to the last bits of a float: the same float32
input (the trees compare float32 features with float64 thresholds), the same per-tree leaf
values (depth of the leaf plus the average path length of the samples left in it, minus one),
the same normalisation. A test holds the two equal.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length

_LEAF = -1      # scikit-learn's TREE_LEAF: a node without children


class PackedForest:
    """The trees of a fitted :class:`~sklearn.ensemble.IsolationForest` as padded arrays."""

    def __init__(self, forest: IsolationForest) -> None:
        n_features = forest.n_features_in_
        if any(len(f) != n_features or np.any(np.asarray(f) != np.arange(n_features))
               for f in forest.estimators_features_):
            raise ValueError("the forest subsamples features; PackedForest supports max_features=1.0 only")
        trees = [estimator.tree_ for estimator in forest.estimators_]
        width = max(tree.node_count for tree in trees)
        shape = (len(trees), width)
        left = np.full(shape, _LEAF, dtype=np.intp)
        right = np.full(shape, _LEAF, dtype=np.intp)
        feature = np.zeros(shape, dtype=np.intp)
        threshold = np.zeros(shape)
        leaf_value = np.zeros(shape)
        for index, tree in enumerate(trees):
            count = tree.node_count
            left[index, :count] = tree.children_left
            right[index, :count] = tree.children_right
            feature[index, :count] = np.maximum(tree.feature, 0)     # leaves say -2
            threshold[index, :count] = tree.threshold
            leaf_value[index, :count] = (forest._decision_path_lengths[index]
                                         + forest._average_path_length_per_tree[index] - 1.0)
        self.depth = max(tree.max_depth for tree in trees)
        self.denominator = len(trees) * float(_average_path_length([forest._max_samples])[0])
        # Flat views: a node of tree t is t * width + node, and one 1-D take per array per level
        # is much cheaper than 2-D fancy indexing.
        self._offsets = (np.arange(len(trees)) * width)[None, :]
        offsets = self._offsets.T
        self._left = np.where(left == _LEAF, _LEAF, left + offsets).ravel()
        self._right = np.where(right == _LEAF, _LEAF, right + offsets).ravel()
        self._feature = feature.ravel()
        self._threshold = threshold.ravel()
        self._leaf_value = leaf_value.ravel()

    def score_samples(self, rows: np.ndarray) -> np.ndarray:
        """What ``IsolationForest.score_samples`` returns: minus the anomaly score (lower = odder)."""
        # The trees were grown on float32 and compare float32 features with float64 thresholds.
        rows = np.asarray(rows, dtype=np.float32).astype(np.float64)
        if np.isnan(rows).any():
            raise ValueError("rows with NaN: score them with scikit-learn, which routes missing values")
        n_features = rows.shape[1]
        row_base = (np.arange(rows.shape[0]) * n_features)[:, None]
        flat_rows = rows.ravel()
        node = np.repeat(self._offsets, rows.shape[0], axis=0)      # every tree's root, per row
        for _ in range(self.depth):
            left = self._left.take(node)
            inner = left != _LEAF
            if not inner.any():
                break
            goes_left = flat_rows.take(row_base + self._feature.take(node)) <= self._threshold.take(node)
            node = np.where(inner, np.where(goes_left, left, self._right.take(node)), node)
        depths = np.zeros(rows.shape[0])
        for column in self._leaf_value.take(node).T:    # tree by tree, as scikit-learn adds them
            depths += column
        if self.denominator == 0:
            # A forest grown on one sample: scikit-learn divides into ones there, 2 ** -1.
            return -np.full_like(depths, 0.5)
        return -(2.0 ** (-depths / self.denominator))
