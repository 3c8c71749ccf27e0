"""Validation rules for bars. Every rule fails fast with the symbol, the timestamp and the rule name."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ai_trading.data.schema import BAR_COLUMNS, INDEX_NAMES, PRICE_COLUMNS
from ai_trading.errors import DataValidationError


def _first(frame: pd.DataFrame, mask: np.ndarray) -> tuple[str, object]:
    pos = int(np.flatnonzero(mask)[0])
    ts, sym = frame.index[pos]
    return str(sym), ts


def validate_bars(frame: pd.DataFrame, *, source: str | None = None) -> pd.DataFrame:
    """Check a canonical bars frame against every rule and return it unchanged.

    Rules: ``schema`` (index names, columns, dtypes, tz-aware UTC), ``empty``, ``non_finite``
    (NaN or inf), ``non_positive_price``, ``negative_volume``, ``high_below_open_close``,
    ``low_above_open_close``, ``duplicate_timestamp`` and ``unsorted``.
    """
    if tuple(frame.index.names) != INDEX_NAMES:
        raise DataValidationError(
            "schema", f"index must be {INDEX_NAMES}, got {tuple(frame.index.names)}", source=source
        )
    if tuple(frame.columns) != BAR_COLUMNS:
        raise DataValidationError(
            "schema", f"columns must be {BAR_COLUMNS}, got {tuple(frame.columns)}", source=source
        )
    bad_dtypes = {c: str(t) for c, t in frame.dtypes.items() if t != np.float64}
    if bad_dtypes:
        raise DataValidationError("schema", f"columns must be float64, got {bad_dtypes}", source=source)
    ts = frame.index.get_level_values("timestamp")
    if not isinstance(ts, pd.DatetimeIndex) or str(ts.tz) != "UTC":
        raise DataValidationError("schema", "timestamp level must be tz-aware UTC", source=source)
    if frame.empty:
        raise DataValidationError("empty", "no bars in the selection", source=source)

    values = frame.to_numpy()
    non_finite = ~np.isfinite(values)
    if non_finite.any():
        row = non_finite.any(axis=1)
        sym, when = _first(frame, row)
        col = BAR_COLUMNS[int(np.flatnonzero(non_finite[np.flatnonzero(row)[0]])[0])]
        raise DataValidationError(
            "non_finite", f"column {col} is NaN or inf", symbol=sym, timestamp=when, source=source
        )
    o, h, low, c, v = (values[:, i] for i in range(5))
    prices = values[:, : len(PRICE_COLUMNS)]
    checks: list[tuple[str, np.ndarray, str]] = [
        ("non_positive_price", np.asarray((prices <= 0).any(axis=1)), "a price is zero or negative"),
        ("negative_volume", v < 0, "volume is negative"),
        ("high_below_open_close", h < np.maximum(o, c), "high is below max(open, close)"),
        ("low_above_open_close", low > np.minimum(o, c), "low is above min(open, close)"),
    ]
    for rule, mask, detail in checks:
        if mask.any():
            sym, when = _first(frame, mask)
            raise DataValidationError(rule, detail, symbol=sym, timestamp=when, source=source)

    dup = frame.index.duplicated()
    if dup.any():
        sym, when = _first(frame, dup)
        raise DataValidationError(
            "duplicate_timestamp", "timestamp appears twice for the symbol", symbol=sym, timestamp=when,
            source=source,
        )
    if not frame.index.is_monotonic_increasing:
        raise DataValidationError("unsorted", "bars must be sorted by timestamp then symbol", source=source)
    return frame
