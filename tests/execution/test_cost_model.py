"""EWMA cost model: monotone predictions, convergence, half-life, persistence, one cost truth with the simulator."""

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
    TimeInForce,
)
from tests.execution.conftest import BARE, random_walk_frame

CONFIG = EwmaCostModelConfig(half_life=20.0, prior_half_spread_bps=2.0, spread_vol_coef=0.0,
                             slippage_fixed_bps=1.0, slippage_vol_coef=0.0, impact_coef=0.5)


def _obs(cost_bps: float, half_spread_bps: float | None = 1.0, symbol: str = "AAA") -> CostObservation:
    ref = 100.0
    return CostObservation(symbol, 1, 100.0, ref * (1 + cost_bps * 1e-4), ref, 0.001, 10_000.0, half_spread_bps)


@settings(max_examples=50, deadline=None)
@given(q=st.floats(1.0, 1e5), dq=st.floats(1.0, 1e5), vol=st.floats(1e-5, 0.05), dvol=st.floats(1e-5, 0.05))
def test_predict_grows_with_size_and_volatility(q: float, dq: float, vol: float, dvol: float) -> None:
    model = EwmaCostModel(EwmaCostModelConfig())
    base = model.predict("AAA", q, 100.0, vol, 1e6)
    assert model.predict("AAA", q + dq, 100.0, vol, 1e6) > base
    assert model.predict("AAA", q, 100.0, vol + dvol, 1e6) > base


def test_predict_unseen_symbol_uses_priors_hand_computed() -> None:
    model = EwmaCostModel(dataclasses.replace(CONFIG, symbol_half_spread_bps={"BBB": 4.0}))
    # sigma 10 bps, q/V = 0.04: 2.0 + 1.0 * (1.0 + 0.5 * 10 * 0.2) = 4.0 bps
    assert model.predict("AAA", 400.0, 50.0, 0.001, 10_000.0) == pytest.approx(4.0)
    assert model.predict("BBB", 400.0, 50.0, 0.001, 10_000.0) == pytest.approx(6.0)


def test_update_stationary_stream_converges_to_its_mean() -> None:
    model = EwmaCostModel(CONFIG)
    rng = np.random.default_rng(11)
    for cost in rng.normal(6.0, 2.0, 3_000):
        model.update(_obs(float(cost)))
    # EWMA noise: sd * sqrt(a / (2 - a)) with a = 1 - 0.5**(1/20) -> 2 * 0.13 = 0.27 bps; 4 sd tolerance.
    assert model.predict("AAA", 100.0, 100.0, 0.001, 10_000.0) == pytest.approx(6.0, abs=1.1)
    assert model.n_observations("AAA") == 3_000


def test_update_regime_change_closes_half_the_gap_after_one_half_life() -> None:
    model = EwmaCostModel(CONFIG)
    for _ in range(2_000):
        model.update(_obs(4.0, half_spread_bps=1.0))
    before = model.predict("AAA", 100.0, 100.0, 0.001, 10_000.0)
    assert before == pytest.approx(4.0, abs=1e-9)
    for _ in range(20):  # one half-life
        model.update(_obs(10.0, half_spread_bps=3.0))
    assert model.predict("AAA", 100.0, 100.0, 0.001, 10_000.0) == pytest.approx(7.0, abs=1e-9)
    assert model.half_spread_bps("AAA") == pytest.approx(2.0, abs=1e-9)
    for _ in range(20):  # two half-lives: three quarters of the way
        model.update(_obs(10.0, half_spread_bps=3.0))
    assert model.predict("AAA", 100.0, 100.0, 0.001, 10_000.0) == pytest.approx(8.5, abs=1e-9)


def test_save_load_round_trips_state_and_hash(tmp_path: Path) -> None:
    model = EwmaCostModel(dataclasses.replace(CONFIG, symbol_half_spread_bps={"BBB": 4.0}))
    for i in range(50):
        model.update(_obs(5.0 + i % 3, symbol="AAA" if i % 2 else "BBB"))
    digest = model.save(tmp_path / "cost.json")
    loaded = EwmaCostModel.load(tmp_path / "cost.json", expected_sha256=digest)
    assert loaded.state_hash == digest == model.state_hash
    assert len(digest) == 64
    for symbol in ("AAA", "BBB", "CCC"):
        assert loaded.predict(symbol, 300.0, 10.0, 0.002, 5_000.0) == model.predict(symbol, 300.0, 10.0, 0.002,
                                                                                     5_000.0)
    model.update(_obs(9.0))
    assert model.state_hash != digest


def test_load_tampered_state_raises_manifest_verification_error(tmp_path: Path) -> None:
    model = EwmaCostModel(CONFIG)
    model.update(_obs(5.0))
    path = tmp_path / "cost.json"
    model.save(path)
    payload = json.loads(path.read_text())
    payload["state"]["symbols"]["AAA"]["impact_scale"] += 0.1
    path.write_text(json.dumps(payload))
    with pytest.raises(ManifestVerificationError):
        EwmaCostModel.load(path)
    payload["format_version"] = 99
    path.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match="format version"):
        EwmaCostModel.load(path)


def test_cost_observation_bad_values_raise() -> None:
    with pytest.raises(OrderValidationError):
        CostObservation("AAA", 1, 0.0, 100.0, 100.0, 0.001, 1_000.0)
    with pytest.raises(OrderValidationError):
        CostObservation("AAA", 1, 1.0, math.nan, 100.0, 0.001, 1_000.0)
    with pytest.raises(ConfigError):
        EwmaCostModelConfig(half_life=0.0)


def test_simulator_with_cost_model_realizes_the_models_prediction() -> None:
    frame = random_walk_frame(50, volume=1_000.0)
    model = EwmaCostModel(EwmaCostModelConfig(spread_vol_coef=0.3, impact_coef=0.9))
    model.update([CostObservation("AAA", 1, 50.0, 100.2, 100.0, 0.002, 1_000.0, 3.0)] * 5)
    sim = ExecutionSimulator(dataclasses.replace(BARE, participation_cap=0.2), frame, cost_model=model, seed=0)
    ts = frame.index.get_level_values("timestamp")
    res = sim.execute(SimOrder("AAA", OrderSide.BUY, 150.0, ts[10], time_in_force=TimeInForce.IOC))
    f = res.fills[0]
    realized_bps = (f.spread_cost + f.impact_cost) / (f.quantity * f.reference_price) * 1e4
    expected = model.predict("AAA", f.quantity, f.reference_price, float(sim.market.vol[10, 0]), 1_000.0)
    assert realized_bps == pytest.approx(expected, rel=1e-9)
    # Simulated fills feed back into the model as fill reports.
    before = model.n_observations("AAA")
    model.update(res.cost_observations())
    assert model.n_observations("AAA") == before + 1
