"""Vectorised path: hand-computed fills, exact accounting, and step == sequence to the bit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_trading.errors import ConfigError
from ai_trading.execution import ExecParams, MarketArrays, run_targets, step
from tests.execution.conftest import BARE, FULL_COST, frame_from_rows, random_walk_frame

DAILY = [
    ("2020-01-02", "AAA", 100.0, 101.0, 99.0, 100.0, 1000.0),
    ("2020-01-03", "AAA", 102.0, 103.0, 101.0, 102.5, 1000.0),
    ("2020-01-06", "AAA", 101.0, 102.0, 100.0, 101.0, 1000.0),
    ("2020-01-07", "AAA", 101.0, 102.0, 100.0, 101.5, 0.0),
    ("2020-01-08", "AAA", 100.0, 101.0, 99.0, 100.0, 1000.0),
]


def _market(rows: list, **overrides: object) -> tuple[MarketArrays, ExecParams]:
    config = dataclasses.replace(BARE, **overrides)  # type: ignore[arg-type]
    market = MarketArrays.from_bars(frame_from_rows(rows), config)
    return market, ExecParams.from_config(config, market)


def test_run_targets_hand_computed_buy_matches_by_hand() -> None:
    market, params = _market(DAILY, spread_bps=10.0, min_half_spread_bps=0.0, max_half_spread_bps=50.0,
                             slippage_fixed_bps=1.0, fee_bps=2.0, fee_per_share=0.01)
    targets = np.full((5, 1), 50.0)
    res = run_targets(market, params, targets, np.random.default_rng(0), initial_cash=10_000.0,
                      targets_are_weights=False)
    # Bar 1: open 102, half-spread 5 bps + 1 bp fixed -> 102 * 1.0006 = 102.0612.
    assert res.qty[1, 0] == 50.0
    assert res.price[1, 0] == pytest.approx(102.0612, abs=1e-9)
    assert res.spread[1, 0] == pytest.approx(2.55, abs=1e-9)  # 50 * 102 * 0.0005
    assert res.impact[1, 0] == pytest.approx(0.51, abs=1e-9)  # 50 * 102 * 0.0001
    assert res.fee[1, 0] == pytest.approx(0.5 + 1.020612, abs=1e-9)  # 0.01/share + 2 bps of 5103.06
    assert res.cash[1] == pytest.approx(4895.419388, abs=1e-7)
    assert res.equity[1] == pytest.approx(4895.419388 + 50 * 102.5, abs=1e-7)
    assert np.all(res.qty[2:] == 0.0)  # target reached: nothing more trades
    assert res.equity[0] == 10_000.0


def test_run_targets_above_participation_cap_fills_partially_and_carries_over() -> None:
    market, params = _market(DAILY, participation_cap=0.1)
    res = run_targets(market, params, np.full((5, 1), 250.0), np.random.default_rng(0), initial_cash=1e5,
                      targets_are_weights=False)
    # 100 per bar (10% of 1000), nothing on the zero-volume bar 3, the last 50 on bar 4.
    np.testing.assert_array_equal(res.qty[:, 0], [0.0, 100.0, 100.0, 0.0, 50.0])
    np.testing.assert_array_equal(res.positions[:, 0], [0.0, 100.0, 200.0, 200.0, 250.0])


def test_run_targets_zero_cost_fills_at_open_and_keeps_equity_identity() -> None:
    market, params = _market(DAILY)
    w = np.array([[0.5], [0.5], [-0.3], [0.0], [0.2]])
    res = run_targets(market, params, w, np.random.default_rng(3), initial_cash=1_000.0)
    traded = res.qty[:, 0] != 0
    np.testing.assert_array_equal(res.price[traded, 0], market.open[traded, 0])
    assert res.cost.sum() == 0.0
    # Target shares were w * equity / close at the decision bar: bar 1 buys 0.5 * 1000 / 100 = 5.
    assert res.positions[1, 0] == pytest.approx(5.0)
    np.testing.assert_allclose(res.equity, res.cash + (res.positions * market.mark).sum(axis=1), rtol=1e-13)


def _gross_equity(market: MarketArrays, res, cash0: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Equity had every fill happened at its reference price with no fees, rebuilt from fills only."""
    outlay = np.nan_to_num(res.qty * res.ref).sum(axis=1)
    positions = np.cumsum(res.qty, axis=0)
    return cash0 - np.cumsum(outlay) + (positions * market.mark).sum(axis=1)


