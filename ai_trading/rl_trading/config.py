"""Typed configuration of the portfolio RL environment (built from ``conf/env/*.yaml``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Literal

from ai_trading.errors import ConfigError

RewardKind = Literal["log", "simple"]


@dataclass(frozen=True)
class RewardConfig:
    """Reward = equity change net of costs (``log``: log(E_t+1 / E_t); ``simple``: (E_t+1 - E_t) / E_0),
    minus weighted risk penalties. All weights are >= 0; zero switches a penalty off."""

    kind: RewardKind = "log"
    drawdown_penalty: float = 0.0
    variance_penalty: float = 0.0
    leverage_penalty: float = 0.0
    turnover_penalty: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("log", "simple"):
            raise ConfigError(f"env.reward.kind={self.kind!r}: expected log or simple")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "kind" and (not isinstance(value, int | float) or not math.isfinite(value) or value < 0):
                raise ConfigError(f"env.reward.{f.name}={value!r}: must be a finite number >= 0")


@dataclass(frozen=True)
class PortfolioEnvConfig:
    """Constraints, episode layout and reward of :class:`ai_trading.rl_trading.PortfolioEnv`.

    ``max_position`` caps each symbol's target weight (fraction of equity), ``max_leverage`` the sum of
    absolute weights; ``episode_length`` is in steps (bars), None = the whole training split;
    ``eval_fraction`` of the timeline's tail is held out for evaluation, and ``validation_fraction`` of the
    remaining training split's tail for early-stopping validation. Ruin is equity at or below
    ``ruin_threshold`` times the episode's start: a training episode ends there; a validation or held-out
    evaluation episode is flattened and stays flat to its window's end, so it is scored on the whole
    window and the ruin is reported. Defaults are ``conf/env/portfolio.yaml`` (a test holds them equal).
    """

    long_only: bool = True
    max_leverage: float = 1.0
    max_position: float = 1.0
    initial_cash: float = 1_000_000.0
    episode_length: int | None = 252
    eval_fraction: float = 0.2
    validation_fraction: float = 0.15
    reward: RewardConfig = field(default_factory=RewardConfig)
    ruin_threshold: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.reward, Mapping):  # a plain mapping from an un-instantiated config node
            object.__setattr__(self, "reward", RewardConfig(**self.reward))
        for name in ("max_leverage", "max_position", "initial_cash"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"env.{name}={value!r}: must be a finite number > 0")
        if self.episode_length is not None and self.episode_length < 1:
            raise ConfigError(f"env.episode_length={self.episode_length}: must be >= 1 or null")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ConfigError(f"env.eval_fraction={self.eval_fraction}: must be in (0, 1)")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError(f"env.validation_fraction={self.validation_fraction}: must be in [0, 1)")
        if not 0.0 <= self.ruin_threshold < 1.0:
            raise ConfigError(f"env.ruin_threshold={self.ruin_threshold}: must be in [0, 1)")
