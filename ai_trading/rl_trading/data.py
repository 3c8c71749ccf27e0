"""The env's data and splits: the market and feature arrays aligned on one timeline (built once per job),
and where the training, validation and held-out evaluation episodes may lie on it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ai_trading.errors import ConfigError, DataValidationError
from ai_trading.execution.market import ExecParams, MarketArrays, slice_market
from ai_trading.features import FeatureSet
from ai_trading.rl_trading.config import PortfolioEnvConfig

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

# Rows of the packed market array ``mk`` (10, T, N); the year fraction of a row is the same in every column.
MK_OPEN, MK_HIGH, MK_LOW, MK_CLOSE, MK_VOLUME, MK_MARK, MK_TRADABLE, MK_HS, MK_VOL, MK_YEAR_FRAC = range(10)
N_PORTFOLIO_BASE = 6  # cash fraction, leverage, gross, net, unrealised PnL, drawdown (+ N weights)


@dataclass(frozen=True)
class EnvData:
    """Market and features on the env's timeline: rows where every symbol has features (after its warm-up)
    up to the last row where every symbol still has bars.

    Inside the timeline a symbol without a bar at some row (a holiday on its exchange) keeps its last
    feature row (forward-filled: only older bars, so still causal) and cannot trade there (the simulator
    skips untradable bars). Rows ``[0, n_train)`` are the training split; the evaluation episode decides
    at ``n_train - 1`` and executes on the held-out rows ``n_train .. T-1`` only.
    """

    market: MarketArrays
    params: ExecParams
    features: npt.NDArray[np.float32]
    feature_names: tuple[str, ...]
    n_train: int
    packed: FloatArray

    @classmethod
    def build(cls, market: MarketArrays, params: ExecParams, features: FeatureSet,
              eval_fraction: float) -> EnvData:
        """Align ``features`` to ``market`` (full history) and cut the common timeline."""
        T, N = market.shape
        F = len(features.feature_names)
        wide = np.full((T, N, F), np.nan, dtype=np.float32)
        frame = features.frame
        symbols = frame.index.get_level_values("symbol")
        for n, symbol in enumerate(market.symbols):
            sub = frame[symbols == symbol].droplevel("symbol")
            if sub.empty:
                raise DataValidationError("no_features", "symbol has no feature rows", symbol=symbol)
            aligned = sub.reindex(market.timestamps).ffill()
            wide[:, n, :] = aligned.to_numpy(np.float32)
        have = np.isfinite(wide).all(axis=(1, 2))
        first = int(np.argmax(have)) if have.any() else T
        last_bar = [int(np.flatnonzero(market.tradable[:, n])[-1]) for n in range(N)]
        stop = min(last_bar) + 1
        if stop - first < 3:
            raise DataValidationError("too_short", f"common feature timeline has {max(stop - first, 0)} rows; "
                                      "the env needs at least 3", source="rl_env")
        timeline = slice_market(market, first, stop)
        n_rows = stop - first
        n_train = round(n_rows * (1.0 - eval_fraction))
        if n_train < 2 or n_rows - n_train < 1:
            raise DataValidationError("too_short", f"timeline of {n_rows} rows leaves no train or eval split at "
                                      f"eval_fraction={eval_fraction}", source="rl_env")
        packed = np.ascontiguousarray(np.stack([
            timeline.open, timeline.high, timeline.low, timeline.close, timeline.volume, timeline.mark,
            timeline.tradable.astype(np.float64), timeline.half_spread, timeline.vol,
            np.broadcast_to(timeline.year_frac[:, None], (n_rows, N))]))
        feats = np.ascontiguousarray(wide[first:stop].reshape(n_rows, N * F))
        log.info("env timeline rows=%d first=%s last=%s n_train=%d symbols=%s", n_rows,
                 timeline.timestamps[0], timeline.timestamps[-1], n_train, ",".join(market.symbols))
        return cls(market=timeline, params=params, features=feats,
                   feature_names=tuple(f"{s}:{c}" for s in market.symbols for c in features.feature_names),
                   n_train=n_train, packed=packed)

    @property
    def n_symbols(self) -> int:
        return len(self.market.symbols)

    @property
    def obs_size(self) -> int:
        return self.features.shape[1] + N_PORTFOLIO_BASE + self.n_symbols


@dataclass(frozen=True)
class EpisodeLayout:
    """Where episodes may lie: decision rows ``lo .. hi`` for the start, ``length`` steps each."""

    lo: int
    hi: int
    length: int

    @classmethod
    def of(cls, data: EnvData, config: PortfolioEnvConfig, split: str) -> EpisodeLayout:
        """``train``: random windows executing on rows ``< fit_end``; ``validation``: one episode over
        ``fit_end .. n_train - 1``; ``eval``: one episode over the held-out ``n_train .. T - 1``."""
        fit_end = data.n_train - round(config.validation_fraction * data.n_train)
        if fit_end < 2:
            raise ConfigError(f"env.validation_fraction={config.validation_fraction} leaves no training rows")
        if split == "eval":
            start = data.n_train - 1
            return cls(start, start, data.market.shape[0] - 1 - start)
        if split == "validation":
            if fit_end == data.n_train:
                raise ConfigError("split=validation needs env.validation_fraction > 0")
            start = fit_end - 1
            return cls(start, start, data.n_train - 1 - start)
        if split != "train":
            raise ValueError(f"split must be 'train', 'validation' or 'eval', got {split!r}")
        longest = fit_end - 1
        length = longest if config.episode_length is None else min(config.episode_length, longest)
        if config.episode_length is not None and config.episode_length > longest:
            log.warning("episode_length=%d exceeds the training split (%d steps); using %d",
                        config.episode_length, longest, longest)
        return cls(0, longest - length, length)
