"""Alerts: one alert type, rules that produce alerts, and the :class:`Router` every alert goes through.

Usage::

    router = Router.build(alerts_config, engine)          # sinks from config, secrets from the environment
    router.raise_alert(alert_from_slo_event(event))        # committed to the outbox, then a delivery attempt
    router.dispatch()                                      # the live loop calls this each cycle (retries, bursts)

``raise_alert`` commits the alert to the outbox (:mod:`ai_trading.monitoring.outbox`) before anything is sent, so
an alert raised just before a crash is delivered by the next process's ``dispatch``. Routes pick the sinks by
severity and source; a repeat inside the repeat interval is not sent again; a resolve is sent once; alerts of one
rule raised within the group window go out as one message. Delivery failures never raise into the caller: they
are logged, counted (:attr:`Router.stats`) and retried with backoff until ``delivery.max_attempts``. A critical
alert engages the kill switch when ``kill_switch.engage_on_critical`` is set.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ai_trading.errors import ConfigError
from ai_trading.monitoring.config import AlertsConfig
from ai_trading.monitoring.killswitch import KillSwitch, KillSwitchMode
from ai_trading.monitoring.model import Alert, AlertState, Severity, utc_now
from ai_trading.monitoring.outbox import Acceptance, AlertOutbox, OutboxItem
from ai_trading.monitoring.rules import (
    CostObservation,
    CostSpikeRule,
    DrawdownRule,
    ReconciliationFinding,
    SlippageDriftRule,
    alert_from_governance_event,
    alert_from_reconciliation,
    alert_from_slo_event,
)
from ai_trading.monitoring.sinks import DeliveryFailed, Sink, build_sink
from ai_trading.secrets import mask_text

log = logging.getLogger(__name__)

ROUTER_WHO = "alerts-router"


@dataclass(frozen=True)
class DispatchReport:
    """What one :meth:`Router.dispatch` did: messages delivered, rescheduled and given up (each may carry
    several alerts)."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0


def build_message(items: Sequence[OutboxItem]) -> dict[str, Any]:
    """One message of a (sink, rule) group: its alerts and the worst severity. The message id is derived from the
    outbox rows, so a resend of the same rows (after a lease ran out) carries the same id for receivers to dedupe."""
    worst = max((Severity(i.severity) for i in items), key=lambda s: s.rank)
    rows = ",".join(str(i.id) for i in sorted(items, key=lambda i: i.id))
    message_id = hashlib.sha256(f"{items[0].sink}:{rows}".encode()).hexdigest()[:32]
    return {"message_id": message_id, "rule": items[0].rule, "severity": str(worst), "count": len(items),
            "alerts": [i.alert for i in items], "sent_at": utc_now().isoformat()}


def _db_error(exc: SQLAlchemyError) -> str:
    return mask_text(str(getattr(exc, "orig", None) or exc))


