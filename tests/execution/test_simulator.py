"""Per-order path: validation, time in force, limits, fees, seeding, shared bar volume, and agreement with the
vectorised path."""

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
    FillEvent,
    Liquidity,
    OrderSide,
    OrderType,
    SimOrder,
    SimOrderStatus,
    TimeInForce,
)
from ai_trading.execution.kernels import path_price, path_range_after
from tests.execution.conftest import BARE, frame_from_rows, random_walk_frame

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


# Three symbols over the same two sessions: orders at many bars and symbols.
MULTI = pd.concat([random_walk_frame(40, start="2020-01-06 08:00", symbols=("AAA", "BBB", "CCC"), seed=3),
                   random_walk_frame(40, start="2020-01-07 08:00", symbols=("AAA", "BBB", "CCC"), seed=4)]
                  ).sort_index()
MULTI_STAMPS = MULTI.index.get_level_values("timestamp").unique()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), schedule=st.integers(0, 2**31))
def test_execute_per_order_agrees_with_vectorised_path_at_many_bars_and_symbols(seed: int, schedule: int) -> None:
    # Market orders that never share a bar and symbol: whole shares up to 250 take at most 3 bars at the
    # cap of 100, and the next order on a symbol is decided at least 3 bars later.
    rng = np.random.default_rng(schedule)
    symbols = ("AAA", "BBB", "CCC")
    targets = np.zeros((80, 3))
    orders = []
    for n, symbol in enumerate(symbols):
        d = int(rng.integers(0, 4))
        while d < 79:
            qty = float(rng.integers(1, 251))
            side = OrderSide.BUY if rng.random() < 0.5 else OrderSide.SELL
            orders.append(SimOrder(symbol, side, qty, MULTI_STAMPS[d], time_in_force=TimeInForce.GTC))
            targets[d:, n] += side.sign * qty
            d += 3 + int(rng.integers(0, 6))
    rng.shuffle(orders)  # the list order must not matter
    results = ExecutionSimulator(REALISTIC, MULTI, seed=seed).execute_many(orders)
    vec = ExecutionSimulator(REALISTIC, MULTI, seed=seed).run_targets(targets, 1e6, targets_are_weights=False)
    seen = np.zeros((80, 3), dtype=bool)
    for res in results:
        n = symbols.index(res.order.symbol)
        for f in res.fills:
            r = MULTI_STAMPS.get_loc(f.time)
            assert not seen[r, n]
            seen[r, n] = True
            assert res.order.side.sign * f.quantity == vec.qty[r, n]
            assert (f.price, f.reference_price, f.fee) == (vec.price[r, n], vec.ref[r, n], vec.fee[r, n])
            assert (f.spread_cost, f.impact_cost) == (vec.spread[r, n], vec.impact[r, n])
    assert np.array_equal(seen, vec.qty != 0.0)
    assert seen[2:].sum() > 10  # most fills are far from bar 0


def test_execute_noise_is_per_bar_and_symbol_whatever_the_call_order() -> None:
    early, late = _order(qty=40.0, at=3), _order(qty=40.0, side=OrderSide.SELL, at=10)
    one_by_one = ExecutionSimulator(REALISTIC, FRAME, seed=5)
    later_first = [one_by_one.execute(late), one_by_one.execute(early)]
    together = ExecutionSimulator(REALISTIC, FRAME, seed=5).execute_many([early, late])
    assert later_first[::-1] == together
    assert one_by_one.execute(late) == later_first[0]  # the same bar sees the same latency in every call


# -- limits: the far touch and the arrival time --------------------------------------------------------
SPREAD = dataclasses.replace(BARE, spread_bps=20.0, max_half_spread_bps=100.0, queue_haircut=0.5,
                             participation_cap=0.1)


