"""Per-order path: validation, time in force, limits, fees, seeding, and agreement with the vectorised path."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_trading.errors import OrderValidationError
from ai_trading.execution import (
    ExecutionSimulator,
    Liquidity,
    OrderSide,
    OrderType,
    SimOrder,
    SimOrderStatus,
    TimeInForce,
)
from tests.execution.conftest import BARE, random_walk_frame

# Two sessions of 1-minute bars, 40 bars each.
FRAME = pd.concat([random_walk_frame(40, start="2020-01-06 08:00", seed=1),
                   random_walk_frame(40, start="2020-01-07 08:00", seed=2)]).sort_index()
STAMPS = FRAME.index.get_level_values("timestamp")
REALISTIC = dataclasses.replace(
    BARE, spread_bps=None, spread_vol_coef=0.25, min_half_spread_bps=0.5, max_half_spread_bps=100.0,
    latency="lognormal", latency_ms=2000.0, latency_sigma=1.0, spike_prob=0.2, spike_ms=4000.0,
    slippage_fixed_bps=0.5, slippage_vol_coef=0.1, impact_coef=0.7, participation_cap=0.1, fee_bps=1.0,
    fee_per_share=0.01, fee_min=0.3,
)


def _order(qty: float = 10.0, side: OrderSide = OrderSide.BUY, at: int = 0, **kw: object) -> SimOrder:
    return SimOrder("AAA", side, qty, STAMPS[at], **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sim() -> ExecutionSimulator:
    return ExecutionSimulator(REALISTIC, FRAME, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"quantity": 0.0}, "quantity"),
        ({"quantity": -5.0}, "quantity"),
        ({"quantity": math.nan}, "quantity"),
        ({"order_type": OrderType.LIMIT}, "limit price"),
        ({"order_type": OrderType.LIMIT, "limit_price": math.nan}, "limit price"),
        ({"limit_price": 100.0}, "market order"),
        ({"submitted_at": pd.Timestamp("2020-01-06 08:00")}, "tz-aware"),
    ],
)
def test_sim_order_bad_fields_raise_order_validation_error(kwargs: dict, match: str) -> None:
    base = {"symbol": "AAA", "side": OrderSide.BUY, "quantity": 1.0, "submitted_at": STAMPS[0]}
    with pytest.raises(OrderValidationError, match=match):
        SimOrder(**{**base, **kwargs})


@pytest.mark.parametrize(
    ("order", "match"),
    [
        (SimOrder("ZZZ", OrderSide.BUY, 1.0, STAMPS[0]), "unknown symbol"),
        (SimOrder("AAA", OrderSide.BUY, 1.0, STAMPS[0] - pd.Timedelta("1min")), "before"),
        (SimOrder("AAA", OrderSide.BUY, 1.0, STAMPS[-1]), "no bar left"),
        (SimOrder("AAA", OrderSide.BUY, 1.0, STAMPS[-1] + pd.Timedelta("1D")), "after"),
    ],
)
def test_execute_order_outside_data_raises_order_validation_error(sim: ExecutionSimulator, order: SimOrder,
                                                                  match: str) -> None:
    with pytest.raises(OrderValidationError, match=match):
        sim.execute(order)


def test_execute_zero_cost_market_order_fills_at_arrival_without_fees() -> None:
    zero = ExecutionSimulator(BARE, FRAME, seed=0)
    res = zero.execute(_order(qty=123.0, at=5))
    assert res.status is SimOrderStatus.FILLED
    assert res.arrival_price == FRAME["open"].iloc[6]  # decided at bar 5's close -> bar 6's open
    assert res.average_price == res.arrival_price
    assert res.slippage_bps == 0.0
    assert res.fees == 0.0
    assert res.realized_cost == 0.0


def test_execute_mid_bar_submission_executes_on_next_bar() -> None:
    zero = ExecutionSimulator(BARE, FRAME, seed=0)
    res = zero.execute(SimOrder("AAA", OrderSide.BUY, 1.0, STAMPS[5] + pd.Timedelta("30s")))
    assert res.fills[0].time == STAMPS[6]


@settings(max_examples=30, deadline=None)
@given(qty=st.floats(1.0, 5_000.0), seed=st.integers(0, 2**31), at=st.integers(0, 30),
       tif=st.sampled_from([TimeInForce.DAY, TimeInForce.GTC, TimeInForce.IOC]))
def test_execute_above_participation_cap_fills_partially_and_carries_over(qty: float, seed: int, at: int,
                                                                          tif: TimeInForce) -> None:
    sim = ExecutionSimulator(REALISTIC, FRAME, seed=seed)
    res = sim.execute(_order(qty=qty, at=at, time_in_force=tif))
    cap = 0.1 * 1_000.0
    assert all(f.quantity <= cap + 1e-9 for f in res.fills)
    assert res.filled_quantity + res.unfilled_quantity == pytest.approx(qty)
    times = [f.time for f in res.fills]
    assert times == sorted(set(times))  # one child fill per bar
    if tif is TimeInForce.IOC:
        assert len(res.fills) == 1
        assert res.status is (SimOrderStatus.FILLED if qty <= cap else SimOrderStatus.CANCELLED)
    elif tif is TimeInForce.DAY:
        assert all(t.date() == STAMPS[at + 1].date() for t in times)  # expires with its session
        bars_left = 39 - at
        expected_fill = min(qty, cap * bars_left)
        assert res.filled_quantity == pytest.approx(expected_fill)
        assert res.status is (SimOrderStatus.FILLED if qty <= cap * bars_left else SimOrderStatus.EXPIRED)
    else:
        assert res.filled_quantity == pytest.approx(min(qty, cap * (79 - at)))
        assert res.status is (SimOrderStatus.FILLED if qty <= cap * (79 - at) else SimOrderStatus.WORKING)


def test_execute_zero_volume_bar_fills_nothing() -> None:
    frame = FRAME.copy()
    frame.iloc[6, frame.columns.get_loc("volume")] = 0.0
    sim = ExecutionSimulator(REALISTIC, frame, seed=0)
    assert sim.execute(_order(at=5, time_in_force=TimeInForce.IOC)).filled_quantity == 0.0
    res = sim.execute(_order(at=5, time_in_force=TimeInForce.DAY))
    assert res.fills[0].time == STAMPS[7]


@settings(max_examples=40, deadline=None)
@given(offset_bps=st.floats(-80.0, 80.0), qty=st.floats(1.0, 400.0), seed=st.integers(0, 2**31),
       side=st.sampled_from(list(OrderSide)), at=st.integers(0, 70))
def test_execute_limit_order_never_fills_worse_than_limit(offset_bps: float, qty: float, seed: int,
                                                          side: OrderSide, at: int) -> None:
    sim = ExecutionSimulator(REALISTIC, FRAME, seed=seed)
    limit = float(FRAME["close"].iloc[at]) * (1 + offset_bps * 1e-4)
    res = sim.execute(_order(qty=qty, side=side, at=at, order_type=OrderType.LIMIT, limit_price=limit,
                             time_in_force=TimeInForce.GTC))
    for f in res.fills:
        assert side.sign * (f.price - limit) <= 0.0
        if f.liquidity is Liquidity.MAKER:
            assert f.price == limit
            assert f.quantity <= 0.1 * 1_000.0 * (1 - REALISTIC.queue_haircut) + 1e-9


def test_execute_limit_far_below_market_never_fills() -> None:
    sim = ExecutionSimulator(REALISTIC, FRAME, seed=0)
    res = sim.execute(_order(order_type=OrderType.LIMIT, limit_price=1.0, time_in_force=TimeInForce.GTC))
    assert res.fills == ()
    assert res.status is SimOrderStatus.WORKING


@settings(max_examples=30, deadline=None)
@given(qty=st.floats(1.0, 300.0), seed=st.integers(0, 2**31), per_share=st.floats(0.0, 0.05),
       bps=st.floats(0.0, 5.0), minimum=st.floats(0.0, 3.0))
def test_execute_fees_are_exact_per_child_fill(qty: float, seed: int, per_share: float, bps: float,
                                               minimum: float) -> None:
    config = dataclasses.replace(REALISTIC, fee_per_share=per_share, fee_bps=bps, fee_min=minimum)
    res = ExecutionSimulator(config, FRAME, seed=seed).execute(_order(qty=qty, time_in_force=TimeInForce.GTC))
    for f in res.fills:
        assert f.fee == pytest.approx(max(per_share * f.quantity + bps * 1e-4 * f.quantity * f.price, minimum),
                                      rel=1e-12, abs=1e-12)
    assert res.fees == pytest.approx(sum(f.fee for f in res.fills), rel=1e-12)


def test_execute_fees_hand_computed() -> None:
    config = dataclasses.replace(BARE, fee_per_share=0.02, fee_bps=3.0, fee_min=1.0)
    sim = ExecutionSimulator(config, FRAME, seed=0)
    price = float(FRAME["open"].iloc[1])
    big = sim.execute(_order(qty=100.0))
    assert big.fees == pytest.approx(100 * 0.02 + 100 * price * 3e-4)  # ~2 + 3.0 at price ~100
    small = sim.execute(_order(qty=1.0))
    assert small.fees == 1.0  # 0.02 + 0.03 -> the minimum


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), other=st.integers(0, 2**31), at=st.integers(0, 70))
def test_execute_same_seed_identical_other_seed_differs(seed: int, other: int, at: int) -> None:
    orders = [_order(qty=50.0, at=at), _order(qty=300.0, side=OrderSide.SELL, at=at, time_in_force=TimeInForce.GTC)]
    a = ExecutionSimulator(REALISTIC, FRAME, seed=seed).execute_many(orders)
    b = ExecutionSimulator(REALISTIC, FRAME, seed=seed).execute_many(orders)
    assert a == b
    if other != seed:
        c = ExecutionSimulator(REALISTIC, FRAME, seed=other).execute_many(orders)
        # lognormal latency (median 2 s of a 60 s bar) moves the reference price along the bar
        assert [f.reference_price for r in a for f in r.fills] != [f.reference_price for r in c for f in r.fills]


@settings(max_examples=25, deadline=None)
@given(small=st.floats(1.0, 50.0), factor=st.floats(1.01, 2.0), seed=st.integers(0, 2**31),
       at=st.integers(0, 70))
def test_execute_expected_cost_grows_with_order_size(small: float, factor: float, seed: int, at: int) -> None:
    costs = []
    for qty in (small, small * factor):  # both within one bar's capacity (100)
        res = ExecutionSimulator(REALISTIC, FRAME, seed=seed).execute(_order(qty=qty, at=at))
        f = res.fills[0]
        costs.append((f.spread_cost + f.impact_cost) / (f.quantity * f.reference_price))
    assert costs[1] > costs[0]


@settings(max_examples=25, deadline=None)
@given(qty=st.floats(1.0, 2_000.0), seed=st.integers(0, 2**31), side=st.sampled_from(list(OrderSide)))
def test_execute_per_order_agrees_with_vectorised_path(qty: float, seed: int, side: OrderSide) -> None:
    per_order = ExecutionSimulator(REALISTIC, FRAME, seed=seed).execute(
        _order(qty=qty, side=side, time_in_force=TimeInForce.GTC))
    vec = ExecutionSimulator(REALISTIC, FRAME, seed=seed).run_targets(
        np.full((80, 1), side.sign * qty), 1e6, targets_are_weights=False)
    rows = np.flatnonzero(vec.qty[:, 0])
    assert [f.time for f in per_order.fills] == [STAMPS[r] for r in rows]
    for f, r in zip(per_order.fills, rows, strict=True):
        assert side.sign * f.quantity == vec.qty[r, 0]
        assert (f.price, f.reference_price, f.fee) == (vec.price[r, 0], vec.ref[r, 0], vec.fee[r, 0])
        assert (f.spread_cost, f.impact_cost) == (vec.spread[r, 0], vec.impact[r, 0])
