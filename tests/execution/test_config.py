"""Config groups compose and instantiate; bad values fail with ConfigError."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from ai_trading.errors import ConfigError
from ai_trading.execution import EwmaCostModel, EwmaCostModelConfig, SimulatorConfig
from tests.conftest import compose_config


@pytest.mark.parametrize("name", ["default", "zero_cost", "stressed"])
def test_simulator_config_group_instantiates(name: str) -> None:
    config = instantiate(compose_config([f"simulator={name}"]).simulator)
    assert isinstance(config, SimulatorConfig)
    if name == "zero_cost":
        assert (config.spread_bps, config.latency_ms, config.impact_coef, config.fee_bps) == (0.0, 0.0, 0.0, 0.0)
    if name == "stressed":
        assert config.impact_coef > SimulatorConfig().impact_coef


def test_cost_model_config_group_instantiates() -> None:
    config = instantiate(compose_config(["cost_model=ewma"]).cost_model)
    assert isinstance(config, EwmaCostModelConfig)
    assert EwmaCostModel(config).half_spread_bps("STOXX50F") == 1.0


@pytest.mark.parametrize("kwargs", [{"participation_cap": 0.0}, {"fee_bps": -1.0}, {"latency": "gamma"},
                                    {"spread_estimator": "roll"}, {"latency_ms": float("nan")}])
def test_simulator_config_bad_value_raises_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SimulatorConfig(**kwargs)