class Router:
    """Routes alerts to sinks through the durable outbox on ``engine`` (the OMS database, at head)."""

    def __init__(self, config: AlertsConfig, engine: Engine, sinks: Mapping[str, Sink], *,
                 clock: Callable[[], datetime] = utc_now, rng: random.Random | None = None) -> None:
        missing = sorted(set(config.sinks) - set(sinks))
        if missing:
            raise ConfigError(f"alerts router: no sink object for configured sink(s) {missing}")
        self.config, self._sinks, self._clock = config, dict(sinks), clock
        self._outbox = AlertOutbox(engine, clock=clock)
        self._rng = rng or random.Random()
        self._kill_switch = KillSwitch(engine) if config.kill_switch.engage_on_critical else None
        self.stats: Counter[str] = Counter()

    @classmethod
    def build(cls, config: AlertsConfig, engine: Engine, *, environ: Mapping[str, str] | None = None,
              clock: Callable[[], datetime] = utc_now, sleep: Callable[[float], None] = time.sleep) -> Router:
        """A router with the sinks ``config`` describes, their secrets read from ``environ`` (default: the
        process environment); a missing secret is a ConfigError naming the variable, never its value."""
        env = os.environ if environ is None else environ
        sinks = {name: build_sink(name, sink, env, sleep=sleep) for name, sink in config.sinks.items()}
        return cls(config, engine, sinks, clock=clock)

    @property
    def outbox(self) -> AlertOutbox:
        return self._outbox

    def sinks_for(self, alert: Alert) -> list[str]:
        """The sinks of every route matching the alert's severity and source, in config order, once each."""
        names: list[str] = []
        for route in self.config.routes:
            if route.matches(alert.severity, alert.source):
                names.extend(s for s in route.sinks if s not in names)
        return names

    def raise_alert(self, alert: Alert, *, dispatch: bool = True) -> Acceptance:
        """Accept ``alert`` into the outbox (durable on return), engage the kill switch for a critical one when
        configured, then (``dispatch``) try to deliver what is due. A database error while accepting propagates
        (the alert was not recorded); delivery errors never do."""
        sinks = self.sinks_for(alert)
        outcome = self._outbox.accept(alert, sinks,
                                      repeat_interval=timedelta(seconds=self.config.repeat_interval_seconds),
                                      group_window=timedelta(seconds=self.config.group_window_seconds))
        self.stats[f"alerts_{outcome}"] += 1
        log.info("alert %s name=%s severity=%s source=%s dedup_key=%s outcome=%s sinks=%s", alert.state, alert.name,
                 alert.severity, alert.source, alert.dedup_key, outcome, ",".join(sinks) or "-")
        if outcome is Acceptance.NO_ROUTE:
            log.warning("alert name=%s severity=%s source=%s matches no route: recorded, sent nowhere", alert.name,
                        alert.severity, alert.source)
        if self._kill_switch is not None and alert.severity is Severity.CRITICAL and alert.state is AlertState.FIRED:
            self._kill_switch.engage(f"critical alert {alert.name}: {alert.summary}", who=ROUTER_WHO,
                                     mode=KillSwitchMode(self.config.kill_switch.mode))
        if dispatch:
            self.dispatch()
        return outcome

    def dispatch(self) -> DispatchReport:
        """Deliver every message due now; failures are logged, counted and rescheduled, never raised."""
        delivered = retrying = failed = 0
        try:
            groups = self._outbox.claim_due(timedelta(seconds=self.config.delivery.lease_seconds))
        except SQLAlchemyError as exc:
            self.stats["dispatch_db_errors"] += 1
            log.error("alert dispatch could not read the outbox: %s", _db_error(exc))
            return DispatchReport()
        for items in groups:
            outcome = self._deliver(items)
            delivered += outcome == "delivered"
            retrying += outcome == "retrying"
            failed += outcome == "failed"
        return DispatchReport(delivered, retrying, failed)

    def _deliver(self, items: Sequence[OutboxItem]) -> str:
        sink_name, ids = items[0].sink, [i.id for i in items]
        message = build_message(items)
        try:
            sink = self._sinks.get(sink_name)
            if sink is None:
                raise DeliveryFailed(sink_name, "no such sink in this process's config", retryable=True, attempts=0)
            sink.send(message)
        except DeliveryFailed as exc:
            return self._failed(items, ids, str(exc), exc.retryable)
        except Exception as exc:  # a sink's own defect must not stop trading either: recorded, counted, permanent
            return self._failed(items, ids, f"alert sink {sink_name!r} raised {type(exc).__name__}", False)
        try:
            self._outbox.mark_delivered(ids, message["message_id"])
        except SQLAlchemyError as exc:  # sent but not marked: the lease runs out and it is sent again (at least once)
            self.stats["dispatch_db_errors"] += 1
            log.error("alert delivered sink=%s but not marked: %s", sink_name, _db_error(exc))
        self.stats["messages_delivered"] += 1
        self.stats["alerts_delivered"] += len(items)
        return "delivered"

    def _failed(self, items: Sequence[OutboxItem], ids: list[int], error: str, retryable: bool) -> str:
        attempts = max(i.attempts for i in items) + 1
        d = self.config.delivery
        retry_at = None
        if retryable and attempts < d.max_attempts:
            delay = min(d.backoff_max_seconds, d.backoff_initial_seconds * 2 ** (attempts - 1))
            retry_at = self._clock() + timedelta(seconds=delay * self._rng.uniform(0.5, 1.5))
        error = mask_text(error)
        try:
            self._outbox.mark_attempt_failed(ids, error, retry_at)
        except SQLAlchemyError as exc:
            self.stats["dispatch_db_errors"] += 1
            log.error("alert delivery failure not recorded sink=%s: %s", items[0].sink, _db_error(exc))
        if retry_at is None:
            self.stats["messages_failed"] += 1
            log.error("alert delivery FAILED for good sink=%s rule=%s alerts=%d attempts=%d: %s", items[0].sink,
                      items[0].rule, len(items), attempts, error)
            return "failed"
        self.stats["messages_retrying"] += 1
        log.warning("alert delivery failed sink=%s rule=%s attempt=%d, retry at %s: %s", items[0].sink, items[0].rule,
                    attempts, retry_at.isoformat(), error)
        return "retrying"


__all__ = ["Acceptance", "Alert", "AlertState", "CostObservation", "CostSpikeRule", "DispatchReport",
           "DrawdownRule", "ReconciliationFinding", "Router", "Severity", "SlippageDriftRule",
           "alert_from_governance_event", "alert_from_reconciliation", "alert_from_slo_event", "build_message"]
