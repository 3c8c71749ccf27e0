"""Composed env configs and their data, built once per session (the data build is the slow part)."""

from __future__ import annotations

from functools import cache

from omegaconf import DictConfig

from ai_trading.pipeline import Dataset, build_dataset
from ai_trading.rl_trading import EnvData, build_env_data
from tests.conftest import compose_config

ENV_CONFIGS = ("portfolio", "long_short")


@cache
def dataset() -> Dataset:
    """The default training data (bundled SP500 + NASDAQ daily bars) and its features."""
    return build_dataset(compose_config([]))


def env_cfg(name: str = "portfolio", *overrides: str) -> DictConfig:
    return compose_config([f"env={name}", *overrides])


@cache
def env_data(name: str = "portfolio", *overrides: str) -> EnvData:
    return build_env_data(env_cfg(name, *overrides), dataset())