@pytest.mark.parametrize("side", list(OrderSide))
def test_execute_limit_marketable_only_against_far_touch(side: OrderSide) -> None:
    at = 5
    sim = ExecutionSimulator(SPREAD, FRAME, seed=0)
    hs = float(sim.market.half_spread[at, 0])
    assert hs == pytest.approx(10e-4)
    mid = float(FRAME["open"].iloc[at + 1])  # zero latency: the arrival reference is the open
    touch = mid * (1.0 + side.sign * hs)

    def limit_order(limit: float) -> SimOrder:
        return _order(qty=30.0, side=side, at=at, order_type=OrderType.LIMIT, limit_price=limit,
                      time_in_force=TimeInForce.IOC)

    at_touch = sim.execute(limit_order(touch)).fills
    assert [f.liquidity for f in at_touch] == [Liquidity.TAKER]
    assert at_touch[0].price == touch
    assert at_touch[0].spread_cost == pytest.approx(30.0 * mid * hs, rel=1e-12)
    # Inside the spread (at the mid, or a hair short of the touch): not marketable, so it rests, and the bar
    # trades through it (every bar's range covers its open) -> a maker fill at the limit, no spread paid.
    for limit in (mid, touch * (1.0 - side.sign * 1e-6)):
        fills = sim.execute(limit_order(limit)).fills
        assert [f.liquidity for f in fills] == [Liquidity.MAKER]
        assert (fills[0].price, fills[0].spread_cost, fills[0].impact_cost) == (limit, 0.0, 0.0)
        assert fills[0].quantity == 30.0


def _mirror(rows: list[tuple[str, str, float, float, float, float, float]], flip: bool
            ) -> list[tuple[str, str, float, float, float, float, float]]:
    """The bars reflected around 100 (highs become lows): a sell sees what a buy saw."""
    if not flip:
        return rows
    return [(ts, s, 200.0 - o, 200.0 - lo, 200.0 - h, 200.0 - c, v) for ts, s, o, h, lo, c, v in rows]


@pytest.mark.parametrize("side", list(OrderSide))
def test_execute_resting_limit_fills_only_on_the_path_after_its_arrival(side: OrderSide) -> None:
    rows = [
        ("2020-01-06 08:00", "AAA", 100.0, 100.5, 99.5, 100.0, 1000.0),
        # up bar open -> low -> high -> close: the low (99) comes at 2/9 of the path, before the order
        # arrives at half the bar (100.25), and the rest of the bar stays above 100.25
        ("2020-01-06 08:01", "AAA", 100.0, 102.0, 99.0, 101.5, 1000.0),
        # up bar again: its low 99.2 is again early, but the order rests on the book from the open
        ("2020-01-06 08:02", "AAA", 101.0, 102.0, 99.2, 101.8, 1000.0),
        ("2020-01-06 08:03", "AAA", 101.8, 102.0, 101.5, 101.9, 1000.0),
    ]
    frame = frame_from_rows(_mirror(rows, side is OrderSide.SELL))
    config = dataclasses.replace(BARE, latency_ms=30_000.0)  # half of the 1-minute bar
    limit = 99.5 if side is OrderSide.BUY else 100.5
    stamps = frame.index.get_level_values("timestamp")

    def run(tif: TimeInForce) -> tuple[FillEvent, ...]:
        order = SimOrder("AAA", side, 10.0, stamps[0], OrderType.LIMIT, limit, tif)
        return ExecutionSimulator(config, frame, seed=0).execute(order).fills

    assert run(TimeInForce.IOC) == ()
    fills = run(TimeInForce.GTC)
    assert [(f.time, f.liquidity, f.price, f.quantity) for f in fills] == [
        (stamps[2], Liquidity.MAKER, limit, 10.0)]


# -- shared bar volume ---------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), qty=st.floats(5.0, 400.0), weights=st.lists(st.floats(0.05, 1.0), min_size=2,
                                                                                   max_size=6),
       at=st.integers(0, 70), side=st.sampled_from(list(OrderSide)))
def test_execute_split_order_fills_and_pays_impact_like_the_unsplit_order(seed: int, qty: float,
                                                                          weights: list[float], at: int,
                                                                          side: OrderSide) -> None:
    pieces = [qty * w / sum(weights) for w in weights]
    whole = ExecutionSimulator(REALISTIC, FRAME, seed=seed).execute(
        _order(qty=qty, side=side, at=at, time_in_force=TimeInForce.IOC))
    split = ExecutionSimulator(REALISTIC, FRAME, seed=seed).execute_many(
        [_order(qty=q, side=side, at=at, time_in_force=TimeInForce.IOC) for q in pieces])
    fills = [f for r in split for f in r.fills]
    assert sum(f.quantity for f in fills) == pytest.approx(whole.filled_quantity, rel=1e-12)
    assert sum(f.quantity for f in fills) <= 0.1 * 1_000.0 + 1e-9
    assert {f.reference_price for f in fills} == {whole.fills[0].reference_price}
    assert sum(r.impact_cost for r in split) == pytest.approx(whole.impact_cost, rel=1e-12)
    assert sum(r.spread_cost for r in split) == pytest.approx(whole.spread_cost, rel=1e-12)


