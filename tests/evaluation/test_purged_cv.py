"""Purged k-fold and combinatorial purged k-fold against a brute-force reference of the definitions."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from ai_trading.errors import EvaluationError
from ai_trading.evaluation import CombinatorialPurgedKFold, PurgedKFold


def _labels(horizons: list[int]) -> pd.Series:
    """Integer bar times: observation i starts at bar i and its label ends at bar i + horizon_i."""
    return pd.Series([i + h for i, h in enumerate(horizons)], index=range(len(horizons)))


def _reference_train(t1: pd.Series, test: set[int], embargo: float) -> set[int]:
    """Spec, checked pair by pair: drop the test rows, every row whose closed span meets a test span,
    and after each contiguous test block the ceil(embargo * n) first rows starting after its last
    label end."""
    n = len(t1)
    t0v, t1v = list(t1.index), list(t1.values)
    purged = {
        i for i in range(n) if i not in test and any(t0v[i] <= t1v[j] and t0v[j] <= t1v[i] for j in test)
    }
    h = math.ceil(embargo * n - 1e-9) if embargo > 0 else 0
    if embargo > 0:
        h = max(h, 1)
    embargoed: set[int] = set()
    ordered = sorted(test)
    blocks: list[list[int]] = []
    for j in ordered:
        if blocks and blocks[-1][-1] == j - 1:
            blocks[-1].append(j)
        else:
            blocks.append([j])
    for block in blocks:
        end = max(t1v[j] for j in block)
        after = [i for i in range(n) if t0v[i] > end]
        embargoed.update(after[:h])
    return set(range(n)) - test - purged - embargoed


label_sets = st.lists(st.integers(min_value=0, max_value=8), min_size=12, max_size=60)
embargoes = st.sampled_from([0.0, 0.01, 0.05, 0.1])


@settings(max_examples=60, deadline=None)
@given(horizons=label_sets, n_splits=st.integers(2, 6), embargo=embargoes)
def test_purged_kfold_removes_exactly_overlaps_and_embargo(
    horizons: list[int], n_splits: int, embargo: float
) -> None:
    t1 = _labels(horizons)
    n = len(t1)
    cv = PurgedKFold(n_splits, t1, embargo)
    X = np.zeros((n, 1))
    tests = []
    try:
        splits = list(cv.split(X))
    except EvaluationError:  # everything purged: only allowed when the reference leaves nothing either
        folds = np.array_split(np.arange(n), n_splits)
        assert any(not _reference_train(t1, set(f.tolist()), embargo) for f in folds)
        return
    assert len(splits) == cv.get_n_splits() == n_splits
    for train, test in splits:
        tests.append(test)
        assert np.all(np.diff(test) == 1), "test fold is one contiguous block"
        # no training span overlaps a test span
        for i in train:
            for j in test:
                assert not (t1.index[i] <= t1.iloc[j] and t1.index[j] <= t1.iloc[i])
        # nothing else is removed, and embargoed rows are excluded
        assert set(train.tolist()) == _reference_train(t1, set(test.tolist()), embargo)
    np.testing.assert_array_equal(np.sort(np.concatenate(tests)), np.arange(n))


@settings(max_examples=40, deadline=None)
@given(
    horizons=label_sets,
    n_groups=st.integers(3, 6),
    k=st.integers(1, 3),
    embargo=embargoes,
)
def test_cpcv_splits_are_all_combinations_and_purged(
    horizons: list[int], n_groups: int, k: int, embargo: float
) -> None:
    k = min(k, n_groups - 1)
    t1 = _labels(horizons)
    n = len(t1)
    cv = CombinatorialPurgedKFold(n_groups, k, t1, embargo)
    groups = np.array_split(np.arange(n), n_groups)
    expected_tests = [np.concatenate([groups[g] for g in c]) for c in combinations(range(n_groups), k)]
    try:
        splits = list(cv.split(np.zeros((n, 2))))
    except EvaluationError:
        assert any(not _reference_train(t1, set(t.tolist()), embargo) for t in expected_tests)
        return
    assert len(splits) == math.comb(n_groups, k) == cv.get_n_splits()
    for (train, test), exp_test in zip(splits, expected_tests, strict=True):
        np.testing.assert_array_equal(test, exp_test)
        assert set(train.tolist()) == _reference_train(t1, set(test.tolist()), embargo)


def test_purged_kfold_hand_case_with_timestamps() -> None:
    # 20 daily rows, labels 2 days long (t1 = t0 + 2 days), 4 folds of 5, embargo 0.1 -> 2 rows
    # fold 2 tests rows 5..9: rows 3, 4 end on days 5, 6 (overlap the test start) -> purged;
    # rows 10, 11 start on or before day 11 = last test label end -> purged; rows 12, 13 embargoed
    idx = pd.date_range("2024-01-01", periods=20, freq="D", tz="UTC")
    t1 = pd.Series(idx + pd.Timedelta(days=2), index=idx)
    X = pd.DataFrame({"f": np.arange(20.0)}, index=idx)
    train, test = list(PurgedKFold(4, t1, embargo=0.1).split(X))[1]
    np.testing.assert_array_equal(test, np.arange(5, 10))
    np.testing.assert_array_equal(train, [0, 1, 2, 14, 15, 16, 17, 18, 19])


def test_zero_length_labels_no_embargo_is_plain_kfold() -> None:
    t1 = _labels([0] * 10)
    for train, test in PurgedKFold(5, t1).split(np.zeros(10)):
        np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(10))


def test_works_with_sklearn_cross_val_score() -> None:
    rng = np.random.default_rng(0)
    idx = pd.date_range("2023-01-02", periods=120, freq="h")
    t1 = pd.Series(idx + pd.Timedelta(hours=5), index=idx)
    X = pd.DataFrame(rng.normal(size=(120, 3)), index=idx)
    y = (X[0] + 0.1 * rng.normal(size=120) > 0).astype(int)
    for cv in (PurgedKFold(4, t1, 0.02), CombinatorialPurgedKFold(5, 2, t1, 0.02)):
        scores = cross_val_score(LogisticRegression(), X, y, cv=cv)
        assert scores.shape == (cv.get_n_splits(),)
        assert np.all(scores > 0.7)


@pytest.mark.parametrize(("n_groups", "k", "n_paths"), [(6, 2, 5), (10, 2, 9), (6, 3, 10), (5, 1, 1)])
def test_cpcv_path_count_and_structure(n_groups: int, k: int, n_paths: int) -> None:
    # phi = k / N * C(N, k): 2/6*15 = 5, 2/10*45 = 9, 3/6*20 = 10, 1/5*5 = 1
    cv = CombinatorialPurgedKFold(n_groups, k, _labels([1] * 40))
    paths = cv.backtest_paths()
    assert cv.get_n_paths() == n_paths
    assert paths.shape == (n_paths, n_groups)
    combos = list(combinations(range(n_groups), k))
    for g in range(n_groups):
        # the split feeding group g of each path tests g, and each such split feeds exactly one path
        assert all(g in combos[s] for s in paths[:, g])
        assert sorted(paths[:, g].tolist()) == [s for s, c in enumerate(combos) if g in c]


def test_cpcv_recombined_paths_cover_every_row_once() -> None:
    n = 37
    cv = CombinatorialPurgedKFold(6, 2, _labels([2] * n))
    preds = [test.astype(float) for _, test in cv.split(np.zeros(n))]  # prediction = row number
    out = cv.recombine_paths(preds)
    assert out.shape == (5, n)
    np.testing.assert_array_equal(out, np.tile(np.arange(n, dtype=float), (5, 1)))
    with pytest.raises(EvaluationError):
        cv.recombine_paths(preds[:-1])
    with pytest.raises(EvaluationError):
        cv.recombine_paths([p[:-1] for p in preds])


# --- bad input --------------------------------------------------------------------------------------------


def test_unsorted_t1_index_raises() -> None:
    with pytest.raises(EvaluationError, match="not sorted"):
        PurgedKFold(2, pd.Series([3, 4, 5, 6], index=[0, 2, 1, 3]))


def test_label_ending_before_start_raises() -> None:
    with pytest.raises(EvaluationError, match="ends before"):
        PurgedKFold(2, pd.Series([3, 0, 5, 6], index=[0, 1, 2, 3]))


def test_mixed_types_and_missing_times_raise() -> None:
    idx = pd.date_range("2024-01-01", periods=4)
    with pytest.raises(EvaluationError):
        PurgedKFold(2, pd.Series([1, 2, 3, 4], index=idx))
    with pytest.raises(EvaluationError):
        PurgedKFold(2, pd.Series(idx.tz_localize("UTC"), index=idx))
    with pytest.raises(EvaluationError):
        PurgedKFold(2, pd.Series([1.0, np.nan, 3.0, 4.0], index=[0, 1, 2, 3]))
    with pytest.raises(EvaluationError):
        PurgedKFold(2, [1, 2, 3])  # type: ignore[arg-type]


def test_misaligned_x_raises() -> None:
    t1 = _labels([1] * 10)
    with pytest.raises(EvaluationError, match="rows"):
        next(PurgedKFold(2, t1).split(np.zeros((9, 1))))
    X = pd.DataFrame({"a": range(10)}, index=range(1, 11))
    with pytest.raises(EvaluationError, match="index"):
        next(PurgedKFold(2, t1).split(X))


@pytest.mark.parametrize("embargo", [-0.1, 1.0, 2, math.nan])
def test_embargo_out_of_range_raises(embargo: float) -> None:
    with pytest.raises(EvaluationError, match="embargo"):
        PurgedKFold(2, _labels([1] * 10), embargo)


def test_too_few_observations_and_bad_split_counts_raise() -> None:
    with pytest.raises(EvaluationError, match="too few"):
        PurgedKFold(5, _labels([0] * 4))
    with pytest.raises(EvaluationError):
        PurgedKFold(1, _labels([0] * 4))
    with pytest.raises(EvaluationError):
        CombinatorialPurgedKFold(4, 4, _labels([0] * 8))
    with pytest.raises(EvaluationError, match="too few"):
        CombinatorialPurgedKFold(6, 2, _labels([0] * 5))


def test_everything_purged_raises() -> None:
    # every label spans the whole sample: nothing may train
    with pytest.raises(EvaluationError, match="empty training set"):
        next(PurgedKFold(2, pd.Series([100] * 6, index=range(6))).split(np.zeros(6)))
