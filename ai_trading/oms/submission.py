"""The submission protocol: every order reaches a venue through :class:`OrderManager`, exactly once.

``submit(intent)`` runs these durable steps, each safe to repeat after a crash at any point:

1. create the intent (its own commit; idempotent on the CIDv2);
2. claim it (compare-and-set CREATED -> SUBMITTED: of any number of racing callers, one sends it);
3. send it under its broker-safe id (``intent.broker_safe_id``: the venue's unique client order id);
4. commit the venue's answer (ack, reject, and the fills and cancel it already reports).

When the outcome of step 3 is unknown (``BrokerUnavailable``: a timeout, a 5xx, a lost connection) the order
is looked up by its client order id before anything is resent: found, its ack (and fills) are adopted;
provably absent, it is sent again. ``DuplicateClientOrderId`` (a venue that already holds it) is resolved the
same way, by lookup. Because the venue refuses a second order with the same id, a resend can never create a
duplicate even if a lookup were wrong; the lookup makes the OMS adopt the order instead of failing.

An intent left SUBMITTED by a crash between steps 2 and 4, or by a venue that stayed unreachable, is resolved
by :func:`ai_trading.oms.reconcile.reconcile` at the next start (the same lookup).

``sync()`` brings the OMS up to date with the venue: fills since the newest stored fill (each applied once, by
trade id) and the final states (cancel, reject, expiry) of open intents.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from ai_trading.oms.brokers.base import (
    Broker,
    BrokerFill,
    BrokerOrder,
    BrokerOrderStatus,
    BrokerUnavailable,
    DuplicateClientOrderId,
    OrderRequest,
)
from ai_trading.oms.intent_store import IntentStore, OrderRecord
from ai_trading.oms.models import DECIMAL_PLACES, Fill, OrderEvent, OrderIntent, OrderSnapshot, OrderState

log = logging.getLogger(__name__)

_QUANTUM = Decimal(1).scaleb(-DECIMAL_PLACES)


@dataclass(frozen=True)
class Change:
    """One write the OMS made to agree with the venue: ``kind`` is acked, filled, canceled, rejected,
    submitted or resubmitted."""

    kind: str
    client_order_id: str
    detail: str = ""


def to_request(intent: OrderIntent) -> OrderRequest:
    """The venue's view of ``intent``: sent under its broker-safe id."""
    return OrderRequest(client_order_id=intent.broker_safe_id, symbol=intent.symbol, side=intent.side,
                        quantity=float(intent.quantity), order_type=intent.order_type,
                        limit_price=None if intent.limit_price is None else float(intent.limit_price))


def _decimal(value: float) -> Decimal:
    return Decimal(repr(float(value))).quantize(_QUANTUM, rounding=ROUND_HALF_EVEN) + 0


def to_fill(fill: BrokerFill, remaining: Decimal, completes: bool) -> Fill:
    """A venue's float fill as the OMS's exact ``Fill``: quantity, price and fee to ``DECIMAL_PLACES`` places.
    The quantity never exceeds ``remaining`` (a float sum of partial fills may pass the order by a rounding
    unit), and the fill that completes the venue's order takes exactly ``remaining``."""
    quantity = remaining if completes else min(_decimal(fill.quantity), remaining)
    return Fill(trade_id=fill.trade_id, quantity=quantity, price=_decimal(fill.price), fee=_decimal(fill.fee),
                timestamp=fill.timestamp)


