"""Financing of the book between bars: cash earns the risk-free rate, a debit pays it plus the margin spread,
shorts pay the borrow fee, all accrued ACT/365 over the calendar time between bars, on every path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate

from ai_trading.execution import ExecParams, MarketArrays, SimulatorConfig, run_targets, step
from ai_trading.execution.config import BORROW_FEE_ANNUAL_BPS, MARGIN_SPREAD_ANNUAL_BPS, RISK_FREE_ANNUAL_BPS
from tests.conftest import compose_config
from tests.execution.conftest import BARE, frame_from_rows

RATES = {"risk_free_annual_bps": 400.0, "margin_spread_annual_bps": 150.0, "borrow_fee_annual_bps": 80.0}
FINANCED = dataclasses.replace(BARE, **RATES)  # type: ignore[arg-type]
# Two symbols over a week with a weekend (Fri 3rd -> Mon 6th: 3 calendar days) and a holiday gap (8th -> 10th).
DAYS = ["2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07", "2020-01-08", "2020-01-10"]
A = [(100.0, 100.0), (101.0, 102.0), (103.0, 101.0), (100.0, 104.0), (105.0, 103.0), (102.0, 106.0)]
B = [(50.0, 50.0), (49.0, 48.0), (47.0, 49.0), (50.0, 51.0), (52.0, 50.0), (49.0, 47.0)]
CASH0 = 1_000_000.0


def _rows() -> list[tuple[str, str, float, float, float, float, float]]:
    rows = []
    for day, (ao, ac), (bo, bc) in zip(DAYS, A, B, strict=True):
        rows.append((day, "AAA", ao, max(ao, ac) + 1.0, min(ao, ac) - 1.0, ac, 1e9))
        rows.append((day, "BBB", bo, max(bo, bc) + 1.0, min(bo, bc) - 1.0, bc, 1e9))
    return rows


def _market(config: SimulatorConfig) -> tuple[MarketArrays, ExecParams]:
    market = MarketArrays.from_bars(frame_from_rows(_rows()), config)
    return market, ExecParams.from_config(config, market)


def _by_hand(weights: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Equity and financing per row, rebalancing to ``weights`` of equity every bar at the open (no costs),
    with the interest of each calendar gap on the cash and shorts held from the previous close."""
    opens = np.array([[a[0], b[0]] for a, b in zip(A, B, strict=True)])
    closes = np.array([[a[1], b[1]] for a, b in zip(A, B, strict=True)])
    days = np.diff(pd.DatetimeIndex(DAYS)).astype("timedelta64[s]").astype(float) / 86_400.0
    rf = RATES["risk_free_annual_bps"] * 1e-4
    debit = (RATES["risk_free_annual_bps"] + RATES["margin_spread_annual_bps"]) * 1e-4
    fee = RATES["borrow_fee_annual_bps"] * 1e-4
    cash, pos = CASH0, np.zeros(2)
    equity, financing = [CASH0], [0.0]
    for t in range(1, len(DAYS)):
        years = days[t - 1] / 365.0
        short_value = float(np.sum(np.maximum(-pos, 0.0) * closes[t - 1]))
        interest = years * ((rf if cash >= 0 else debit) * cash - fee * short_value)
        eq_decision = cash + float(pos @ closes[t - 1])
        target = np.asarray(weights) * eq_decision / closes[t - 1]
        cash += interest - float((target - pos) @ opens[t])
        pos = target
        equity.append(cash + float(pos @ closes[t]))
        financing.append(interest)
    return np.array(equity), np.array(financing)


@pytest.mark.parametrize("weights", [(1.0, -0.5), (1.4, -0.1)], ids=["cash_positive", "cash_negative"])
def test_long_short_150_gross_pays_borrow_and_debit_interest_as_computed_by_hand(
        weights: tuple[float, float]) -> None:
    market, params = _market(FINANCED)
    targets = np.tile(weights, (len(DAYS), 1))
    res = run_targets(market, params, targets, np.random.default_rng(0), initial_cash=CASH0)
    # 150 % gross of the decision equity after every rebalance
    gross = np.abs(res.positions[1:] * market.mark[:-1]).sum(axis=1) / res.equity[:-1]
    np.testing.assert_allclose(gross, 1.5, rtol=1e-12)
    assert (res.cash[1:] > 0).all() if weights[1] == -0.5 else (res.cash[1:] < 0).all()
    equity, financing = _by_hand(weights)
    np.testing.assert_allclose(res.financing, financing, rtol=1e-12, atol=0)
    np.testing.assert_allclose(res.equity, equity, rtol=1e-12)
    # The same book without financing: it was not free.
    free_market, free_params = _market(BARE)
    free = run_targets(free_market, free_params, targets, np.random.default_rng(0), initial_cash=CASH0)
    assert not free.financing.any()
    if weights[1] == -0.1:  # borrowed cash and a short: pays on both
        assert (res.financing[2:] < 0).all() and res.equity[-1] < free.equity[-1]