def test_run_targets_net_pnl_equals_gross_minus_costs_every_period() -> None:
    frame = random_walk_frame(400, symbols=("AAA", "BBB", "CCC"), volume=50.0)
    config = dataclasses.replace(BARE, spread_bps=None, spread_vol_coef=0.25, min_half_spread_bps=0.5,
                                 max_half_spread_bps=100.0, latency="lognormal", latency_ms=3000.0,
                                 spike_prob=0.2, spike_ms=5000.0, slippage_fixed_bps=0.5, slippage_vol_coef=0.1,
                                 impact_coef=0.8, participation_cap=0.2, fee_bps=1.0, fee_per_share=0.01,
                                 fee_min=0.5)
    market = MarketArrays.from_bars(frame, config)
    params = ExecParams.from_config(config, market)
    w = np.random.default_rng(1).uniform(-0.5, 0.5, (400, 3))
    res = run_targets(market, params, w, np.random.default_rng(2), initial_cash=1e5)
    gross = _gross_equity(market, res, 1e5)
    np.testing.assert_allclose(res.equity, gross - np.cumsum(res.cost), rtol=0, atol=1e-6)
    assert res.cost[1:].sum() > 0
    assert np.all(res.equity[1:] < gross[1:])
    np.testing.assert_allclose(res.equity, res.cash + (res.positions * market.mark).sum(axis=1), rtol=1e-13)
    filled = res.qty != 0
    # Buys fill above their reference, sells below; costs split into spread + impact exactly.
    assert np.all(np.sign(res.qty[filled]) * (res.price[filled] - res.ref[filled]) > 0)
    np.testing.assert_allclose(np.abs(res.qty[filled]) * np.abs(res.price[filled] - res.ref[filled]),
                               res.spread[filled] + res.impact[filled], rtol=1e-9)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 4), weights=st.booleans())
def test_step_batch_repeated_equals_run_targets_bit_for_bit(seed: int, batch: int, weights: bool) -> None:
    frame = random_walk_frame(60, symbols=("AAA", "BBB"), volume=40.0)
    config = FULL_COST
    market = MarketArrays.from_bars(frame, config)
    params = ExecParams.from_config(config, market)
    rng_targets = np.random.default_rng(seed)
    targets = rng_targets.uniform(-0.8, 0.8, (60, 2)) if weights else rng_targets.uniform(-300, 300, (60, 2))
    expected = run_targets(market, params, targets, np.random.default_rng(seed), initial_cash=1e4,
                           targets_are_weights=weights)
    # B identical envs in one batch consume B times the draws, so check B=1 stepping, then a batch of
    # envs each with its own generator-free view: env b at its own time index.
    rng = np.random.default_rng(seed)
    pos, cash = np.zeros((1, 2)), np.array([1e4])
    for t in range(59):
        out = step(market, params, pos, cash, targets[t : t + 1], [t], rng, targets_are_weights=weights)
        pos, cash = out.positions, out.cash
        np.testing.assert_array_equal(out.positions[0], expected.positions[t + 1])
        np.testing.assert_array_equal(out.cash[0], expected.cash[t + 1])
        np.testing.assert_array_equal(out.equity[0], expected.equity[t + 1])
        for name in ("qty", "price", "spread", "impact", "fee", "notional"):
            np.testing.assert_array_equal(getattr(out, name)[0], getattr(expected, name)[t + 1], err_msg=name)
    # A batch of envs at different time indices: each row equals the sequence row of that time when the
    # env's state is the sequence's state (randomness aside: a zero-latency-randomness config).
    det = dataclasses.replace(config, latency="constant", spike_prob=0.0)
    det_params = ExecParams.from_config(det, market)
    seq = run_targets(market, det_params, targets, np.random.default_rng(0), initial_cash=1e4,
                      targets_are_weights=weights)
    ts = np.random.default_rng(seed).integers(0, 59, batch)
    out = step(market, det_params, seq.positions[ts], seq.cash[ts], targets[ts], ts, np.random.default_rng(5),
               targets_are_weights=weights)
    np.testing.assert_array_equal(out.equity, seq.equity[ts + 1])
    np.testing.assert_array_equal(out.positions, seq.positions[ts + 1])


