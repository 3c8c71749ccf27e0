"""The per-order path one bar at a time (what the paper venue runs) equals one ``execute_many`` call."""

from __future__ import annotations

import numpy as np
import pytest

from ai_trading.errors import OrderValidationError
from ai_trading.execution import ExecutionSimulator, FillEvent, OrderSide, OrderType, SimOrder, TimeInForce
from tests.execution.test_simulator import FRAME, REALISTIC, STAMPS


def _orders(seed: int, n: int = 30) -> list[SimOrder]:
    """Market and limit orders (some marketable, some resting), DAY and GTC, several on one bar."""
    rng = np.random.default_rng(seed)
    orders = []
    for _ in range(n):
        limit = rng.random() < 0.4
        price = 100.0 * (1 + rng.normal(0.0, 0.003))
        orders.append(SimOrder("AAA", OrderSide.BUY if rng.random() < 0.5 else OrderSide.SELL,
                               float(rng.integers(20, 400)), STAMPS[int(rng.integers(0, 70))],
                               OrderType.LIMIT if limit else OrderType.MARKET, price if limit else None,
                               TimeInForce.GTC if rng.random() < 0.5 else TimeInForce.DAY))
    return sorted(orders, key=lambda o: o.submitted_at)


def _bar_by_bar(sim: ExecutionSimulator, orders: list[SimOrder], withdraw: dict[int, int] | None = None
                ) -> list[list[FillEvent]]:
    """Each bar in turn, with the running filled quantities; order i leaves the list after bar withdraw[i]."""
    filled = [0.0] * len(orders)
    fills: list[list[FillEvent]] = [[] for _ in orders]
    gone = withdraw or {}
    for t in range(1, len(STAMPS)):
        live = [i for i in range(len(orders)) if gone.get(i, len(STAMPS)) >= t]
        events = sim.execute_bar(t, [orders[i] for i in live], [filled[i] for i in live])
        for i, event in zip(live, events, strict=True):
            if event is not None:
                fills[i].append(event)
                filled[i] += event.quantity
    return fills


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_execute_bar_each_bar_equals_execute_many_bit_for_bit(seed: int) -> None:
    orders = _orders(seed)
    expected = ExecutionSimulator(REALISTIC, FRAME, seed=seed).execute_many(orders)
    got = _bar_by_bar(ExecutionSimulator(REALISTIC, FRAME, seed=seed), orders)
    assert sum(len(r.fills) for r in expected) > len(orders)  # partial fills carried over bars
    assert any(f.liquidity.value == "maker" for r in expected for f in r.fills)
    for result, fills in zip(expected, got, strict=True):
        assert tuple(fills) == result.fills


def test_execute_bar_withdrawn_order_frees_the_bar_for_the_next() -> None:
    # Each bar trades 1,000 shares and a slice may take 10% of it: the big order takes every bar's room.
    big = SimOrder("AAA", OrderSide.BUY, 5_000.0, STAMPS[2], time_in_force=TimeInForce.GTC)
    small = SimOrder("AAA", OrderSide.BUY, 50.0, STAMPS[2], time_in_force=TimeInForce.GTC)
    together = _bar_by_bar(ExecutionSimulator(REALISTIC, FRAME, seed=0), [big, small])
    assert together[0][0].time == STAMPS[3] and together[1][0].time > STAMPS[10]
    withdrawn = _bar_by_bar(ExecutionSimulator(REALISTIC, FRAME, seed=0), [big, small], withdraw={0: 3})
    assert withdrawn[0] == together[0][:1]
    assert [(f.time, f.quantity) for f in withdrawn[1]] == [(STAMPS[4], 50.0)]


def test_execute_bar_bad_arguments_raise() -> None:
    sim = ExecutionSimulator(REALISTIC, FRAME, seed=0)
    order = SimOrder("AAA", OrderSide.BUY, 10.0, STAMPS[0])
    with pytest.raises(OrderValidationError, match="bar 0"):
        sim.execute_bar(0, [order], [0.0])
    with pytest.raises(OrderValidationError, match="outside"):
        sim.execute_bar(len(STAMPS), [order], [0.0])
    with pytest.raises(OrderValidationError, match="filled quantities"):
        sim.execute_bar(1, [order], [])
    with pytest.raises(OrderValidationError, match="filled quantities"):
        sim.execute_bar(1, [order], [float("nan")])
    assert sim.execute_bar(1, [], []) == []
    assert sim.order_window(order) == (1, int(np.flatnonzero(STAMPS.normalize() == STAMPS[0].normalize())[-1]))
