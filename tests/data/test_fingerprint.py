"""dataset_fingerprint: full SHA-256, sensitive to every cell, blind to input order, stable across processes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_trading.data import DataConfig, dataset_fingerprint, load, load_bars

BARS = load_bars(["SP500", "NVDA"], start="2012-01-01", end="2012-06-30")
BASE = dataset_fingerprint(BARS)


def test_fingerprint_is_full_sha256_hex() -> None:
    assert len(BASE) == 64
    int(BASE, 16)


@settings(max_examples=60, deadline=None)
@given(row=st.integers(0, len(BARS) - 1), col=st.integers(0, 4), factor=st.floats(1e-6, 0.5))
def test_fingerprint_one_changed_cell_changes_it(row: int, col: int, factor: float) -> None:
    changed = BARS.copy()
    changed.iloc[row, col] = changed.iloc[row, col] * (1.0 + factor)
    assert dataset_fingerprint(changed) != BASE


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_fingerprint_row_and_column_order_of_input_does_not_matter(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shuffled = BARS.iloc[rng.permutation(len(BARS))]
    shuffled = shuffled[list(rng.permutation(list(BARS.columns)))]
    assert dataset_fingerprint(shuffled) == BASE


def test_fingerprint_changes_with_selection_of_rows() -> None:
    assert dataset_fingerprint(BARS.iloc[1:]) != BASE
    assert dataset_fingerprint(BARS.iloc[:-1]) != BASE


def test_fingerprint_changes_when_symbol_renamed() -> None:
    renamed = BARS.rename(index={"NVDA": "NVDX"}, level="symbol")
    assert dataset_fingerprint(renamed) != BASE


def test_fingerprint_identical_in_another_process_with_other_hash_seed() -> None:
    code = (
        "from ai_trading.data import load_bars, dataset_fingerprint;"
        "print(dataset_fingerprint(load_bars(['NVDA', 'SP500'], start='2012-01-01', end='2012-06-30')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""}).stdout.strip()
    assert out == BASE


def test_load_fingerprint_matches_frame_fingerprint_and_ignores_request_spelling() -> None:
    a = load(DataConfig(symbols=["SP500", "NVDA"], start="2012-01-01", end="2012-06-30"))
    b = load(DataConfig(symbols=["NVDA", "SP500", "NVDA"], start="2011-12-31", end="2012-06-30 12:00"))
    assert a.fingerprint == b.fingerprint == BASE


def test_fingerprint_differs_between_symbols_with_equal_values() -> None:
    one = BARS.xs("SP500", level="symbol", drop_level=False)
    other = one.rename(index={"SP500": "COPY"}, level="symbol")
    assert dataset_fingerprint(one) != dataset_fingerprint(other)
    assert dataset_fingerprint(pd.concat([one])) == dataset_fingerprint(one)
