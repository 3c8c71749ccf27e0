"""EWMA cost model: a fresh model is the preset exactly, learning converges with its half-life, the state
file round-trips with its hash, and the simulator charges what the model predicts."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_trading.errors import ConfigError, ManifestVerificationError, OrderValidationError
from ai_trading.execution import (
    CostObservation,
    EwmaCostModel,
    EwmaCostModelConfig,
    ExecutionSimulator,
    OrderSide,
    SimOrder,
    SimulatorConfig,
    TimeInForce,
)
from tests.execution.conftest import BARE, random_walk_frame

# Slippage formula of this preset: 1.0 + 0.5 * sigma_bps * sqrt(q / V) bps.
PRESET = dataclasses.replace(BARE, slippage_fixed_bps=1.0, impact_coef=0.5)
CONFIG = EwmaCostModelConfig(half_life=20.0, state_path=None)


def _obs(cost_bps: float, half_spread_bps: float | None = 1.0, symbol: str = "AAA",
         preset_half_spread_bps: float = 2.0) -> CostObservation:
    ref = 100.0
    return CostObservation(symbol, 1, 100.0, ref * (1 + cost_bps * 1e-4), ref, 0.001, 10_000.0,
                           preset_half_spread_bps, half_spread_bps)


@settings(max_examples=50, deadline=None)
@given(q=st.floats(1.0, 1e5), dq=st.floats(1.0, 1e5), vol=st.floats(1e-5, 0.05), dvol=st.floats(1e-5, 0.05))
def test_predict_grows_with_size_and_volatility(q: float, dq: float, vol: float, dvol: float) -> None:
    model = EwmaCostModel(CONFIG, SimulatorConfig())
    base = model.predict("AAA", q, vol, 1e6, 1.0)
    assert model.predict("AAA", q + dq, vol, 1e6, 1.0) > base
    assert model.predict("AAA", q, vol + dvol, 1e6, 1.0) > base


def test_fresh_model_predicts_the_preset_hand_computed() -> None:
    model = EwmaCostModel(CONFIG, PRESET)
    # sigma 10 bps, q/V = 0.04: half-spread 2.0 + 1.0 + 0.5 * 10 * 0.2 = 4.0 bps
    assert model.predict("AAA", 400.0, 0.001, 10_000.0, 2.0) == pytest.approx(4.0)
    assert (model.spread_scale("AAA"), model.impact_scale("AAA")) == (1.0, 1.0)


def test_update_regime_change_closes_half_the_gap_after_one_half_life() -> None:
    model = EwmaCostModel(CONFIG, PRESET)
    # Preset half-spread 2 bps, paid 1: spread multiplier -> 0.5; slippage 4 - 1 = 3 bps vs formula
    # 1 + 0.5 * 10 * 0.1 = 1.5 bps: impact multiplier -> 2.
    for _ in range(2_000):
        model.update(_obs(4.0, half_spread_bps=1.0))
    assert model.spread_scale("AAA") == pytest.approx(0.5, abs=1e-9)
    assert model.impact_scale("AAA") == pytest.approx(2.0, abs=1e-9)
    for _ in range(20):  # one half-life towards paid 3 (x1.5) and slippage 7 bps (x14/3)
        model.update(_obs(10.0, half_spread_bps=3.0))
    assert model.spread_scale("AAA") == pytest.approx(1.0, abs=1e-9)
    assert model.impact_scale("AAA") == pytest.approx((2.0 + 14.0 / 3.0) / 2.0, abs=1e-9)
    assert model.n_observations("AAA") == 2_020


def test_zero_cost_preset_stays_free_whatever_was_learned() -> None:
    zero = dataclasses.replace(BARE)
    model = EwmaCostModel(CONFIG, zero)
    model.update([_obs(25.0, half_spread_bps=10.0, preset_half_spread_bps=0.0)] * 50)
    assert model.predict("AAA", 5_000.0, 0.02, 10_000.0, 0.0) == 0.0


def test_save_load_round_trips_state_and_hash(tmp_path: Path) -> None:
    model = EwmaCostModel(CONFIG, PRESET)
    for i in range(50):
        model.update(_obs(5.0 + i % 3, symbol="AAA" if i % 2 else "BBB"))
    digest = model.save(tmp_path / "cost.json")
    loaded = EwmaCostModel.load(tmp_path / "cost.json", CONFIG, PRESET, expected_sha256=digest)
    assert loaded.state_hash == digest == model.state_hash
    assert loaded.cost_hash == model.cost_hash
    assert len(digest) == 64
    for symbol in ("AAA", "BBB", "CCC"):
        assert loaded.predict(symbol, 300.0, 0.002, 5_000.0, 1.5) == model.predict(symbol, 300.0, 0.002, 5_000.0, 1.5)
    model.update(_obs(9.0))
    assert model.state_hash != digest
    # The cost hash covers the preset too: the same learned state on another preset is another cost truth.
    assert EwmaCostModel.load(tmp_path / "cost.json", CONFIG, SimulatorConfig()).cost_hash != loaded.cost_hash


def test_from_config_loads_the_state_path_and_fails_on_a_missing_file(tmp_path: Path) -> None:
    model = EwmaCostModel(CONFIG, PRESET)
    model.update(_obs(5.0))
    path = tmp_path / "cost.json"
    model.save(path)
    loaded = EwmaCostModel.from_config(dataclasses.replace(CONFIG, state_path=str(path)), PRESET)
    assert loaded.state_hash == model.state_hash
    assert EwmaCostModel.from_config(CONFIG, PRESET).state_hash != model.state_hash
    with pytest.raises(ConfigError, match="cannot read cost model state"):
        EwmaCostModel.from_config(dataclasses.replace(CONFIG, state_path=str(tmp_path / "nope.json")), PRESET)


def test_load_tampered_state_raises_manifest_verification_error(tmp_path: Path) -> None:
    model = EwmaCostModel(CONFIG, PRESET)
    model.update(_obs(5.0))
    path = tmp_path / "cost.json"
    model.save(path)
    payload = json.loads(path.read_text())
    payload["state"]["symbols"]["AAA"]["impact_scale"] += 0.1
    path.write_text(json.dumps(payload))
    with pytest.raises(ManifestVerificationError):
        EwmaCostModel.load(path, CONFIG, PRESET)
    payload["format_version"] = 99
    path.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match="format version"):
        EwmaCostModel.load(path, CONFIG, PRESET)


def test_cost_observation_and_config_bad_values_raise() -> None:
    with pytest.raises(OrderValidationError):
        CostObservation("AAA", 1, 0.0, 100.0, 100.0, 0.001, 1_000.0, 1.0)
    with pytest.raises(OrderValidationError):
        CostObservation("AAA", 1, 1.0, math.nan, 100.0, 0.001, 1_000.0, 1.0)
    with pytest.raises(OrderValidationError):
        CostObservation("AAA", 1, 1.0, 100.0, 100.0, 0.001, 1_000.0, -1.0)
    with pytest.raises(ConfigError):
        EwmaCostModelConfig(half_life=0.0)


def test_simulator_with_learned_model_realizes_the_models_prediction() -> None:
    frame = random_walk_frame(50, volume=1_000.0)
    preset = dataclasses.replace(BARE, spread_bps=4.0, max_half_spread_bps=100.0, spread_vol_coef=0.3,
                                 impact_coef=0.9, participation_cap=0.2)
    model = EwmaCostModel(CONFIG, preset)
    model.update([CostObservation("AAA", 1, 50.0, 100.2, 100.0, 0.002, 1_000.0, 2.0, 3.0)] * 5)
    assert model.spread_scale("AAA") != 1.0 and model.impact_scale("AAA") != 1.0
    sim = ExecutionSimulator(preset, frame, cost_model=model, seed=0)
    ts = frame.index.get_level_values("timestamp")
    res = sim.execute(SimOrder("AAA", OrderSide.BUY, 150.0, ts[10], time_in_force=TimeInForce.IOC))
    f = res.fills[0]
    realized_bps = (f.spread_cost + f.impact_cost) / (f.quantity * f.reference_price) * 1e4
    sigma = float(sim.market.vol[10, 0])
    preset_hs_bps = 2.0 + 0.3 * sigma * 1e4  # the preset's quoted half-spread widened by volatility
    expected = model.predict("AAA", f.quantity, sigma, 1_000.0, preset_hs_bps)
    assert realized_bps == pytest.approx(expected, rel=1e-9)
    # Simulated fills feed back into the model as fill reports carrying the preset's half-spread.
    (obs,) = sim.cost_observations([res])
    assert obs.preset_half_spread_bps == pytest.approx(preset_hs_bps, rel=1e-12)
    before = model.n_observations("AAA")
    model.update(obs)
    assert model.n_observations("AAA") == before + 1
    assert np.isfinite(model.spread_scale("AAA"))
