"""The one feature builder: used by training, evaluation, the RL environment and live trading.

Every feature at time t depends only on bars up to and including t (trailing windows per symbol).
The first ``spec.warmup`` rows of each symbol, where some feature is not yet defined, are dropped
explicitly; the output never carries NaN downstream.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml

from ai_trading.data.fingerprint import dataset_fingerprint
from ai_trading.data.loader import Bars
from ai_trading.data.schema import canonicalize
from ai_trading.data.validation import validate_bars
from ai_trading.errors import DataValidationError, FeatureSchemaMismatch
from ai_trading.features.spec import FEATURE_DTYPE, FeatureDef, FeatureSpec, make_spec
from ai_trading.paths import conf_file

log = logging.getLogger(__name__)

_FLAT_TOLERANCE = 1e-12


def _rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` values; NaN where fewer are available."""
    out = np.full_like(x, np.nan)
    if len(x) >= window:
        out[window - 1 :] = np.lib.stride_tricks.sliding_window_view(x, window).mean(axis=1)
    return out


def _rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing sample standard deviation (ddof=1) over ``window`` values."""
    out = np.full_like(x, np.nan)
    if len(x) >= window:
        view = np.lib.stride_tricks.sliding_window_view(x, window)
        out[window - 1 :] = view.std(axis=1, ddof=1)
    return out


def _zscore(x: np.ndarray, window: int) -> np.ndarray:
    """(x - trailing mean) / trailing std; 0 where the window is flat (no deviation to scale).

    A window counts as flat when its deviation is below float64 rounding of its level.
    """
    mean, std = _rolling_mean(x, window), _rolling_std(x, window)
    flat = std <= _FLAT_TOLERANCE * np.maximum(1.0, np.abs(mean))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (x - mean) / np.where(flat, 1.0, std)
    return np.where(flat, 0.0, z)


def _lagged_log_ratio(log_close: np.ndarray, horizon: int) -> np.ndarray:
    out = np.full_like(log_close, np.nan)
    out[horizon:] = log_close[horizon:] - log_close[:-horizon]
    return out


def _compute(
    feature: FeatureDef, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> np.ndarray:
    log_close = np.log(close)
    p = feature.params
    match feature.kind:
        case "log_return":
            return _lagged_log_ratio(log_close, p["horizon"])
        case "realized_vol":
            returns = _lagged_log_ratio(log_close, 1)
            out = np.full_like(close, np.nan)
            out[1:] = _rolling_std(returns[1:], p["window"])
            return out
        case "parkinson_vol":
            # Parkinson (1980): sigma^2 = E[ln(H/L)^2] / (4 ln 2), per bar.
            return np.sqrt(_rolling_mean(np.log(high / low) ** 2, p["window"]) / (4.0 * np.log(2.0)))
        case "momentum":
            return close / _rolling_mean(close, p["window"]) - 1.0
        case "zscore":
            return _zscore(close, p["window"])
        case "volume_z":
            return _zscore(np.log1p(volume), p["window"])
    raise AssertionError(f"unhandled feature kind {feature.kind}")  # FeatureDef validates kinds


def _zscore_last(x: np.ndarray, window: int) -> np.ndarray:
    """:func:`_zscore`'s last value of each row of ``x`` (symbols x bars), the same arithmetic on the last window."""
    tail = x[:, -window:]
    mean, std = tail.mean(axis=1), tail.std(axis=1, ddof=1)
    flat = std <= _FLAT_TOLERANCE * np.maximum(1.0, np.abs(mean))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (x[:, -1] - mean) / np.where(flat, 1.0, std)
    return np.where(flat, 0.0, z)


def _compute_last(
    feature: FeatureDef, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray,
    log_close: np.ndarray,
) -> np.ndarray:
    """:func:`_compute`'s value at the last bar, for each row (symbol) of C-contiguous ``symbols x bars`` arrays:
    the same element-wise operations and one reduction per row over the same trailing window (a row of a
    contiguous array reduces as a window of the whole series does), so the same float64 values, computed for
    one bar instead of every bar of the window."""
    p = feature.params
    match feature.kind:
        case "log_return":
            return log_close[:, -1] - log_close[:, -1 - p["horizon"]]
        case "realized_vol":
            window = p["window"]
            return (log_close[:, -window:] - log_close[:, -window - 1 : -1]).std(axis=1, ddof=1)
        case "parkinson_vol":
            window = p["window"]
            ratio = np.log(high[:, -window:] / low[:, -window:]) ** 2
            return np.sqrt(ratio.mean(axis=1) / (4.0 * np.log(2.0)))
        case "momentum":
            return close[:, -1] / close[:, -p["window"] :].mean(axis=1) - 1.0
        case "zscore":
            return _zscore_last(close, p["window"])
        case "volume_z":
            return _zscore_last(np.log1p(volume), p["window"])
    raise AssertionError(f"unhandled feature kind {feature.kind}")  # FeatureDef validates kinds


@dataclass(frozen=True)
class FeatureSet:
    """Features aligned to the bars index (warm-up rows dropped) with their provenance hashes."""

    frame: pd.DataFrame
    feature_names: list[str]
    schema_hash: str
    dataset_fingerprint: str
    spec: FeatureSpec

    def validate(self, expected_schema_hash: str, expected_dataset_fingerprint: str | None = None) -> None:
        """Fail fast if these features are not the ones a consumer was built for."""
        if self.schema_hash != expected_schema_hash:
            raise FeatureSchemaMismatch("feature_schema_hash", expected_schema_hash, self.schema_hash)
        if expected_dataset_fingerprint is not None and self.dataset_fingerprint != expected_dataset_fingerprint:
            raise FeatureSchemaMismatch("dataset_fingerprint", expected_dataset_fingerprint, self.dataset_fingerprint)