class OrderManager:
    """Sends intents through ``store`` to ``broker`` (see the module docstring). ``lookup_attempts``: how
    often an unknown outcome is looked up (and the order resent while provably absent) before giving up
    with ``BrokerUnavailable``, the intent left SUBMITTED for reconciliation."""

    def __init__(self, store: IntentStore, broker: Broker, *, lookup_attempts: int = 3) -> None:
        self.store = store
        self.broker = broker
        self.lookup_attempts = lookup_attempts

    # ---- commands ------------------------------------------------------------------------------------

    def submit(self, intent: OrderIntent) -> OrderRecord:
        """Create, claim, send and record ``intent``; returns its record. An intent already claimed (by this
        or another process, now or before a crash) is not sent again here: its current record is returned."""
        stored = self.store.create(intent)
        if not self.store.claim_for_submit(stored.client_order_id):
            return self.store.get(stored.client_order_id)
        return self.send_claimed(stored, maybe_sent=False)

    def send_claimed(self, intent: OrderIntent, *, maybe_sent: bool = True) -> OrderRecord:
        """Send an intent this caller holds in SUBMITTED. ``maybe_sent``: an earlier attempt (a crashed run, an
        unknown outcome) may have reached the venue, so the order is looked up before any send; only the
        caller whose claim just succeeded knows it was not, and passes False."""
        request = to_request(intent)
        order: BrokerOrder | None = None
        for attempt in range(1, self.lookup_attempts + 1):
            if maybe_sent:
                order = self.lookup(intent)
                if order is not None:
                    log.info("order found at venue cid=%s broker_id=%s attempt=%d", intent.client_order_id,
                             order.broker_order_id, attempt)
                    break
            try:
                order = self.broker.submit(request)
                break
            except DuplicateClientOrderId:
                maybe_sent = True  # the next lookup finds and adopts it
            except BrokerUnavailable as exc:
                maybe_sent = True
                log.warning("submit outcome unknown cid=%s attempt=%d: %s", intent.client_order_id, attempt, exc)
        if order is None:
            raise BrokerUnavailable(f"order {intent.client_order_id}: the venue's answer stayed unknown after "
                                    f"{self.lookup_attempts} attempts; it stays SUBMITTED for reconciliation")
        self.adopt(self.store.get(intent.client_order_id), order)
        return self.store.get(intent.client_order_id)

    def lookup(self, intent: OrderIntent) -> BrokerOrder | None:
        """The venue's order for ``intent`` (None: provably never received). ``BrokerUnavailable`` when the
        venue cannot answer even that, after ``lookup_attempts`` tries."""
        for attempt in range(1, self.lookup_attempts + 1):
            try:
                return self.broker.get_order(intent.broker_safe_id)
            except BrokerUnavailable:
                if attempt == self.lookup_attempts:
                    raise
        raise AssertionError("unreachable")

    def cancel(self, client_order_id: str) -> OrderRecord:
        """Cancel an intent: withdrawn before it was sent (CREATED), else canceled at the venue and the
        venue's answer (with any fills it reports) recorded. A terminal intent is returned unchanged."""
        record = self.store.get(client_order_id)
        if record.state is OrderState.CREATED and self.store.claim_for_submit(client_order_id):
            # the claim makes this caller the only one who could send it; it never will
            self.store.record(client_order_id, OrderEvent.canceled("withdrawn before it was sent"))
            return self.store.get(client_order_id)
        record = self.store.get(client_order_id)
        if record.state.is_terminal:
            return record
        if record.state is OrderState.SUBMITTED and self.lookup(record.intent) is None:
            raise BrokerUnavailable(f"order {client_order_id} is being sent by another caller (SUBMITTED, not at "
                                    "the venue yet): cancel it again once it is acknowledged")
        order = self.broker.cancel(record.intent.broker_safe_id)
        self.adopt(record, order)
        return self.store.get(client_order_id)

    # ---- the venue's view into the OMS -----------------------------------------------------------------

    def order_fills(self, order: BrokerOrder) -> list[BrokerFill]:
        return [f for f in self.broker.list_fills(order.submitted_at) if f.client_order_id == order.client_order_id]

    def adopt(self, record: OrderRecord, order: BrokerOrder, fills: Sequence[BrokerFill] | None = None
              ) -> list[Change]:
        """Record what the venue says about ``record``'s order: its ack or reject, its fills not yet stored
        (``fills``: the order's fills when the caller fetched them, else fetched here) and its cancel. Each
        write is one idempotent store transition, so a crash between them is completed by the next call."""
        cid = record.client_order_id
        snapshot = record.snapshot
        changes: list[Change] = []
        if order.status is BrokerOrderStatus.REJECTED:
            if not snapshot.is_terminal:
                self.store.record(cid, OrderEvent.rejected(order.reject_reason or "rejected by the venue"))
                changes.append(Change("rejected", cid, order.reject_reason or ""))
            return changes
        if snapshot.state is OrderState.SUBMITTED or (
                snapshot.state in (OrderState.ACKED, OrderState.PARTIAL_FILLED) and snapshot.broker_order_id is None):
            snapshot = self.store.record(cid, OrderEvent.acked(order.broker_order_id))
            changes.append(Change("acked", cid, order.broker_order_id))
        if order.filled_quantity > 0.0:
            own = self.order_fills(order) if fills is None else list(fills)
            snapshot, filled = self._record_fills(snapshot, own, order)
            changes.extend(filled)
        if order.status is BrokerOrderStatus.CANCELED and not snapshot.is_terminal:
            self.store.record(cid, OrderEvent.canceled("canceled at the venue"))
            changes.append(Change("canceled", cid))
        return changes

    def _record_fills(self, snapshot: OrderSnapshot, fills: Iterable[BrokerFill], order: BrokerOrder
                      ) -> tuple[OrderSnapshot, list[Change]]:
        changes = []
        ordered = list(fills)
        for n, fill in enumerate(ordered):
            if fill.trade_id in snapshot.trade_ids or snapshot.is_terminal:
                continue
            completes = order.status is BrokerOrderStatus.FILLED and n == len(ordered) - 1
            snapshot = self.store.record(snapshot.client_order_id, OrderEvent.filled(
                to_fill(fill, snapshot.remaining, completes), order.broker_order_id))
            changes.append(Change("filled", snapshot.client_order_id, fill.trade_id))
        return snapshot, changes

    def sync(self) -> list[Change]:
        """Bring the open intents up to date with the venue: new fills (since the newest stored one; each
        applied once by trade id), acks of orders left SUBMITTED, and final states (cancel, reject, expiry).
        Fills of orders that are not ours are skipped (reconciliation reports foreign orders)."""
        changes: list[Change] = []
        open_records = {r.intent.broker_safe_id: r for r in self.store.open_orders()}
        if not open_records:
            return changes
        by_order: dict[str, list[BrokerFill]] = {}
        for fill in self.broker.list_fills(self.store.latest_fill_time()):
            by_order.setdefault(fill.client_order_id, []).append(fill)
        venue_open = {o.client_order_id: o for o in self.broker.list_open_orders()}
        for safe_id, record in open_records.items():
            if record.state is OrderState.CREATED:
                continue  # not sent yet: submit() or reconciliation sends it
            order = venue_open.get(safe_id)
            if order is None:
                order = self.broker.get_order(safe_id)
            if order is None:
                continue  # SUBMITTED and not at the venue: reconciliation decides (it may be in flight)
            fills = by_order.get(safe_id, [])
            if order.status is BrokerOrderStatus.FILLED and record.snapshot.filled_quantity + sum(
                    (_decimal(f.quantity) for f in fills), Decimal(0)) < record.intent.quantity:
                fills = self.order_fills(order)  # the cursor window missed some: read the order's own
            changes.extend(self.adopt(record, order, fills))
        for change in changes:
            log.info("sync %s cid=%s %s", change.kind, change.client_order_id, change.detail)
        return changes
