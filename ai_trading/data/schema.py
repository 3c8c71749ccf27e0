"""The canonical bars frame: what every loader returns and every consumer expects.

A pandas DataFrame indexed by (``timestamp``: tz-aware UTC, ``symbol``: str) with float64 columns
``open, high, low, close, volume``, sorted by timestamp then symbol.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

BAR_COLUMNS: Final[tuple[str, ...]] = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS: Final[tuple[str, ...]] = ("open", "high", "low", "close")
INDEX_NAMES: Final[tuple[str, str]] = ("timestamp", "symbol")


def canonicalize(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` in canonical form: fixed column order, float64, UTC index, sorted.

    Row and column order of the input do not matter; the result is a new frame.
    """
    ts = pd.DatetimeIndex(frame.index.get_level_values("timestamp"))
    ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
    ts = ts.as_unit("ns")
    symbols = frame.index.get_level_values("symbol").astype(str)
    index = pd.MultiIndex.from_arrays([ts, symbols], names=list(INDEX_NAMES))
    values = frame.loc[:, list(BAR_COLUMNS)].to_numpy(dtype=np.float64, copy=True)
    out = pd.DataFrame(values, index=index, columns=list(BAR_COLUMNS))
    return out.sort_index(level=["timestamp", "symbol"], sort_remaining=False, kind="stable")


def symbols_of(frame: pd.DataFrame) -> list[str]:
    """Sorted distinct symbols of a canonical frame."""
    return sorted(frame.index.get_level_values("symbol").unique().tolist())