def _latencies_ms(config_overrides: dict, n_bars: int, seed: int) -> np.ndarray:
    """Latency of every fill, read back from where it met the bar: each 1-minute bar moves linearly from its
    open 100 (= its low) to its high and close 110, so a fill after ``lat`` ms references
    ``100 + 10 * lat / 60_000``."""
    rows = [(str(ts), "AAA", 100.0, 110.0, 100.0, 110.0, 1e9)
            for ts in pd.date_range("2020-01-06 08:00", periods=n_bars, freq="1min")]
    market, params = _market(rows, **config_overrides)
    targets = np.resize([[0.5], [0.0]], (n_bars, 1))  # a trade on every bar
    res = run_targets(market, params, targets, np.random.default_rng(seed), initial_cash=1e6)
    return (res.ref[1:, 0] - 100.0) / 10.0 * 60_000.0


def test_latency_lognormal_with_spikes_has_the_configured_distribution() -> None:
    n = 6_000
    lat = _latencies_ms({"latency": "lognormal", "latency_ms": 3_000.0, "latency_sigma": 0.4, "spike_prob": 0.25,
                         "spike_ms": 30_000.0, "spike_vol_coef": 0.0}, n + 1, seed=3)
    # A spike adds 30 s; without one, 20 s is 4.7 sigma above the 3 s median: the two never overlap here.
    spiked = lat > 20_000.0
    # Binomial(6000, 0.25): standard deviation 0.0056, so 0.03 is more than 5 of them.
    assert abs(spiked.mean() - 0.25) < 0.03
    for logs in (np.log(lat[~spiked]), np.log(lat[spiked] - 30_000.0)):  # spiked slots keep their base latency
        assert abs(np.median(logs) - np.log(3_000.0)) < 0.06
        assert abs(np.std(logs) - 0.4) < 0.04


def test_latency_constant_without_spikes_is_exactly_the_configured_latency() -> None:
    lat = _latencies_ms({"latency": "constant", "latency_ms": 1_500.0, "spike_prob": 0.0, "spike_ms": 30_000.0},
                        201, seed=4)
    np.testing.assert_allclose(lat, 1_500.0, rtol=1e-9)


def test_step_decision_on_last_bar_raises_config_error() -> None:
    market, params = _market(DAILY)
    with pytest.raises(ConfigError, match="decision index"):
        step(market, params, np.zeros((1, 1)), np.array([1.0]), np.zeros((1, 1)), [4], np.random.default_rng(0))


def test_market_arrays_symbols_with_different_ranges_are_masked_and_marked() -> None:
    rows = [*DAILY, ("2020-01-06", "BBB", 50.0, 51.0, 49.0, 50.5, 10.0), ("2020-01-07", "BBB", 50.0, 51.0, 49.0,
                                                                          49.5, 10.0)]
    market = MarketArrays.from_bars(frame_from_rows(rows), BARE)
    np.testing.assert_array_equal(market.tradable[:, 1], [False, False, True, True, False])
    np.testing.assert_array_equal(market.mark[:, 1], [0.0, 0.0, 50.5, 49.5, 49.5])
    assert np.all(market.volume[~market.tradable] == 0.0)
    params = ExecParams.from_config(BARE, market)
    # Weights on BBB before it exists or after it ends trade nothing.
    res = run_targets(market, params, np.full((5, 2), 0.4), np.random.default_rng(0), initial_cash=1e4)
    np.testing.assert_array_equal(res.qty[[1, 2, 4], 1], 0.0)
    assert res.qty[3, 1] != 0.0