def test_cash_earns_the_risk_free_rate_over_calendar_days() -> None:
    market, params = _market(FINANCED)
    res = run_targets(market, params, np.zeros((len(DAYS), 2)), np.random.default_rng(0), initial_cash=CASH0)
    days = np.array([1.0, 3.0, 1.0, 1.0, 2.0])  # Thu->Fri, the weekend, Mon->Tue, Tue->Wed, the holiday
    grown = CASH0 * np.cumprod(np.concatenate(([1.0], 1.0 + RATES["risk_free_annual_bps"] * 1e-4 * days / 365)))
    np.testing.assert_allclose(res.equity, grown, rtol=1e-14)
    assert res.financing[2] == pytest.approx(3 * res.financing[1] * res.cash[1] / res.cash[0], rel=1e-12)


def test_zero_rates_give_exactly_the_fill_only_cash() -> None:
    market, params = _market(dataclasses.replace(FINANCED, risk_free_annual_bps=0.0, margin_spread_annual_bps=0.0,
                                                 borrow_fee_annual_bps=0.0, spread_bps=10.0,
                                                 max_half_spread_bps=50.0, fee_bps=2.0))
    targets = np.tile((1.4, -0.1), (len(DAYS), 1))
    res = run_targets(market, params, targets, np.random.default_rng(0), initial_cash=CASH0)
    assert not res.financing.any()
    cash = [CASH0]
    for t in range(1, len(DAYS)):
        c = cash[-1]
        for n in range(2):
            if res.qty[t, n] != 0.0:
                c = c - (((res.qty[t, n] * res.ref[t, n] + res.spread[t, n]) + res.impact[t, n]) + res.fee[t, n])
        cash.append(c)
    np.testing.assert_array_equal(res.cash, cash)  # the bits of the ledger without financing


def test_step_equals_run_targets_bit_for_bit_with_debit_and_shorts() -> None:
    market, params = _market(dataclasses.replace(FINANCED, spread_bps=10.0, max_half_spread_bps=50.0, fee_bps=2.0,
                                                 latency="lognormal", latency_ms=20_000.0, spike_prob=0.3,
                                                 spike_ms=60_000.0))
    targets = np.random.default_rng(9).uniform(-0.8, 1.2, (len(DAYS), 2))
    expected = run_targets(market, params, targets, np.random.default_rng(4), initial_cash=CASH0)
    assert (expected.financing[2:] != 0).all() and (expected.cash < 0).any() and (expected.positions < 0).any()
    rng = np.random.default_rng(4)
    pos, cash = np.zeros((1, 2)), np.array([CASH0])
    for t in range(len(DAYS) - 1):
        out = step(market, params, pos, cash, targets[t : t + 1], [t], rng)
        pos, cash = out.positions, out.cash
        np.testing.assert_array_equal(out.cash[0], expected.cash[t + 1])
        np.testing.assert_array_equal(out.equity[0], expected.equity[t + 1])


def test_market_year_fraction_is_act_365_of_the_gap_before_each_row() -> None:
    market, _ = _market(FINANCED)
    np.testing.assert_allclose(market.year_frac * 365.0, [0.0, 1.0, 3.0, 1.0, 1.0, 2.0], rtol=1e-15)


def test_composed_presets_default_finances_at_the_documented_constants_and_zero_cost_not_at_all() -> None:
    default = instantiate(compose_config().simulator)
    assert (default.risk_free_annual_bps, default.margin_spread_annual_bps, default.borrow_fee_annual_bps) == (
        RISK_FREE_ANNUAL_BPS, MARGIN_SPREAD_ANNUAL_BPS, BORROW_FEE_ANNUAL_BPS)
    assert RISK_FREE_ANNUAL_BPS > 0 and MARGIN_SPREAD_ANNUAL_BPS > 0 and BORROW_FEE_ANNUAL_BPS > 0
    for preset in ("intraday", "stressed"):
        inherited = instantiate(compose_config([f"simulator={preset}"]).simulator)
        assert inherited.risk_free_annual_bps == RISK_FREE_ANNUAL_BPS, preset
    zero = instantiate(compose_config(["simulator=zero_cost"]).simulator)
    market, params = _market(zero)
    res = run_targets(market, params, np.tile((1.4, -0.1), (len(DAYS), 1)), np.random.default_rng(0),
                      initial_cash=CASH0)
    assert (res.cash < 0).any() and (res.positions < 0).any()
    assert not res.financing.any() and res.cost.sum() == 0.0
