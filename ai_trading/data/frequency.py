"""The bar frequency of a dataset: the one rule that annualises metrics and sizes a bar in trading time.

:func:`infer_frequency` classifies timestamps by their median spacing. Bars at least 12 hours apart are
classified by the median number of business days (Monday to Friday) between consecutive bars, so
weekends and most holidays do not disturb it:

* ``daily``: about 1 business day apart; 252 periods a year, one 6.5 h session per bar;
* ``weekly``: about 5 (4 to 6) business days apart; 52 periods a year;
* ``monthly``: about 21 (18 to 24) business days apart; 12 periods a year;
* ``intraday``: less than 12 hours apart; ``252 * bars per session`` periods a year, with bars per
  session the median count of bars per calendar day (UTC), and a bar lasts the median spacing.

Any other spacing (every other day, twice a week, quarterly) is an error unless an explicit
``periods_per_year`` says how to annualise it. A dataset with bars on weekends (crypto) classifies as
daily with 252 periods a year; give ``periods_per_year: 365`` for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import pandas as pd

from ai_trading.errors import ConfigError, DataValidationError

TRADING_DAYS_PER_YEAR: Final = 252
DAILY_SESSION_SECONDS: Final = 6.5 * 3600.0
INTRADAY_BELOW_SECONDS: Final = 12 * 3600.0

FrequencyKind = Literal["intraday", "daily", "weekly", "monthly", "custom"]

# (kind, label, periods per year, lowest and highest median business-day spacing)
_CALENDAR_KINDS: Final[tuple[tuple[FrequencyKind, str, int, float, float], ...]] = (
    ("daily", "1d", TRADING_DAYS_PER_YEAR, 0.5, 1.5),
    ("weekly", "1w", 52, 4.0, 6.0),
    ("monthly", "1mo", 12, 18.0, 24.0),
)


@dataclass(frozen=True)
class BarFrequency:
    """How often bars come and what that means for annualisation and execution.

    ``periods_per_year`` annualises returns; ``bar_seconds`` is the trading time one bar spans (the
    spacing for intraday bars, ``252 / periods_per_year`` sessions of 6.5 h otherwise), which prices
    latency in the simulator; ``label`` (``"1d"``, ``"1w"``, ``"1mo"``, ``"5min"``) describes the data's
    spacing, whatever ``periods_per_year`` says, and enters the dataset fingerprint. ``kind`` is
    ``custom`` for spacing that fits no kind and is annualised by an explicit ``periods_per_year``.
    """

    kind: FrequencyKind
    periods_per_year: float
    bar_seconds: float
    label: str

    def __post_init__(self) -> None:
        for name in ("periods_per_year", "bar_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"bar frequency {name}={value!r}: must be a positive finite number")


@dataclass(frozen=True)
class _Spacing:
    seconds: float  # median spacing
    business_days: float  # median business days between bars (meaningful for bars >= 12 h apart)
    bars_per_day: float  # median bars per calendar day (UTC)


def _run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Positions where a new value starts in a sorted array (``np.unique`` would hash every value again)."""
    starts = np.empty(len(sorted_values), dtype=bool)
    starts[:1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=starts[1:])
    return np.flatnonzero(starts)


def _spacing(stamps: pd.DatetimeIndex) -> _Spacing | None:
    ns = np.sort(stamps.as_unit("ns").asi8, kind="stable")  # usually sorted already: linear
    ns = ns[_run_starts(ns)]
    if len(ns) < 2:
        return None
    seconds = float(np.median(np.diff(ns))) / 1e9
    days = pd.DatetimeIndex(ns, tz=stamps.tz).normalize().tz_localize(None).to_numpy().astype("datetime64[D]")
    business = float(np.median(np.busday_count(days[:-1], days[1:])))
    per_day = float(np.median(np.diff(np.append(_run_starts(days), len(days)))))
    return _Spacing(seconds=seconds, business_days=business, bars_per_day=per_day)


def _describe(seconds: float) -> str:
    if seconds >= 86_400:
        return f"{seconds / 86_400:g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:g} hours"
    return f"{seconds:g} seconds"


def _label_of(spacing: _Spacing) -> str:
    if spacing.seconds < INTRADAY_BELOW_SECONDS:
        return f"{int(spacing.seconds // 60)}min" if spacing.seconds >= 60 else f"{int(spacing.seconds)}s"
    for _, label, _, low, high in _CALENDAR_KINDS:
        if low <= spacing.business_days <= high:
            return label
    return f"{spacing.business_days:g}bd"


def frequency_label(timestamps: pd.DatetimeIndex) -> str:
    """The label of :func:`infer_frequency` for any timestamps: ``"unknown"`` for a single timestamp and
    ``"<n>bd"`` (median business days) for spacing that fits no kind, so a fingerprint never fails."""
    spacing = _spacing(pd.DatetimeIndex(timestamps))
    return "unknown" if spacing is None else _label_of(spacing)


def infer_frequency(timestamps: pd.DatetimeIndex, periods_per_year: float | None = None) -> BarFrequency:
    """The :class:`BarFrequency` of ``timestamps`` (all bars of all symbols; duplicates count once).

    ``periods_per_year`` overrides the annualisation (the kind and the bar's duration still come from the
    data). Raises :class:`~ai_trading.errors.DataValidationError` (rule ``bar_frequency``) naming the
    spacing found when it fits no kind and no ``periods_per_year`` is given, or when there are fewer than
    two distinct timestamps; :class:`~ai_trading.errors.ConfigError` for a non-positive override.
    """
    if periods_per_year is not None and not (math.isfinite(periods_per_year) and periods_per_year > 0):
        raise ConfigError(f"data.periods_per_year={periods_per_year!r}: must be a positive number or null")
    spacing = _spacing(pd.DatetimeIndex(timestamps))
    if spacing is None:
        if periods_per_year is None:
            raise DataValidationError("bar_frequency", "fewer than two distinct timestamps: the bar frequency "
                                      "cannot be inferred (set data.periods_per_year)")
        ppy = float(periods_per_year)
        return BarFrequency("custom", ppy, TRADING_DAYS_PER_YEAR * DAILY_SESSION_SECONDS / ppy, "unknown")
    label = _label_of(spacing)
    if spacing.seconds < INTRADAY_BELOW_SECONDS:
        natural = TRADING_DAYS_PER_YEAR * spacing.bars_per_day
        ppy = natural if periods_per_year is None else float(periods_per_year)
        return BarFrequency("intraday", ppy, spacing.seconds, label)
    for kind, kind_label, natural_ppy, _, _ in _CALENDAR_KINDS:
        if label == kind_label:
            ppy = float(natural_ppy) if periods_per_year is None else float(periods_per_year)
            seconds = TRADING_DAYS_PER_YEAR * DAILY_SESSION_SECONDS / natural_ppy
            return BarFrequency(kind, ppy, seconds, label)
    if periods_per_year is None:
        raise DataValidationError(
            "bar_frequency",
            f"median spacing of {_describe(spacing.seconds)} ({spacing.business_days:g} business days) fits "
            "none of intraday (< 12 hours), daily (~1 business day), weekly (~5) or monthly (~21): "
            "resample the bars or set data.periods_per_year",
        )
    ppy = float(periods_per_year)
    return BarFrequency("custom", ppy, TRADING_DAYS_PER_YEAR * DAILY_SESSION_SECONDS / ppy, label)


__all__ = ["DAILY_SESSION_SECONDS", "TRADING_DAYS_PER_YEAR", "BarFrequency", "frequency_label", "infer_frequency"]
