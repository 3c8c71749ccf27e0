"""Cross-validation for labels that span time: purged k-fold and combinatorial purged k-fold.

A financial label is known only at the end of its horizon: observation ``i`` is decided at ``t0_i``
and its label uses prices up to ``t1_i``. Plain k-fold leaks: a training label whose span overlaps a
test label's span saw the same prices. Following Lopez de Prado, *Advances in Financial Machine
Learning* (AFML), ch. 7 and 12:

* **Purging** removes from the training set every observation whose closed span ``[t0_i, t1_i]``
  intersects the span of any test observation.
* **Embargo** then removes the ``h = ceil(embargo * n_samples)`` observations that follow each test
  block's label horizon, i.e. the first ``h`` observations whose ``t0`` is after the block's last
  ``t1`` (AFML 7.4.2: the embargo runs from the end of the test labels, because features such as
  moving averages computed just after the test period still carry its information). ``embargo`` is a
  fraction of the number of observations in ``[0, 1)``; the ceiling makes any positive embargo remove
  at least one observation. Nothing is embargoed before a test block.

``t1`` is a pandas Series indexed by ``t0`` (sorted, non-decreasing) whose values are the label end
times ``t1 >= t0``; both timestamps (naive or tz-aware, but the same kind) or both numbers (e.g. bar
numbers). Its rows are the rows of ``X``, in the same order.

Both splitters follow scikit-learn's cross-validator protocol (``split(X, y=None, groups=None)``,
``get_n_splits``), so they can be passed as ``cv=`` to ``cross_val_score`` and friends.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.model_selection import BaseCrossValidator

from ai_trading.errors import EvaluationError

logger = logging.getLogger(__name__)

IntArray = npt.NDArray[np.intp]

__all__ = ["CombinatorialPurgedKFold", "PurgedKFold"]


def _label_times(t1: pd.Series) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Validated ``(t0, t1)`` as comparable numeric arrays (int64 ns for timestamps, float otherwise)."""
    if not isinstance(t1, pd.Series):
        raise EvaluationError(f"t1 must be a pandas Series indexed by t0, got {type(t1).__name__}")
    if len(t1) == 0:
        raise EvaluationError("t1 is empty")
    idx = t1.index
    if isinstance(idx, pd.DatetimeIndex):
        if not pd.api.types.is_datetime64_any_dtype(t1.dtype):
            raise EvaluationError(
                f"t1: index holds timestamps but values are {t1.dtype}; use timestamps for both"
            )
        vals = pd.DatetimeIndex(t1)
        if (idx.tz is None) != (vals.tz is None):
            raise EvaluationError("t1: index and values mix tz-aware and naive timestamps")
        if idx.hasnans or vals.hasnans:
            raise EvaluationError("t1: missing (NaT) label start or end time")
        t0_arr = idx.as_unit("ns").asi8
        t1_arr = vals.as_unit("ns").asi8
    elif pd.api.types.is_numeric_dtype(idx.dtype) and pd.api.types.is_numeric_dtype(t1.dtype):
        t0_arr = idx.to_numpy(dtype=np.float64)
        t1_arr = t1.to_numpy(dtype=np.float64)
        if not (np.isfinite(t0_arr).all() and np.isfinite(t1_arr).all()):
            raise EvaluationError("t1: missing or non-finite label start or end time")
    else:
        raise EvaluationError(
            f"t1: index ({idx.dtype}) and values ({t1.dtype}) must both be timestamps or both numbers"
        )
    if (np.diff(t0_arr) < 0).any():
        pos = int(np.argmax(np.diff(t0_arr) < 0)) + 1
        raise EvaluationError(
            f"t1: index (t0) is not sorted; position {pos} ({idx[pos]}) precedes its predecessor"
        )
    if (t1_arr < t0_arr).any():
        pos = int(np.argmax(t1_arr < t0_arr))
        raise EvaluationError(
            f"t1: label ends before it starts at position {pos} (t0={idx[pos]}, t1={t1.iloc[pos]})"
        )
    return t0_arr, t1_arr