def _rows_by_symbol(index: pd.MultiIndex) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.intp], list[int]]:
    """Rows grouped by symbol (each group in row order), where each symbol's group starts and ends in them
    (``bounds[code]:bounds[code + 1]``, by symbol-level code), and the codes present in order of first row."""
    codes = index.codes[index.names.index("symbol")]
    order = np.argsort(codes, kind="stable")
    if len(order) < 2**31:
        order = order.astype(np.int32)
    counts = np.bincount(codes, minlength=len(index.levels[index.names.index("symbol")]))
    bounds = np.concatenate(([0], np.cumsum(counts)))
    present = np.flatnonzero(counts)
    present = present[np.argsort(order[bounds[present]], kind="stable")]
    return order, bounds, [int(c) for c in present]


class FeatureBuilder:
    """Builds a :class:`FeatureSet` from canonical bars according to a :class:`FeatureSpec`."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec

    @classmethod
    def default(cls) -> FeatureBuilder:
        """The builder of the default daily spec (``conf/features/default_daily.yaml``)."""
        cfg = yaml.safe_load(conf_file("features", "default_daily.yaml").read_text(encoding="utf-8"))
        return cls(make_spec(cfg["name"], cfg["version"], cfg["features"]))

    @property
    def schema_hash(self) -> str:
        return self.spec.schema_hash

    def build_last(self, window: np.ndarray, symbols: Sequence[str]) -> np.ndarray:
        """The features (one row per symbol, ``FEATURE_DTYPE``) of the last bar of each symbol's trailing
        ``window`` (``symbols x bars x BAR_COLUMNS`` of validated bars, more than the warm-up): the values
        :meth:`build` gives that bar, without a frame per call (the live loop's per-bar path)."""
        n_symbols, n_bars, _ = window.shape
        if n_bars <= self.spec.warmup:
            raise DataValidationError("too_short", f"{n_bars} bars, the feature spec needs more than "
                                      f"{self.spec.warmup} (its warm-up)", source="features")
        out = np.empty((n_symbols, len(self.spec.features)), dtype=FEATURE_DTYPE)
        high, low, close, volume = (np.ascontiguousarray(window[:, :, i]) for i in range(1, 5))
        log_close = np.log(close)
        for j, feature in enumerate(self.spec.features):
            out[:, j] = _compute_last(feature, high, low, close, volume, log_close)
        finite = np.isfinite(out).all(axis=1)
        if not finite.all():
            raise DataValidationError("non_finite_feature", "a feature is NaN or inf after warm-up",
                                      symbol=str(symbols[int(np.flatnonzero(~finite)[0])]), source="features")
        return out

    def build(self, bars: Bars | pd.DataFrame) -> FeatureSet:
        """Validate ``bars`` with the data layer's rules and compute the spec's features."""
        if isinstance(bars, Bars):
            frame, fingerprint = bars.frame, bars.fingerprint
        else:
            frame = validate_bars(canonicalize(bars), source="features")
            fingerprint = dataset_fingerprint(frame)
        n_features, warmup = len(self.spec.features), self.spec.warmup
        if not isinstance(frame.index, pd.MultiIndex):
            raise DataValidationError("bad_index", "bars need a (timestamp, symbol) index", source="features")
        order, bounds, symbols = _rows_by_symbol(frame.index)
        names = frame.index.levels[frame.index.names.index("symbol")]
        for code in symbols:
            if bounds[code + 1] - bounds[code] <= warmup:
                raise DataValidationError(
                    "too_short", f"{bounds[code + 1] - bounds[code]} bars, the feature spec needs more than {warmup} "
                    "(its warm-up)", symbol=str(names[code]), source="features",
                )
        keep = np.ones(len(frame), dtype=bool)
        for code in symbols:
            keep[order[bounds[code] : bounds[code] + warmup]] = False
        # Each kept bar's row in the output: only the kept rows are allocated, no full-size copy to drop from.
        dest = np.cumsum(keep, dtype=np.int32 if len(frame) < 2**31 else np.int64)
        np.subtract(dest, 1, out=dest)
        # Stored as FEATURE_DTYPE as each column is computed (in float64): the same values as casting at the
        # end, without a float64 copy of the whole matrix; a value beyond float32's range becomes inf and fails
        # the finiteness check below instead of reaching a model as inf.
        result = np.empty((int(dest[-1]) + 1, n_features), dtype=FEATURE_DTYPE)
        high, low, close, volume = (frame[c].to_numpy(np.float64) for c in ("high", "low", "close", "volume"))
        first_bad = len(frame)
        for code in symbols:
            rows = order[bounds[code] : bounds[code + 1]]  # ascending time: the frame is sorted by timestamp
            kept = rows[warmup:]
            at = dest[kept]
            h, lo, c, v = high[rows], low[rows], close[rows], volume[rows]
            for j, feature in enumerate(self.spec.features):
                column = _compute(feature, h, lo, c, v)[warmup:].astype(FEATURE_DTYPE)
                bad = np.flatnonzero(~np.isfinite(column))
                if len(bad):
                    first_bad = min(first_bad, int(kept[bad[0]]))
                result[at, j] = column
        del order, dest
        if first_bad < len(frame):
            ts, sym = frame.index[first_bad]
            raise DataValidationError("non_finite_feature", "a feature is NaN or inf after warm-up",
                                      symbol=str(sym), timestamp=ts, source="features")
        index = frame.index[keep]
        del keep
        features = pd.DataFrame(result, index=index, columns=self.spec.columns, copy=False)
        log.debug("built features rows=%d warmup=%d schema=%s", len(features), warmup, self.schema_hash[:12])
        return FeatureSet(features, self.spec.columns, self.schema_hash, fingerprint, self.spec)
