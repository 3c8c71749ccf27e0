"""Data quality report: quirks that pass validation but change what a backtest means.

Validation (:mod:`ai_trading.data.validation`) rejects bars that are wrong; this module measures bars
that are legal but suspicious, so every run says what it was trained and evaluated on:

* ``open_equals_prev_close``: the share of session opens equal to the previous bar's close (every bar
  of daily or slower data; the first bar of each calendar day (UTC) of intraday data, since within a
  session the next minute often opens at the last price). A stale open makes "fill at the next open"
  a fill at the decision close: the bundled SP500 file has it on ~96 % of days from 1999 to 2005.
* zero-volume bars and the longest run of them;
* gaps: consecutive bars further apart than twice the bar frequency allows (more than two business
  days per bar's sessions between bars of daily or slower data, or more than two business days between
  sessions or twice the bar's duration within a session of intraday data), with the largest ones.

The rule ``open_equals_prev_close_fraction`` flags the calendar years of a symbol whose share exceeds
:attr:`QualityConfig.max_open_equals_prev_close`; ``action`` ``warn`` logs one WARNING per symbol,
``fail`` raises :class:`~ai_trading.errors.DataValidationError`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from ai_trading.data.frequency import DAILY_SESSION_SECONDS, BarFrequency
from ai_trading.errors import ConfigError, DataValidationError

log = logging.getLogger(__name__)

QualityAction = Literal["warn", "fail"]
LARGEST_GAPS: Final = 3


@dataclass(frozen=True)
class QualityConfig:
    """``data.quality``: the threshold of the ``open_equals_prev_close_fraction`` rule (share of session
    opens per calendar year, in [0, 1]) and what passing it does (``warn`` or ``fail``)."""

    max_open_equals_prev_close: float = 0.5
    action: QualityAction = "warn"

    def __post_init__(self) -> None:
        value = self.max_open_equals_prev_close
        if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
            raise ConfigError(f"data.quality.max_open_equals_prev_close={value!r}: must be a fraction in [0, 1]")
        if self.action not in ("warn", "fail"):
            raise ConfigError(f"data.quality.action={self.action!r}: must be 'warn' or 'fail'")


@dataclass(frozen=True)
class Gap:
    """Two consecutive bars of a symbol further apart than the frequency allows."""

    start: str  # ISO timestamp of the bar before the gap
    end: str  # ISO timestamp of the bar after it
    days: float  # calendar days between them


@dataclass(frozen=True)
class SymbolQuality:
    """The quality measures of one symbol (see the module docstring); fractions are NaN without a
    session open to compare."""

    symbol: str
    bars: int
    open_equals_prev_close: float
    open_equals_prev_close_by_year: dict[int, float]
    zero_volume_bars: int
    longest_zero_volume_run: int
    longest_zero_volume_run_start: str | None
    gaps: int
    largest_gaps: tuple[Gap, ...]

    def stale_open_years(self, threshold: float) -> dict[int, float]:
        """Calendar years whose share of stale opens exceeds ``threshold``."""
        return {y: f for y, f in self.open_equals_prev_close_by_year.items() if f > threshold}


@dataclass(frozen=True)
class DataQualityReport:
    """Per-symbol quality of a loaded dataset at its bar frequency."""

    frequency: str
    symbols: tuple[SymbolQuality, ...]

    def symbol(self, name: str) -> SymbolQuality:
        for entry in self.symbols:
            if entry.symbol == name:
                return entry
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN as None, year keys as strings)."""
        def clean(value: Any) -> Any:
            if isinstance(value, float) and not math.isfinite(value):
                return None
            if isinstance(value, dict):
                return {str(k): clean(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [clean(v) for v in value]
            return value

        return {"frequency": self.frequency, "symbols": {s.symbol: clean(asdict(s)) for s in self.symbols}}


def _longest_run(mask: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """Length and first index of the longest run of True (0, -1 when none)."""
    if not mask.any():
        return 0, -1
    padded = np.concatenate(([0], mask.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    starts, stops = edges[0::2], edges[1::2]
    best = int(np.argmax(stops - starts))
    return int(stops[best] - starts[best]), int(starts[best])


def _symbol_quality(symbol: str, bars: pd.DataFrame, frequency: BarFrequency) -> SymbolQuality:
    stamps = pd.DatetimeIndex(bars.index.get_level_values("timestamp")).as_unit("ns")
    days = stamps.normalize().tz_localize(None).to_numpy().astype("datetime64[D]")
    open_, close, volume = (bars[c].to_numpy() for c in ("open", "close", "volume"))
    intraday = frequency.kind == "intraday"
    later = np.arange(1, len(bars))
    if intraday:
        later = later[days[1:] != days[:-1]]  # first bar of each later session
    stale = open_[later] == close[later - 1]
    years = stamps.year.to_numpy()[later]
    by_year = {int(y): float(stale[years == y].mean()) for y in np.unique(years)}

    run, run_start = _longest_run(volume == 0.0)
    business = np.busday_count(days[:-1], days[1:])
    if intraday:
        step = np.diff(stamps.asi8) / 1e9
        is_gap = np.where(business > 0, business > 2, step > 2.0 * frequency.bar_seconds)
    else:
        is_gap = business > 2.0 * frequency.bar_seconds / DAILY_SESSION_SECONDS  # twice the sessions per bar
    where = np.flatnonzero(is_gap)
    spans = np.diff(stamps.asi8)[where] / 86_400e9
    top = where[np.argsort(-spans, kind="stable")[:LARGEST_GAPS]]
    return SymbolQuality(
        symbol=symbol,
        bars=len(bars),
        open_equals_prev_close=float(stale.mean()) if len(stale) else math.nan,
        open_equals_prev_close_by_year=by_year,
        zero_volume_bars=int((volume == 0.0).sum()),
        longest_zero_volume_run=run,
        longest_zero_volume_run_start=stamps[run_start].isoformat() if run else None,
        gaps=len(where),
        largest_gaps=tuple(Gap(stamps[i].isoformat(), stamps[i + 1].isoformat(),
                               float((stamps.asi8[i + 1] - stamps.asi8[i]) / 86_400e9)) for i in top),
    )


def quality_report(frame: pd.DataFrame, frequency: BarFrequency) -> DataQualityReport:
    """The :class:`DataQualityReport` of a validated canonical frame at ``frequency``."""
    # Rows of each symbol from the index's integer codes: comparing every row's symbol string once per
    # symbol would be quadratic in the universe.
    index = frame.index
    assert isinstance(index, pd.MultiIndex)
    codes = np.asarray(index.codes[index.names.index("symbol")])
    level = index.levels[index.names.index("symbol")]
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(level)))])
    entries = tuple(
        _symbol_quality(str(level[code]), frame.iloc[order[bounds[code]:bounds[code + 1]]], frequency)
        for code in sorted(range(len(level)), key=lambda c: str(level[c])) if bounds[code + 1] > bounds[code])
    return DataQualityReport(frequency=frequency.label, symbols=entries)


def check_quality(report: DataQualityReport, config: QualityConfig, *, source: str | None = None) -> None:
    """Apply the ``open_equals_prev_close_fraction`` rule: one WARNING per offending symbol, or raise."""
    threshold = config.max_open_equals_prev_close
    for entry in report.symbols:
        years = entry.stale_open_years(threshold)
        if not years:
            continue
        listed = ", ".join(f"{y} ({f:.2f})" for y, f in years.items())
        detail = (f"the open equals the previous close on {entry.open_equals_prev_close:.2f} of session opens, "
                  f"above {threshold:g} in {listed}: there a fill at the next open is a fill at the decision "
                  "close")
        if config.action == "fail":
            raise DataValidationError("open_equals_prev_close_fraction",
                                      f"{detail} (start the data after these years, or set data.quality.action=warn)",
                                      symbol=entry.symbol, source=source)
        log.warning("data quality rule=open_equals_prev_close_fraction symbol=%s fraction=%.2f years=%s: %s",
                    entry.symbol, entry.open_equals_prev_close, ",".join(str(y) for y in years), detail)


__all__ = ["DataQualityReport", "Gap", "QualityConfig", "SymbolQuality", "check_quality", "quality_report"]