def _check_embargo(embargo: float) -> float:
    if not (isinstance(embargo, int | float) and math.isfinite(embargo) and 0.0 <= embargo < 1.0):
        raise EvaluationError(f"embargo must be a fraction of observations in [0, 1), got {embargo!r}")
    return float(embargo)


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` runs of True in a boolean mask."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


class _PurgedSplitter(BaseCrossValidator):
    """Shared validation, purging and embargo; subclasses choose the test blocks."""

    def __init__(self, t1: pd.Series, embargo: float = 0.0) -> None:
        self._t0_arr, self._t1_arr = _label_times(t1)
        self.t1 = t1
        self.embargo = _check_embargo(embargo)

    def __repr__(self) -> str:
        params = {k: v for k, v in self.get_params().items() if k != "t1"}
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items()))
        return f"{type(self).__name__}({shown}, n_samples={self.n_samples})"

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor arguments, as scikit-learn's ``clone`` / ``repr`` expect."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    @property
    def n_samples(self) -> int:
        """Number of observations (rows of ``X``)."""
        return len(self.t1)

    @property
    def embargo_size(self) -> int:
        """Observations embargoed after each test block: ``ceil(embargo * n_samples)``."""
        if self.embargo == 0.0:
            return 0
        # the tolerance keeps float noise (0.1 * 30 = 3.0000000000000004) from adding a row
        return max(1, math.ceil(self.embargo * self.n_samples - 1e-9))

    def _check_x(self, X: Any) -> None:
        n = X.shape[0] if hasattr(X, "shape") else len(X)
        if n != self.n_samples:
            raise EvaluationError(
                f"X has {n} rows but t1 has {self.n_samples}; they must describe the same rows"
            )
        index = getattr(X, "index", None)
        if isinstance(index, pd.Index) and not index.equals(self.t1.index):
            raise EvaluationError("X.index does not match t1.index (same rows, same order required)")

    def _groups(self, n_groups: int) -> list[IntArray]:
        if self.n_samples < n_groups:
            raise EvaluationError(f"too few observations: {self.n_samples} for {n_groups} groups")
        return [np.asarray(g, dtype=np.intp) for g in np.array_split(np.arange(self.n_samples), n_groups)]

    def _train_indices(self, test_mask: npt.NDArray[np.bool_]) -> IntArray:
        """Indices not in the test set, minus purged and embargoed observations."""
        t0, t1 = self._t0_arr, self._t1_arr
        train = ~test_mask
        h = self.embargo_size
        for start, stop in _runs(test_mask):
            lo, hi = t0[start], t1[start:stop].max()
            # Exact for a contiguous block of sorted t0: earlier rows overlap iff t1_i >= lo, later
            # rows iff t0_i <= hi, and the block's bounding span [lo, hi] expresses both.
            train &= ~((t0 <= hi) & (t1 >= lo))
            after = int(np.searchsorted(t0, hi, side="right"))  # first row starting after the labels end
            train[after : after + h] = False
        idx = np.flatnonzero(train).astype(np.intp)
        if idx.size == 0:
            raise EvaluationError(
                "purging and embargo left an empty training set; use more observations or groups"
            )
        return idx

    def _split_masks(self) -> Iterator[npt.NDArray[np.bool_]]:
        raise NotImplementedError

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[tuple[IntArray, IntArray]]:
        """Yield ``(train_indices, test_indices)`` positional arrays, both sorted ascending."""
        self._check_x(X)
        for k, test_mask in enumerate(self._split_masks()):
            test = np.flatnonzero(test_mask).astype(np.intp)
            train = self._train_indices(test_mask)
            logger.debug(
                "purged_split split=%d n_train=%d n_test=%d n_removed=%d",
                k,
                train.size,
                test.size,
                self.n_samples - train.size - test.size,
            )
            yield train, test


class PurgedKFold(_PurgedSplitter):
    """K-fold over contiguous blocks, with purging and an embargo (AFML 7.4).

    The ``n_splits`` test folds are contiguous blocks in time order (``np.array_split`` of the rows,
    as scikit-learn's unshuffled ``KFold``); the training set is every other row minus the rows whose
    label span overlaps the test fold's and the embargoed rows after it. Training rows both before and
    after the test fold are used.
    """

    def __init__(self, n_splits: int = 5, t1: pd.Series | None = None, embargo: float = 0.0) -> None:
        if t1 is None:
            raise EvaluationError("PurgedKFold needs t1, the label end time of every observation")
        if not (isinstance(n_splits, int | np.integer) and n_splits >= 2):
            raise EvaluationError(f"n_splits must be an integer >= 2, got {n_splits!r}")
        super().__init__(t1, embargo)
        self.n_splits = int(n_splits)
        if self.n_samples < self.n_splits:
            raise EvaluationError(f"too few observations: {self.n_samples} for {self.n_splits} folds")

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """Number of folds."""
        return self.n_splits

    def _split_masks(self) -> Iterator[npt.NDArray[np.bool_]]:
        for g in self._groups(self.n_splits):
            mask = np.zeros(self.n_samples, dtype=bool)
            mask[g] = True
            yield mask


class CombinatorialPurgedKFold(_PurgedSplitter):
    """Combinatorial purged cross-validation (AFML ch. 12).

    The rows are cut into ``n_groups`` (N) contiguous groups; each of the ``C(N, k)`` splits tests on
    one combination of ``n_test_groups`` (k) groups, in ``itertools.combinations`` order, and trains
    on the rest after purging and embargo. Every group is tested in ``C(N-1, k-1)`` splits, so the
    test predictions recombine into ``phi = k / N * C(N, k) = C(N-1, k-1)`` complete backtest paths
    (see :meth:`backtest_paths`): a strategy gets a distribution of out-of-sample Sharpe ratios
    rather than the single number of a walk-forward.
    """

    def __init__(
        self, n_groups: int = 6, n_test_groups: int = 2, t1: pd.Series | None = None, embargo: float = 0.0
    ) -> None:
        if t1 is None:
            raise EvaluationError(
                "CombinatorialPurgedKFold needs t1, the label end time of every observation"
            )
        if not (isinstance(n_groups, int | np.integer) and n_groups >= 2):
            raise EvaluationError(f"n_groups must be an integer >= 2, got {n_groups!r}")
        if not (isinstance(n_test_groups, int | np.integer) and 1 <= n_test_groups < n_groups):
            raise EvaluationError(f"n_test_groups must be an integer in [1, n_groups), got {n_test_groups!r}")
        super().__init__(t1, embargo)
        self.n_groups = int(n_groups)
        self.n_test_groups = int(n_test_groups)
        if self.n_samples < self.n_groups:
            raise EvaluationError(f"too few observations: {self.n_samples} for {self.n_groups} groups")

    @property
    def combinations(self) -> list[tuple[int, ...]]:
        """Test groups of each split, in split order."""
        return list(itertools.combinations(range(self.n_groups), self.n_test_groups))

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """``C(n_groups, n_test_groups)``."""
        return math.comb(self.n_groups, self.n_test_groups)

    def get_n_paths(self) -> int:
        """Number of backtest paths: ``phi = k / N * C(N, k) = C(N - 1, k - 1)``."""
        return math.comb(self.n_groups - 1, self.n_test_groups - 1)

    def _split_masks(self) -> Iterator[npt.NDArray[np.bool_]]:
        groups = self._groups(self.n_groups)
        for combo in self.combinations:
            mask = np.zeros(self.n_samples, dtype=bool)
            for g in combo:
                mask[groups[g]] = True
            yield mask

    def backtest_paths(self) -> IntArray:
        """Which split's test predictions fill each group of each path: shape ``(n_paths, n_groups)``.

        Entry ``[p, g]`` is the index (in :meth:`split` order) of the split whose predictions on group
        ``g`` belong to path ``p``. Group ``g`` is tested by ``n_paths`` splits; the ``j``-th of them, in
        split order, goes to path ``j``. Every path therefore covers each group exactly once, and every
        (split, test group) pair is used by exactly one path.
        """
        paths = np.full((self.get_n_paths(), self.n_groups), -1, dtype=np.intp)
        seen = np.zeros(self.n_groups, dtype=np.intp)
        for s, combo in enumerate(self.combinations):
            for g in combo:
                paths[seen[g], g] = s
                seen[g] += 1
        return paths

    def recombine_paths(self, split_predictions: Sequence[npt.ArrayLike]) -> npt.NDArray[np.float64]:
        """Assemble per-split test predictions (or returns) into full paths: shape ``(n_paths, n_samples)``.

        ``split_predictions[s]`` holds split ``s``'s values on its test indices, in the order
        :meth:`split` yields them (ascending). Row ``p`` of the result is backtest path ``p``; compute a
        Sharpe ratio per row to get the out-of-sample distribution.
        """
        n_splits = self.get_n_splits()
        if len(split_predictions) != n_splits:
            raise EvaluationError(f"expected predictions for {n_splits} splits, got {len(split_predictions)}")
        groups = self._groups(self.n_groups)
        per_split: list[dict[int, npt.NDArray[np.float64]]] = []
        for s, (combo, values) in enumerate(zip(self.combinations, split_predictions, strict=True)):
            arr = np.asarray(values, dtype=np.float64)
            expected = sum(groups[g].size for g in combo)
            if arr.shape != (expected,):
                raise EvaluationError(f"split {s}: expected {expected} test values, got shape {arr.shape}")
            offsets = np.cumsum([0] + [groups[g].size for g in combo])
            per_split.append({g: arr[offsets[i] : offsets[i + 1]] for i, g in enumerate(combo)})
        out = np.empty((self.get_n_paths(), self.n_samples), dtype=np.float64)
        for p, row in enumerate(self.backtest_paths()):
            for g, s in enumerate(row):
                out[p, groups[g]] = per_split[s][g]
        return out