def test_execute_orders_on_one_bar_share_its_participation_cap() -> None:
    orders = [_order(qty=60.0, at=5, time_in_force=TimeInForce.IOC) for _ in range(5)]
    results = ExecutionSimulator(REALISTIC, FRAME, seed=0).execute_many(orders)
    assert sum(r.filled_quantity for r in results) == pytest.approx(0.1 * 1_000.0, rel=1e-12)
    assert [r.filled_quantity for r in results[:2]] == [60.0, pytest.approx(40.0, rel=1e-12)]
    assert [r.status for r in results[2:]] == [SimOrderStatus.CANCELLED] * 3


def test_execute_bar_volume_goes_by_submission_time_not_list_order() -> None:
    first = SimOrder("AAA", OrderSide.BUY, 100.0, STAMPS[5] + pd.Timedelta("10s"), time_in_force=TimeInForce.IOC)
    second = SimOrder("AAA", OrderSide.SELL, 100.0, STAMPS[5] + pd.Timedelta("20s"),
                      time_in_force=TimeInForce.IOC)
    later, earlier = ExecutionSimulator(REALISTIC, FRAME, seed=0).execute_many([second, first])
    assert (earlier.filled_quantity, later.filled_quantity) == (100.0, 0.0)


def test_execute_maker_fill_takes_its_haircut_of_the_volume_left() -> None:
    at = 5
    mid = float(FRAME["open"].iloc[at + 1])
    taker = _order(qty=60.0, at=at, time_in_force=TimeInForce.IOC)
    maker = SimOrder("AAA", OrderSide.BUY, 100.0, STAMPS[at] + pd.Timedelta("1s"), OrderType.LIMIT, mid,
                     TimeInForce.IOC)
    _, passive = ExecutionSimulator(SPREAD, FRAME, seed=0).execute_many([taker, maker])
    assert [f.liquidity for f in passive.fills] == [Liquidity.MAKER]
    assert passive.filled_quantity == pytest.approx((100.0 - 60.0) * 0.5, rel=1e-12)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), layout=st.integers(0, 2**31))
def test_execute_many_results_do_not_depend_on_list_order(seed: int, layout: int) -> None:
    # 12 orders with distinct submission times over 12 bars, so several work on each bar
    rng = np.random.default_rng(layout)
    seconds = rng.choice(12 * 60, 12, replace=False)
    orders = [SimOrder("AAA", OrderSide.BUY if rng.random() < 0.5 else OrderSide.SELL, float(rng.uniform(1, 150)),
                       STAMPS[0] + pd.Timedelta(seconds=int(sec)),
                       time_in_force=[TimeInForce.IOC, TimeInForce.DAY, TimeInForce.GTC][int(rng.integers(0, 3))])
              for sec in seconds]
    perm = rng.permutation(len(orders))
    base = ExecutionSimulator(REALISTIC, FRAME, seed=seed).execute_many(orders)
    shuffled = ExecutionSimulator(REALISTIC, FRAME, seed=seed).execute_many([orders[i] for i in perm])
    assert [shuffled[j] for j in np.argsort(perm)] == base


@settings(max_examples=200, deadline=None)
@given(o=st.floats(90.0, 110.0), c=st.floats(90.0, 110.0), up=st.floats(0.0, 5.0), down=st.floats(0.0, 5.0),
       f=st.floats(0.0, 1.0))
def test_path_range_after_is_the_extremes_of_the_rest_of_the_path(o: float, c: float, up: float, down: float,
                                                                   f: float) -> None:
    h, low = max(o, c) + up, min(o, c) - down
    lo, hi = path_range_after(o, h, low, c, f)
    # The path is piecewise linear: its extremes over [f, 1] are at f or at a vertex after f, and those
    # vertices are where path_price reaches the low, the high and the close.
    legs = np.abs(np.diff([o, *((low, h) if c >= o else (h, low)), c]))
    corners = np.cumsum(legs)[:2] / legs.sum() if legs.sum() > 0 else np.zeros(2)
    grid = np.concatenate((np.linspace(f, 1.0, 501), corners[corners >= f], [1.0]))
    prices = [path_price(o, h, low, c, float(g)) for g in grid]
    assert lo == pytest.approx(min(prices), abs=1e-9)
    assert hi == pytest.approx(max(prices), abs=1e-9)
