"""A paper-trading session: a strategy's targets traded bar by bar on the paper venue through the OMS.

Each :meth:`PaperSession.step` at the venue's current bar ``t`` (decided at its close): the strategy's targets
from the market up to ``t``, ``engine.rebalance`` at ``t``'s close prices, the venue processes bar ``t + 1``,
the OMS syncs its fills, and (with a cost model) the engine learns from them. Every step is safe to repeat
after a crash: :meth:`PaperSession.start` reconciles first (and refuses to trade when that fails), and the
venue's clock says which bar comes next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np

from ai_trading.errors import ReconciliationError
from ai_trading.execution.cost_feedback import SavedCostState
from ai_trading.execution.engine import ExecutionEngine
from ai_trading.execution.market import MarketArrays
from ai_trading.oms.brokers.paper import PaperBroker
from ai_trading.oms.reconcile import ForeignOrderPolicy, ReconciliationReport, reconcile

log = logging.getLogger(__name__)

TargetRule = Callable[[MarketArrays, int], Mapping[str, float]]


def trend_targets(units: float, lookback: int = 5) -> TargetRule:
    """Long ``units`` of each symbol whose close at ``t`` is above its mean close of the last ``lookback`` bars,
    flat otherwise (causal: only bars up to ``t``)."""
    def rule(market: MarketArrays, t: int) -> dict[str, float]:
        window = market.close[max(0, t - lookback + 1):t + 1]
        above = market.close[t] > np.mean(window, axis=0)
        return {s: units if bool(above[i]) else 0.0 for i, s in enumerate(market.symbols)}
    return rule


class PaperSession:
    """``engine`` (whose OrderManager sends to ``venue``) trading ``rule``'s targets on ``venue``'s bars."""

    def __init__(self, engine: ExecutionEngine, venue: PaperBroker, rule: TargetRule,
                 foreign_orders: ForeignOrderPolicy = ForeignOrderPolicy.IGNORE) -> None:
        self.engine, self.venue, self.rule, self.foreign_orders = engine, venue, rule, foreign_orders
        self.saved: list[SavedCostState] = []
        self.started = False

    def start(self) -> ReconciliationReport:
        """Reconcile the OMS with the venue; ``ReconciliationError`` means do not trade."""
        report = reconcile(self.engine.manager, self.foreign_orders)
        self.started = True
        return report

    def step(self) -> bool:
        """Trade the venue's current bar and move the venue one bar on; False when no bar is left."""
        if not self.started:
            raise ReconciliationError("PaperSession.step before start(): trading starts only after reconciliation")
        market = self.venue.market
        t = self.venue.cursor
        if t + 1 >= len(market.timestamps):
            return False
        targets = self.rule(market, t)
        prices = {s: float(market.close[t, i]) for i, s in enumerate(market.symbols)}
        self.engine.rebalance(targets, prices, market.timestamps[t].to_pydatetime())
        self.venue.advance(1)
        self.engine.manager.sync()
        if self.engine.cost_model is not None:
            saved = self.engine.learn_costs()
            if saved is not None:
                self.saved.append(saved)
        return True

    def run(self, bars: int | None = None) -> int:
        """Step until the market ends (or ``bars`` steps); returns the steps taken."""
        steps = 0
        while (bars is None or steps < bars) and self.step():
            steps += 1
        return steps
