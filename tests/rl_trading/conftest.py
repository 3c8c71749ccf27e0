"""Composed env configs and their data, built as the main entrypoint builds them, once per session (the data
build is the slow part)."""

from __future__ import annotations

from functools import cache

from ai_trading.pipeline import Dataset, Execution, build_costs, build_dataset
from ai_trading.rl_trading import EnvData, PortfolioEnvConfig
from ai_trading.wiring import TrainConfig, train_config
from tests.conftest import compose_config

ENV_CONFIGS = ("portfolio", "long_short")


def job(*overrides: str) -> TrainConfig:
    """The typed configs of the main job with ``overrides``, as ``python -m ai_trading.train`` builds them."""
    return train_config(compose_config(list(overrides)))


@cache
def dataset() -> Dataset:
    """The default training data (bundled SP500 + NASDAQ daily bars) and its features."""
    research = job().research
    return build_dataset(research.data, research.features)


@cache
def execution(*overrides: str) -> Execution:
    research = job(*overrides).research
    return build_costs(dataset(), research.simulator, research.cost_model)


def env_config(name: str = "portfolio", *overrides: str) -> PortfolioEnvConfig:
    return job(f"env={name}", *overrides).env


@cache
def env_data(name: str = "portfolio", *overrides: str) -> EnvData:
    built = execution()
    return EnvData.build(built.market, built.params, dataset().features, env_config(name, *overrides).eval_fraction)
