"""Startup reconciliation: the OMS's books made to agree with the broker before trading starts.

Every intent not in a final state is checked against the broker by its broker-safe client order id:

- CREATED (never claimed): submitted as normal;
- SUBMITTED and found at the broker (the ack was lost, or the run crashed before recording it): its ack,
  fills and cancel or reject are adopted; SUBMITTED and provably not at the broker: resubmitted;
- ACKED / PARTIAL_FILLED: fills, cancels and rejects missed while down are adopted;
- an intent the OMS knows as acked but the broker does not hold, or whose fills the broker reports differently
  after adoption, cannot be repaired here: reconciliation fails with ``ReconciliationError``.

Broker orders whose client order id is no intent's broker-safe id are foreign (another application, a person
at the broker's web page): recorded in the run's detail and, by default, never touched. ``ForeignOrderPolicy``
says what else to do: ``alert`` raises their severity, ``cancel`` cancels them.

Every mismatch becomes a :class:`ReconciliationEvent` in the returned report and is logged as a WARNING by
:func:`emit` (the one function an alert router hooks into). Each run is recorded in the store
(``python -m ai_trading.oms status`` shows the last). A second run over the same broker state writes nothing:
every step is an idempotent store transition keyed by trade id or state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from enum import StrEnum

from ai_trading.errors import AiTradingError, ReconciliationError
from ai_trading.oms.brokers.base import BrokerFill, BrokerOrder, BrokerUnavailable
from ai_trading.oms.models import OrderState, utc_now
from ai_trading.oms.submission import Change, OrderManager

log = logging.getLogger(__name__)


class ForeignOrderPolicy(StrEnum):
    IGNORE = "ignore"  # recorded in the run's detail, never touched
    ALERT = "alert"  # recorded and raised as a warning for the alerts module
    CANCEL = "cancel"  # recorded and canceled at the broker


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class ReconciliationEvent:
    """One mismatch between the OMS and the broker, and what reconciliation did about it. ``kind``: acked,
    filled, canceled, rejected, submitted, resubmitted (repairs); foreign_order, foreign_order_canceled;
    unknown_at_broker, fill_mismatch, broker_unavailable, illegal_transition (failures, CRITICAL)."""

    kind: str
    severity: Severity
    cid: str | None
    detail: str = ""


@dataclass(frozen=True)
class ReconciliationReport:
    events: tuple[ReconciliationEvent, ...]
    changes: int  # store writes made (0 on a second pass over the same broker state)
    checked: int  # open intents checked
    foreign: tuple[str, ...] = field(default=())  # the foreign orders' client order ids

    @property
    def ok(self) -> bool:
        return not any(e.severity is Severity.CRITICAL for e in self.events)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {"checked": self.checked, "changes": self.changes, "foreign": len(self.foreign)}
        for event in self.events:
            out[event.kind] = out.get(event.kind, 0) + 1
        return out


def emit(event: ReconciliationEvent) -> None:
    """Hand one reconciliation event on: logged as a WARNING (the alerts module routes from here)."""
    log.warning("reconciliation %s severity=%s cid=%s %s", event.kind, event.severity.value, event.cid, event.detail)


_REPAIR_SEVERITY = {"acked": Severity.WARNING, "filled": Severity.WARNING, "canceled": Severity.WARNING,
                    "rejected": Severity.WARNING, "submitted": Severity.INFO, "resubmitted": Severity.WARNING}


def reconcile(manager: OrderManager, foreign_orders: ForeignOrderPolicy = ForeignOrderPolicy.IGNORE,
              sink: Callable[[ReconciliationEvent], None] = emit) -> ReconciliationReport:
    """Reconcile ``manager``'s store with its broker (see the module docstring); returns the report, or raises
    ``ReconciliationError`` (after recording the failed run) when the books cannot be made to agree."""
    started = utc_now()
    events: list[ReconciliationEvent] = []
    foreign: list[str] = []
    changes = checked = 0
    try:
        changes, checked = _reconcile_intents(manager, events)
        foreign_orders = ForeignOrderPolicy(foreign_orders)
        for order in manager.broker.list_open_orders():
            if manager.store.find_by_broker_safe_id(order.client_order_id) is not None:
                continue
            foreign.append(order.client_order_id)
            what = (f"broker order {order.broker_order_id} client id {order.client_order_id!r}: {order.side} "
                    f"{order.quantity:g} {order.symbol} ({order.status})")
            if foreign_orders is ForeignOrderPolicy.CANCEL:
                manager.broker.cancel(order.client_order_id)
                events.append(ReconciliationEvent("foreign_order_canceled", Severity.WARNING, None, what))
            else:
                severity = Severity.WARNING if foreign_orders is ForeignOrderPolicy.ALERT else Severity.INFO
                events.append(ReconciliationEvent("foreign_order", severity, None, what))
    except BrokerUnavailable as exc:
        events.append(ReconciliationEvent("broker_unavailable", Severity.CRITICAL, None, str(exc)))
    except AiTradingError as exc:  # an illegal transition, an overfill, a conflicting intent
        events.append(ReconciliationEvent("illegal_transition", Severity.CRITICAL, None, str(exc)))
    report = ReconciliationReport(tuple(events), changes, checked, tuple(foreign))
    for event in report.events:
        sink(event)
    detail = json.dumps({"foreign_orders": list(report.foreign),
                         "events": [asdict(e) for e in report.events if e.severity is not Severity.INFO
                                    or e.kind == "foreign_order"][:200]}, sort_keys=True)
    manager.store.record_reconciliation("ok" if report.ok else "failed", report.counts(), started, detail=detail)
    if not report.ok:
        failures = "; ".join(f"{e.kind} {e.cid or ''} {e.detail}" for e in report.events
                             if e.severity is Severity.CRITICAL)
        raise ReconciliationError(f"reconciliation failed, trading must not start: {failures}")
    return report


def _reconcile_intents(manager: OrderManager, events: list[ReconciliationEvent]) -> tuple[int, int]:
    store, broker = manager.store, manager.broker
    records = store.open_orders()
    if not records:
        return 0, 0
    venue_open = {o.client_order_id: o for o in broker.list_open_orders()}
    fills: dict[str, list[BrokerFill]] = {}
    for fill in broker.list_fills():  # all: an intent's creation time says nothing about the venue's clock
        fills.setdefault(fill.client_order_id, []).append(fill)
    changes = 0
    for record in records:
        cid, safe_id = record.client_order_id, record.intent.broker_safe_id
        if record.state is OrderState.CREATED:
            after = manager.submit(record.intent)
            done: list[Change] = [Change("submitted", cid, after.state.value)]
        else:
            order: BrokerOrder | None = venue_open.get(safe_id) or broker.get_order(safe_id)
            if order is None and record.state is OrderState.SUBMITTED:
                # provably never received: send it (the lookup inside sends nothing twice)
                after = manager.send_claimed(record.intent, maybe_sent=True)
                done = [Change("resubmitted", cid, after.state.value)]
            elif order is None:
                events.append(ReconciliationEvent(
                    "unknown_at_broker", Severity.CRITICAL, cid,
                    f"the OMS holds it as {record.state} (broker order {record.snapshot.broker_order_id}); the "
                    f"broker has no order {safe_id!r}"))
                continue
            else:
                done = manager.adopt(record, order, fills.get(safe_id, []))
                _check_fills(manager, cid, order, events)
        changes += len(done)
        for change in done:
            events.append(ReconciliationEvent(change.kind, _REPAIR_SEVERITY[change.kind], cid, change.detail))
    return changes, len(records)


def _check_fills(manager: OrderManager, cid: str, order: BrokerOrder, events: list[ReconciliationEvent]) -> None:
    snapshot = manager.store.get(cid).snapshot
    venue = to_fill_quantity(order.filled_quantity)
    if abs(snapshot.filled_quantity - venue) > Decimal("1e-6"):
        events.append(ReconciliationEvent(
            "fill_mismatch", Severity.CRITICAL, cid,
            f"the OMS holds {snapshot.filled_quantity} filled, the broker {order.filled_quantity} "
            f"(order {order.broker_order_id}, {order.status})"))


def to_fill_quantity(quantity: float) -> Decimal:
    return Decimal(repr(float(quantity)))


def describe(report: ReconciliationReport) -> str:
    """A short human-readable summary of ``report`` (for the operator CLI and logs)."""
    lines = [f"reconciliation {'ok' if report.ok else 'FAILED'}: checked={report.checked} changes={report.changes} "
             f"foreign={len(report.foreign)}"]
    lines += [f"  {e.severity.value:<8} {e.kind:<22} {e.cid or '-'} {e.detail}" for e in report.events]
    return "\n".join(lines)


__all__ = ["ForeignOrderPolicy", "ReconciliationEvent", "ReconciliationReport", "Severity", "describe", "emit",
           "reconcile"]
