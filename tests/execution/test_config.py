"""Simulator and cost-model configs: Python defaults are the default yaml, bad values fail with ConfigError."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from ai_trading.errors import ConfigError
from ai_trading.execution import EwmaCostModelConfig, SimulatorConfig
from tests.conftest import compose_config


def test_python_defaults_equal_the_default_yaml() -> None:
    cfg = compose_config()
    assert instantiate(cfg.simulator) == SimulatorConfig()
    assert instantiate(cfg.cost_model) == EwmaCostModelConfig()


@pytest.mark.parametrize("kwargs", [{"participation_cap": 0.0}, {"fee_bps": -1.0}, {"latency": "gamma"},
                                    {"spread_estimator": "roll"}, {"latency_ms": float("nan")}])
def test_simulator_config_bad_value_raises_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SimulatorConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [{"half_life": 0.0}, {"half_life": float("inf")}, {"state_path": " "}])
def test_cost_model_config_bad_value_raises_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        EwmaCostModelConfig(**kwargs)
