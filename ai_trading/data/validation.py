"""Validation rules for bars. Every broken rule of a frame (one file) is reported at once, each with the
symbol, the first timestamp and how many rows break it; the error names the file."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ai_trading.data.schema import BAR_COLUMNS, INDEX_NAMES, PRICE_COLUMNS
from ai_trading.errors import DataDefects, DataValidationError


def _first(frame: pd.DataFrame, mask: np.ndarray) -> tuple[str, object]:
    pos = int(np.flatnonzero(mask)[0])
    ts, sym = frame.index[pos]
    return str(sym), ts


def _rows(mask: np.ndarray) -> str:
    n = int(np.count_nonzero(mask))
    return f"{n} row" if n == 1 else f"{n} rows"


class Defect(NamedTuple):
    """One broken rule: the rule, what is wrong, and where it first happens."""

    rule: str
    detail: str
    symbol: str | None = None
    timestamp: Any = None


def raise_defects(defects: Sequence[Defect], source: str | None) -> None:
    """Raise every defect found in ``source`` at once (one as a plain :class:`DataValidationError`, several as
    :class:`~ai_trading.errors.DataDefects`); nothing when there are none."""
    if len(defects) == 1:
        rule, detail, symbol, timestamp = defects[0]
        raise DataValidationError(rule, detail, symbol=symbol, timestamp=timestamp, source=source)
    if defects:
        raise DataDefects([DataValidationError(d.rule, d.detail, symbol=d.symbol, timestamp=d.timestamp)
                           for d in defects], source=source)


def bar_defects(frame: pd.DataFrame, *, absent: Collection[str] = ()) -> list[Defect]:
    """Every rule ``frame`` breaks, without a source. Columns in ``absent`` (missing from the file, or not
    numbers) are skipped, and so is every rule that needs them."""
    if tuple(frame.index.names) != INDEX_NAMES:
        return [Defect("schema", f"index must be {INDEX_NAMES}, got {tuple(frame.index.names)}")]
    if tuple(frame.columns) != BAR_COLUMNS:
        return [Defect("schema", f"columns must be {BAR_COLUMNS}, got {tuple(frame.columns)}")]
    defects: list[Defect] = []
    bad_dtypes = {c: str(t) for c, t in frame.dtypes.items() if t != np.float64}
    if bad_dtypes:
        defects.append(Defect("schema", f"columns must be float64, got {bad_dtypes}"))
    ts = frame.index.get_level_values("timestamp")
    if not isinstance(ts, pd.DatetimeIndex) or str(ts.tz) != "UTC":
        defects.append(Defect("schema", "timestamp level must be tz-aware UTC"))
    if defects:
        return defects
    if frame.empty:
        return [Defect("empty", "no bars in the selection")]

    values = frame.to_numpy()
    present = [c not in absent for c in BAR_COLUMNS]
    for i, col in enumerate(BAR_COLUMNS):
        non_finite = ~np.isfinite(values[:, i])
        if present[i] and non_finite.any():
            sym, when = _first(frame, non_finite)
            defects.append(Defect("non_finite", f"column {col} is NaN or inf in {_rows(non_finite)}",
                                               symbol=sym, timestamp=when))
    o, h, low, c, v = (values[:, i] for i in range(5))
    has = dict(zip(BAR_COLUMNS, present, strict=True))
    price_cols = [i for i, col in enumerate(PRICE_COLUMNS) if has[col]]
    checks: list[tuple[str, np.ndarray, str]] = []
    if price_cols:
        checks.append(("non_positive_price", np.asarray((values[:, price_cols] <= 0).any(axis=1)),
                       "a price is zero or negative"))
    if has["volume"]:
        checks.append(("negative_volume", v < 0, "volume is negative"))
    if has["high"] and has["open"] and has["close"]:
        checks.append(("high_below_open_close", h < np.maximum(o, c), "high is below max(open, close)"))
    if has["low"] and has["open"] and has["close"]:
        checks.append(("low_above_open_close", low > np.minimum(o, c), "low is above min(open, close)"))
    for rule, mask, detail in checks:
        if mask.any():
            sym, when = _first(frame, mask)
            defects.append(Defect(rule, f"{detail} in {_rows(mask)}", symbol=sym, timestamp=when))

    dup = frame.index.duplicated()
    if dup.any():
        sym, when = _first(frame, dup)
        defects.append(Defect(
            "duplicate_timestamp", f"timestamp appears twice for the symbol in {_rows(dup)}", symbol=sym,
            timestamp=when))
    if not frame.index.is_monotonic_increasing:
        defects.append(Defect("unsorted", "bars must be sorted by timestamp then symbol"))
    return defects


def validate_bars(frame: pd.DataFrame, *, source: str | None = None) -> pd.DataFrame:
    """Check a canonical bars frame against every rule and return it unchanged; one error lists every rule it
    breaks (:class:`~ai_trading.errors.DataDefects` when there are several).

    Rules: ``schema`` (index names, columns, dtypes, tz-aware UTC), ``empty``, ``non_finite``
    (NaN or inf), ``non_positive_price``, ``negative_volume``, ``high_below_open_close``,
    ``low_above_open_close``, ``duplicate_timestamp`` and ``unsorted``.
    """
    raise_defects(bar_defects(frame), source)
    return frame
