"""The execution engine: target positions in, order intents through the OMS, fills back into the cost model.

Targets are positions in units (shares, contracts) per symbol; :func:`units_from_weights` converts portfolio
weights at an equity and prices. For each rebalance the engine

1. takes the current position of each symbol: the signed sum of the strategy's fills plus the unfilled rest
   of its open intents (an order in flight counts as done, so a rebalance repeated at the same bar, e.g.
   after a crash, asks for nothing more). The fills' sum is kept in memory, seeded from the OMS (the durable
   truth) when the engine is built and moved by each fill stored since (read after a fill-id cursor, so a
   bar costs the bar's fills, not the strategy's history); :meth:`ExecutionEngine.check_positions` compares
   it with the OMS's full sum at reconciliation;
2. orders the difference, rounded toward zero to whole lots, skipping orders below the minimum notional;
3. builds each intent from content that is a function of the rebalance alone (session = the bar's
   timestamp, horizon, signal hash = hash of the targets, version), so a restarted process re-derives the
   same client order ids, and the store creates nothing twice;
4. reads the working positions and the kill switch and creates the bar's intents in one OMS transaction,
   then sends each through the ``OrderManager``.

:meth:`ExecutionEngine.learn_costs` feeds every fill not yet learned from into the cost model
(``cost_feedback.learn_from_fills``; taker fills only: market orders), saves the learned state as a new
version and records, next to it, which version covers fills up to which store fill id. A restart loads that
version and learns from the fills after it: each fill is learned once even across a crash between saving a
version and recording it (the unrecorded version is left unused).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from ai_trading.durable_files import replace_durably
from ai_trading.errors import ConfigError, OrderValidationError, ReconciliationError
from ai_trading.execution.config import SimulatorConfig
from ai_trading.execution.cost_feedback import (
    FillCost,
    SavedCostState,
    fill_costs,
    fill_observations,
    learn_from_observations,
)
from ai_trading.execution.cost_model import EwmaCostModel, EwmaCostModelConfig
from ai_trading.execution.market import MarketArrays
from ai_trading.oms.intent_store import BookFill, OrderRecord, StoredFill
from ai_trading.oms.models import OrderIntent, OrderType, Side, to_decimal
from ai_trading.oms.submission import OrderManager

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    """``strategy``: the intents' strategy name (positions are per strategy); ``horizon``: the intents'
    horizon tag; ``version``: bump to re-issue an intent with the same content; ``lot_size``: orders are whole
    multiples of it; ``min_notional``: orders worth less (quantity x price) are not sent. See
    ``conf/oms/default.yaml`` (``engine``)."""

    strategy: str
    horizon: str
    version: int
    lot_size: float
    min_notional: float

    def __post_init__(self) -> None:
        try:
            to_decimal(self.lot_size, "oms.engine.lot_size")
            to_decimal(self.min_notional, "oms.engine.min_notional", allow_zero=True)
        except OrderValidationError as exc:
            raise ConfigError(str(exc)) from None
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ConfigError(f"oms.engine.version={self.version!r}: an int >= 1")


def units_from_weights(weights: Mapping[str, float], equity: float, prices: Mapping[str, float]) -> dict[str, float]:
    """Target units of portfolio ``weights`` (fractions of ``equity``) at ``prices``."""
    out = {}
    for symbol, weight in weights.items():
        price = prices.get(symbol)
        if price is None or not price > 0:
            raise OrderValidationError(f"units_from_weights: no positive price for {symbol} (got {price!r})")
        out[symbol] = weight * equity / price
    return out


def session_of(at: datetime) -> str:
    """The CID's session field of a bar at ``at`` (a UTC timestamp without the separator ``:``)."""
    if at.tzinfo is None:
        raise OrderValidationError(f"bar timestamp {at!r} must be tz-aware")
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def signal_hash(targets: Mapping[str, Decimal]) -> str:
    text = json.dumps({s: str(q) for s, q in sorted(targets.items())}, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Discard(Exception):
    """Ends a preview's transaction: raised inside it, it rolls it back."""


class SwitchState(Protocol):
    @property
    def engaged(self) -> bool: ...

    @property
    def mode(self) -> Any: ...

    @property
    def last(self) -> Any: ...

    def allows(self, *, reduces_position: bool) -> bool: ...


class OrderGate(Protocol):
    """What the engine asks before new orders (``ai_trading.monitoring.killswitch.KillSwitch``): its state now,
    read on ``conn`` (the rebalance's OMS transaction) when given."""

    def state(self, conn: Any = None) -> SwitchState: ...


@dataclass(frozen=True)
class _ObservedFill:
    """A stored taker fill as the cost feedback reads it (``cost_feedback.VenueFill``)."""

    trade_id: str
    symbol: str
    side: str
    quantity: float
    price: float
    timestamp: datetime


class ExecutionEngine:
    """Targets -> intents -> OMS (``manager``) for ``config.strategy``; with ``cost_model``, ``market`` (the
    research preset's market arrays over the session's bars), ``quotes`` (the venue's, optional) and
    ``cost_state_path``, :meth:`learn_costs` turns fills into new cost-model versions. With ``kill_switch`` the
    switch is read once per rebalance, before any intent is created: while engaged no new order goes out (in
    reduce-only mode only orders that move a position toward zero without crossing it); cancels are not
    orders here and are never held back."""

    def __init__(self, manager: OrderManager, config: EngineConfig, *, cost_model: EwmaCostModel | None = None,
                 market: MarketArrays | None = None, quotes: MarketArrays | None = None,
                 cost_state_path: str | Path | None = None, kill_switch: OrderGate | None = None) -> None:
        if (cost_model is None) != (cost_state_path is None) or (cost_model is not None and market is None):
            raise ConfigError("execution engine: cost learning needs cost_model, market and cost_state_path together")
        self.manager = manager
        self.config = config
        self.market, self.quotes = market, quotes
        self.cost_state_path = None if cost_state_path is None else Path(cost_state_path)
        self.cost_model = cost_model
        self.kill_switch = kill_switch
        self.blocked = 0  # intents the kill switch held back, over this engine's life
        self.learned_through = 0  # store fill id up to which the cost model has learned
        self.last_saved: SavedCostState | None = None
        self._filled: dict[str, Decimal] = {}
        self._cash_flow = Decimal(0)
        self._fills_through = 0  # store fill id up to which _filled and _cash_flow hold the fills
        self.fills_seen = 0  # fills absorbed into the positions, over this engine's life (history included)
        self.last_fill_costs: list[FillCost] = []  # the last learn_costs' fills against the model's prediction
        self._absorb_fills()
        if cost_model is not None:
            self._resume_learning(cost_model.config, cost_model.preset)

    # ---- positions and orders ------------------------------------------------------------------------

    def _absorb_fills(self) -> None:
        """Move the in-memory book by the strategy's fills stored after the cursor."""
        self._absorb([BookFill(s.id, s.symbol, s.side, s.fill.quantity, s.fill.price, s.fill.fee)
                      for s in self.manager.store.fills_after(self._fills_through, self.config.strategy)])

    def _absorb(self, new: list[BookFill]) -> None:
        for fill in new:
            signed = fill.quantity if fill.side is Side.BUY else -fill.quantity
            self._filled[fill.symbol] = self._filled.get(fill.symbol, Decimal(0)) + signed
            self._cash_flow -= signed * fill.price + fill.fee
            self._fills_through = fill.id
        self.fills_seen += len(new)

    def positions(self) -> dict[str, Decimal]:
        """Filled position per symbol: the signed sum of the strategy's stored fills."""
        self._absorb_fills()
        return dict(self._filled)

    def book(self) -> tuple[dict[str, Decimal], Decimal]:
        """Filled positions and what the strategy's fills paid and received, fees included (quote currency;
        buying is negative), with one read of the new fills."""
        self._absorb_fills()
        return dict(self._filled), self._cash_flow

    def check_positions(self) -> dict[str, Decimal]:
        """The in-memory positions against the signed sum of every stored fill of the strategy (reconciliation
        calls this): ``ReconciliationError`` naming each symbol that differs; the positions when they agree."""
        kept = self.positions()
        stored: dict[str, Decimal] = {}
        for fill in self.manager.store.fills_after(0, self.config.strategy):
            signed = fill.fill.quantity if fill.side is Side.BUY else -fill.fill.quantity
            stored[fill.symbol] = stored.get(fill.symbol, Decimal(0)) + signed
        differ = {s: (kept.get(s, Decimal(0)), stored.get(s, Decimal(0))) for s in set(kept) | set(stored)
                  if kept.get(s, Decimal(0)) != stored.get(s, Decimal(0))}
        if differ:
            raise ReconciliationError(f"strategy {self.config.strategy}: the engine's positions differ from the OMS's "
                                      "fills " + ", ".join(f"{s}: engine {a} vs store {b}"
                                                           for s, (a, b) in sorted(differ.items())))
        return kept

    def working_positions(self, conn: Connection | None = None) -> dict[str, Decimal]:
        """Filled position plus the unfilled rest of every open intent: where the book goes if all fill (read
        on ``conn`` when given)."""
        # one read: the fills since the cursor move the book, the strategy's open intents are added to it
        fills, rests = self.manager.store.working_book(self.config.strategy, self._fills_through, conn)
        self._absorb(fills)
        out = dict(self._filled)
        for symbol, side, rest in rests:
            out[symbol] = out.get(symbol, Decimal(0)) + (rest if side is Side.BUY else -rest)
        return out

    def plan(self, targets: Mapping[str, float], prices: Mapping[str, float], at: datetime,
             conn: Connection | None = None) -> list[OrderIntent]:
        """The intents that move the working positions (read on ``conn`` when given) to ``targets`` (units) at
        the bar ``at``."""
        return self._plan(targets, prices, at, self.working_positions(conn))

    def _plan(self, targets: Mapping[str, float], prices: Mapping[str, float], at: datetime,
              current: Mapping[str, Decimal]) -> list[OrderIntent]:
        cfg = self.config
        lot = to_decimal(cfg.lot_size, "lot_size")
        wanted = {s: to_decimal(round(float(q), 8), f"target of {s}", positive=False) for s, q in targets.items()}
        session, digest = session_of(at), signal_hash(wanted)
        intents = []
        for symbol in sorted(set(wanted) | {s for s, q in current.items() if q != 0}):
            diff = wanted.get(symbol, Decimal(0)) - current.get(symbol, Decimal(0))
            quantity = (abs(diff) / lot).to_integral_value(rounding=ROUND_DOWN) * lot
            if quantity == 0:
                continue
            price = prices.get(symbol)
            if price is None or not price > 0:
                raise OrderValidationError(f"rebalance at {at}: no positive price for {symbol} (got {price!r})")
            if quantity * to_decimal(round(float(price), 8), f"price of {symbol}") < to_decimal(
                    cfg.min_notional, "min_notional", allow_zero=True):
                continue
            intents.append(OrderIntent(strategy=cfg.strategy, symbol=symbol, side=Side.BUY if diff > 0 else Side.SELL,
                                       quantity=quantity, session=session, horizon=cfg.horizon, signal_hash=digest,
                                       version=cfg.version, order_type=OrderType.MARKET, created_at=at))
        return intents

    def rebalance(self, targets: Mapping[str, float], prices: Mapping[str, float], at: datetime) -> list[OrderRecord]:
        """Plan, create the bar's intents in one transaction, and send each; returns their records."""
        return self.send(self.commit(targets, prices, at), at)

    def commit(self, targets: Mapping[str, float], prices: Mapping[str, float], at: datetime) -> list[OrderIntent]:
        """The first half of :meth:`rebalance`: plan, hold back what the kill switch forbids, and create the bar's
        intents (durable on return, nothing sent yet), all in one OMS transaction: the working positions and
        the switch are read in it, so nothing another writer commits lands between what was read and the
        intents decided on it."""
        store = self.manager.store
        with store.transaction() as conn:
            current = self.working_positions(conn)
            intents = self._allowed(self._plan(targets, prices, at, current), current, conn)
            return store.create_many(intents, conn)

    def preview(self, targets: Mapping[str, float], prices: Mapping[str, float], at: datetime) -> list[OrderIntent]:
        """The intents :meth:`commit` would create now, decided the same way in the same kind of transaction,
        which is rolled back: nothing is stored or sent, no order is counted as held back (fills already
        committed are taken into the engine's book, as any read of the working positions does)."""
        try:
            with self.manager.store.transaction() as conn:
                current = self.working_positions(conn)
                intents = self._allowed(self._plan(targets, prices, at, current), current, conn, record=False)
                raise _Discard
        except _Discard:
            return intents

    def send(self, intents: list[OrderIntent], at: datetime) -> list[OrderRecord]:
        """The second half of :meth:`rebalance`: send each committed intent through the OrderManager."""
        records = [self.manager.submit(intent) for intent in intents]
        if records:
            log.info("rebalance at=%s intents=%d %s", at, len(records),
                     " ".join(f"{r.intent.side.value}:{r.intent.symbol}:{r.intent.quantity}" for r in records))
        return records

    def _allowed(self, intents: list[OrderIntent], current: Mapping[str, Decimal], conn: Connection, *,
                 record: bool = True) -> list[OrderIntent]:
        if self.kill_switch is None or not intents:
            return intents
        state = self.kill_switch.state(conn)
        if not state.engaged:
            return intents
        kept = []
        for intent in intents:
            held = current.get(intent.symbol, Decimal(0))
            signed = intent.quantity if intent.side is Side.BUY else -intent.quantity
            # Reduces: toward zero and not past it (a flip would open a new position the other way).
            reduces = held != 0 and abs(held + signed) < abs(held) and (held + signed) * held >= 0
            if state.allows(reduces_position=reduces):
                kept.append(intent)
            elif record:
                self.blocked += 1
                log.warning("kill switch engaged mode=%s: order held back %s:%s:%s reason=%s", state.mode,
                            intent.side.value, intent.symbol, intent.quantity, state.last and state.last.reason)
        return kept

    # ---- the cost model's feedback -------------------------------------------------------------------

    @property
    def _cursor_path(self) -> Path:
        assert self.cost_state_path is not None
        return self.cost_state_path.with_name(f"{self.cost_state_path.stem}.learned.json")

    def _resume_learning(self, config: EwmaCostModelConfig, preset: SimulatorConfig) -> None:
        if not self._cursor_path.exists():
            return
        try:
            cursor = json.loads(self._cursor_path.read_text(encoding="utf-8"))
            path, digest, through = Path(cursor["path"]), cursor["sha256"], int(cursor["fill_id"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cost learning cursor {self._cursor_path}: unreadable ({exc})") from exc
        self.cost_model = EwmaCostModel.load(path, config, preset, expected_sha256=digest)
        self.learned_through = through
        self.last_saved = SavedCostState(path, digest, int(cursor["version"]))

    def learn_costs(self) -> SavedCostState | None:
        """Learn from the taker fills stored since the last call; returns the new version (None: no new fill).
        :attr:`last_fill_costs` holds those fills' realised costs against the model's prediction for each
        order (the model as it was before learning from them)."""
        if self.cost_model is None or self.cost_state_path is None or self.market is None:
            raise ConfigError("execution engine built without a cost model: nothing to learn into")
        new: list[StoredFill] = self.manager.store.fills_after(self.learned_through, self.config.strategy)
        stored = [s for s in new if s.order_type is OrderType.MARKET]
        taker = [_ObservedFill(s.fill.trade_id, s.symbol, s.side.value, float(s.fill.quantity), float(s.fill.price),
                               s.fill.timestamp) for s in stored]
        self.last_fill_costs = []
        if not taker:
            return None
        observations = fill_observations(taker, self.market, self.quotes)
        costs = fill_costs(self.cost_model, [s.client_order_id for s in stored], observations)
        saved = learn_from_observations(self.cost_model, observations, self.cost_state_path)
        self.last_fill_costs = costs
        through = new[-1].id
        replace_durably(self._cursor_path, json.dumps({"path": str(saved.path), "sha256": saved.sha256,
                                                          "version": saved.version, "fill_id": through}))
        self.learned_through, self.last_saved = through, saved
        log.info("cost model learned fills=%d through_fill=%d path=%s sha256=%s", len(taker), through, saved.path,
                 saved.sha256[:12])
        return saved
