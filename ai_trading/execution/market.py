"""Wide T x N market arrays and the flat cost parameters shared by every execution path.

Built once from the canonical bars frame; the vectorised paths, the numba kernels and the per-order
simulator all read the same arrays, so they cannot disagree about prices, spreads or volatility.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from ai_trading.data.frequency import BarFrequency, infer_frequency
from ai_trading.data.schema import BAR_COLUMNS
from ai_trading.errors import ConfigError, DataValidationError
from ai_trading.execution.config import SimulatorConfig
from ai_trading.execution.spread import abdi_ranaldo, corwin_schultz, ewma_volatility

if TYPE_CHECKING:
    from ai_trading.execution.cost_model import EwmaCostModel

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

SECONDS_PER_YEAR = 365.0 * 86_400.0  # ACT/365: financing accrues over calendar time

# Layout of the flat parameter vector the kernels read (numba-friendly: one float64 array).
P_FIXED, P_VOLC, P_IMPACT, P_CAP, P_HAIRCUT, P_FEE_SHARE, P_FEE_RATE, P_FEE_MIN = range(8)
P_SPIKE_Z, P_SPIKE_MS, P_SPIKE_VOL, P_BAR_SECONDS, P_BAND, P_LAT_MS, P_LAT_SIGMA, P_LOGNORMAL = range(8, 16)
# Annual financing rates (fractions), read per bar, not per fill: positive cash, negative cash, short value.
P_CASH_RATE, P_DEBIT_RATE, P_BORROW_FEE = range(16, 19)
N_PARAMS = 19
NOISE_FIELDS = 2  # standard normals per fill slot: latency, spike (see draw_noise)


@dataclass(frozen=True)
class MarketArrays:
    """Bars as wide float64 arrays over the union of timestamps (rows) and sorted symbols (columns).

    ``open/high/low/close/volume`` hold the bar where ``tradable`` is True; elsewhere (a symbol with no bar
    at that time) prices hold ``mark`` and volume 0. ``mark`` is the last close (forward-filled, 0 before a
    symbol's first bar) used to value positions. ``half_spread`` (fraction of price) and ``vol`` (per-bar
    volatility, fraction) at row ``t`` use bars up to ``t`` only. ``session`` numbers calendar days.
    ``frequency`` is the data's bar frequency (annualisation); a slice keeps it. ``bar_seconds`` is the
    trading time of one bar for fills: the simulator config's ``bar_seconds`` or the frequency's.
    ``year_frac`` is the calendar time from row ``t - 1`` to row ``t`` in years (ACT/365; 0 at row 0), over
    which the book held at ``t - 1``'s close is financed.
    """

    timestamps: pd.DatetimeIndex
    symbols: tuple[str, ...]
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    mark: FloatArray
    tradable: BoolArray
    half_spread: FloatArray
    vol: FloatArray
    session: npt.NDArray[np.int64]
    bar_seconds: float
    frequency: BarFrequency
    year_frac: FloatArray

    @property
    def shape(self) -> tuple[int, int]:
        T, N = self.open.shape
        return T, N

    def symbol_index(self, symbol: str) -> int:
        try:
            return self.symbols.index(symbol)
        except ValueError:
            return -1

    @classmethod
    def from_bars(cls, frame: pd.DataFrame, config: SimulatorConfig,
                  frequency: BarFrequency | None = None) -> MarketArrays:
        """Pivot the canonical frame and estimate spread and volatility per symbol, as the preset says.
        ``frequency`` is the bars' frequency (``Bars.frequency``, which honours ``data.periods_per_year``); None
        infers it from the frame's timestamps."""
        if frame.empty:
            raise DataValidationError("empty_selection", "no bars to build market arrays from")
        timestamps, symbols, cell = _wide_cells(frame)
        T, N = len(timestamps), len(symbols)
        # Each column goes straight from the frame into its wide array (no unstacked copy of all columns).
        arrays: dict[str, FloatArray] = {}
        for col in BAR_COLUMNS:
            wide = np.full(T * N, np.nan)
            wide[cell] = frame[col].to_numpy(np.float64)
            arrays[col] = wide.reshape(T, N)
        del cell
        tradable = np.isfinite(arrays["close"])
        mark = np.empty((T, N))
        for n in range(N):
            mark[:, n] = _ffill_column(arrays["close"][:, n])
        hs = np.zeros((T, N))
        vol = np.zeros((T, N))
        for n in range(len(symbols)):
            rows = np.flatnonzero(tradable[:, n])
            h, lo, c = (arrays[col][rows, n] for col in ("high", "low", "close"))
            sigma = ewma_volatility(c, h, lo, config.vol_halflife)
            if config.spread_bps is not None:
                base = np.full(len(rows), 0.5 * config.spread_bps * 1e-4)
            else:
                estimator = corwin_schultz if config.spread_estimator == "corwin_schultz" else abdi_ranaldo
                base = 0.5 * estimator(h, lo, c, config.spread_window)
                base = np.where(np.isfinite(base), base, 0.0)
            est = np.clip(base + config.spread_vol_coef * sigma, config.min_half_spread_bps * 1e-4,
                          config.max_half_spread_bps * 1e-4)
            hs[:, n] = _ffill_rows(est, rows, T)
            vol[:, n] = _ffill_rows(sigma, rows, T)
        missing = ~tradable
        for col in ("open", "high", "low", "close"):
            np.copyto(arrays[col], mark, where=missing)
        volume = arrays["volume"]
        volume[missing] = 0.0
        np.nan_to_num(volume, copy=False, nan=0.0)
        del missing
        local = timestamps.tz_convert(config.session_timezone)
        session = np.asarray(local.normalize().asi8 // (86_400 * 10**9), dtype=np.int64)
        frequency = infer_frequency(timestamps) if frequency is None else frequency
        bar_seconds = config.bar_seconds if config.bar_seconds is not None else frequency.bar_seconds
        gaps = (timestamps[1:] - timestamps[:-1]).total_seconds().to_numpy(np.float64)
        year_frac = np.concatenate(([0.0], gaps / SECONDS_PER_YEAR))
        log.info("market arrays bars=%d symbols=%s frequency=%s bar_seconds=%.0f", T, ",".join(symbols),
                 frequency.label, bar_seconds)
        return cls(timestamps=timestamps, symbols=symbols, open=arrays["open"], high=arrays["high"],
                   low=arrays["low"], close=arrays["close"], volume=volume, mark=mark, tradable=tradable,
                   half_spread=hs, vol=vol, session=session, bar_seconds=float(bar_seconds), frequency=frequency,
                   year_frac=year_frac)


def _wide_cells(frame: pd.DataFrame) -> tuple[pd.DatetimeIndex, tuple[str, ...], npt.NDArray[np.intp]]:
    """The sorted distinct timestamps and symbols of ``frame`` and each row's flat cell ``t * N + n`` in the
    wide arrays, from the index codes (no per-row timestamp or symbol objects)."""
    index = frame.index
    if not isinstance(index, pd.MultiIndex):
        raise DataValidationError("bad_index", f"bars need a (timestamp, symbol) index, got {type(index).__name__}",
                                  source="market")
    ts_level, sym_level = index.names.index("timestamp"), index.names.index("symbol")
    ts_codes, sym_codes = index.codes[ts_level], index.codes[sym_level]
    ts_lookup, ts_sorted = _sorted_positions(index.levels[ts_level], ts_codes)
    sym_lookup, sym_sorted = _sorted_positions(index.levels[sym_level].astype(str), sym_codes)
    N = len(sym_sorted)
    cell = ts_lookup[ts_codes]
    cell *= N
    cell += sym_lookup[sym_codes]
    if not (cell[1:] > cell[:-1]).all():  # canonical frames are sorted; anything else must not repeat a cell
        ordered = np.sort(cell)
        repeated = np.flatnonzero(ordered[1:] == ordered[:-1])
        if len(repeated):
            t, n = divmod(int(ordered[repeated[0]]), N)
            raise DataValidationError("duplicate_timestamp", "two bars of one symbol at one timestamp",
                                      symbol=str(sym_sorted[n]), timestamp=ts_sorted[t], source="market")
    timestamps = pd.DatetimeIndex(ts_sorted, name="timestamp")
    return timestamps, tuple(str(s) for s in sym_sorted), cell


def _sorted_positions(level: pd.Index, codes: npt.NDArray[np.integer]) -> tuple[npt.NDArray[np.intp], pd.Index]:
    """The values of ``level`` that ``codes`` use, sorted, and each code's position among them."""
    used = np.flatnonzero(np.bincount(codes, minlength=len(level)))
    keys = level[used]
    order = keys.argsort(kind="stable")
    lookup = np.zeros(len(level), dtype=np.intp)
    lookup[used[order]] = np.arange(len(used))
    return lookup, keys[order]


def _ffill_column(close: FloatArray) -> FloatArray:
    """``close`` with each NaN replaced by the last close before it, 0 before the first."""
    known = ~np.isnan(close)
    last = np.where(known, np.arange(len(close)), 0)
    np.maximum.accumulate(last, out=last)
    out = close[last]
    out[~known[last]] = 0.0
    return out


def _ffill_rows(values: FloatArray, rows: npt.NDArray[np.intp], T: int) -> FloatArray:
    """Spread per-bar values of one symbol over all T rows, carrying the last one forward (0 before)."""
    out = np.zeros(T)
    if len(rows) == 0:
        return out
    pos = np.searchsorted(rows, np.arange(T), side="right") - 1
    known = pos >= 0
    out[known] = values[pos[known]]
    return out


@dataclass(frozen=True)
class ExecParams:
    """Flat cost/latency/fee parameters for the kernels, plus the per-symbol learned multipliers of the
    preset's half-spread (already applied to the market's ``half_spread``) and slippage (applied per fill)."""

    values: FloatArray
    impact_scale: FloatArray
    spread_scale: FloatArray

    @classmethod
    def from_config(cls, config: SimulatorConfig, market: MarketArrays, *,
                    impact_scale: Sequence[float] | None = None,
                    spread_scale: Sequence[float] | None = None) -> ExecParams:
        v = np.zeros(N_PARAMS)
        v[P_FIXED], v[P_VOLC], v[P_IMPACT] = config.slippage_fixed_bps * 1e-4, config.slippage_vol_coef, \
            config.impact_coef
        v[P_CAP], v[P_HAIRCUT] = config.participation_cap, config.queue_haircut
        v[P_FEE_SHARE], v[P_FEE_RATE], v[P_FEE_MIN] = config.fee_per_share, config.fee_bps * 1e-4, config.fee_min
        v[P_SPIKE_Z], v[P_SPIKE_MS], v[P_SPIKE_VOL] = spike_quantile(config.spike_prob), config.spike_ms, \
            config.spike_vol_coef
        v[P_BAR_SECONDS], v[P_BAND] = market.bar_seconds, config.no_trade_band
        v[P_LAT_MS], v[P_LAT_SIGMA] = config.latency_ms, config.latency_sigma
        v[P_LOGNORMAL] = 1.0 if config.latency == "lognormal" else 0.0
        v[P_CASH_RATE] = config.risk_free_annual_bps * 1e-4
        v[P_DEBIT_RATE] = (config.risk_free_annual_bps + config.margin_spread_annual_bps) * 1e-4
        v[P_BORROW_FEE] = config.borrow_fee_annual_bps * 1e-4
        N = len(market.symbols)
        scales = []
        for name, given in (("impact_scale", impact_scale), ("spread_scale", spread_scale)):
            scale = np.ones(N) if given is None else np.asarray(given, np.float64)
            if scale.shape != (N,) or not (np.isfinite(scale).all() and (scale >= 0).all()):
                raise ConfigError(f"{name} must be {N} finite numbers >= 0, got {scale!r}")
            scales.append(scale)
        return cls(values=v, impact_scale=scales[0], spread_scale=scales[1])


def spike_quantile(probability: float) -> float:
    """The standard-normal quantile of the spike probability: a slot spikes when its spike normal falls
    below it, which happens with exactly that probability."""
    if probability <= 0.0:
        return -math.inf
    if probability >= 1.0:
        return math.inf
    return NormalDist().inv_cdf(probability)


def draw_noise(rng: np.random.Generator, slots: tuple[int, ...], out: FloatArray | None = None) -> FloatArray:
    """The execution randomness of ``slots`` fill slots (one slot = one symbol on one bar, or one child
    slice): ``(*slots, NOISE_FIELDS)`` standard normals from ``rng`` in one call, ``[..., 0]`` for the
    latency and ``[..., 1]`` for the spike (:func:`ai_trading.execution.kernels.fill_slice` turns them into
    milliseconds). Every path draws this way, and the stream does not depend on how the slots are cut into
    calls, so the same generator gives the same fills on every path. ``out`` (C-contiguous, that shape)
    receives the draws in place.
    """
    shape = (*slots, NOISE_FIELDS)
    if out is None:
        return rng.standard_normal(shape)
    if out.shape != shape:
        raise ValueError(f"noise buffer has shape {out.shape}, expected {shape}")
    return rng.standard_normal(out=out)


def build_execution(
    bars: pd.DataFrame, config: SimulatorConfig, cost_model: EwmaCostModel | None = None,
    frequency: BarFrequency | None = None,
) -> tuple[MarketArrays, ExecParams]:
    """Market arrays and kernel parameters of ``bars`` under the simulator preset ``config``; with
    ``cost_model`` its learned per-symbol multipliers apply on top of the preset (the half-spread scaled in
    the market arrays, the slippage through ``impact_scale``). Every path (vectorised, per-order, RL env,
    walk-forward) builds its costs here, so a preset means the same everywhere."""
    market = MarketArrays.from_bars(bars, config, frequency=frequency)
    if cost_model is None:
        return market, ExecParams.from_config(config, market)
    if cost_model.preset != config:
        raise ConfigError("the cost model was built on another simulator preset than the one given")
    spread = [cost_model.spread_scale(s) for s in market.symbols]
    impact = [cost_model.impact_scale(s) for s in market.symbols]
    # The preset's floor and cap bound the learned half-spread too.
    scaled = np.clip(market.half_spread * np.asarray(spread), config.min_half_spread_bps * 1e-4,
                     config.max_half_spread_bps * 1e-4)
    market = dataclasses.replace(market, half_spread=scaled)
    return market, ExecParams.from_config(config, market, impact_scale=impact, spread_scale=spread)


def slice_market(market: MarketArrays, start: int, stop: int) -> MarketArrays:
    """Rows ``[start, stop)`` of the market arrays (spread and volatility at a row only use earlier bars,
    so a slice is exactly what a simulation starting at ``start`` sees)."""
    T = market.open.shape[0]
    if not 0 <= start < stop <= T:
        raise ConfigError(f"market slice [{start}, {stop}) outside the {T} rows")
    rows = slice(start, stop)
    arrays = {f.name: getattr(market, f.name)[rows] for f in dataclasses.fields(market)
              if isinstance(getattr(market, f.name), np.ndarray)}
    return dataclasses.replace(market, timestamps=market.timestamps[rows], **arrays)
