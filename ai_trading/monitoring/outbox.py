"""The durable alert outbox and the dedup state, on PostgreSQL or SQLite (the OMS database).

- :meth:`AlertOutbox.accept` decides, in one transaction, whether an alert is owed to anyone (a repeat of a fired
  dedup key inside the repeat interval is not; a resolve is owed once, and only for a key that fired) and writes
  one ``pending`` row per sink. Once it returns, a crash cannot lose the alert.
- :meth:`AlertOutbox.claim_due` hands a dispatcher the rows due now, grouped by (sink, rule): a group is due when
  its oldest row's group window has passed, and it takes every untried row of that rule along (a burst becomes
  one message). Each row is claimed by a compare-and-set into ``sending`` with a lease, so two dispatchers never
  send one row twice; a dispatcher that dies mid-send leaves its rows to be taken again when the lease runs out
  (delivery is at least once; receivers can dedupe on the message id).
- :meth:`mark_delivered` / :meth:`mark_attempt_failed` close or reschedule the claimed rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Engine, Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from ai_trading.monitoring.model import Alert, AlertState, utc_now
from ai_trading.monitoring.tables import AlertOutboxRow, AlertStateRow
from ai_trading.oms.db import require_head

log = logging.getLogger(__name__)

_O = cast(Table, AlertOutboxRow.__table__)
_S = cast(Table, AlertStateRow.__table__)
_CAS_RETRIES = 8
SCAN_LIMIT = 1000


class _Raced(Exception):
    """Another writer moved the dedup state between our read and our write."""


class Acceptance(StrEnum):
    QUEUED = "queued"  # rows written for its sinks
    REPEAT = "repeat"  # a fired key seen again inside its repeat interval: not sent again
    NOTHING_TO_RESOLVE = "nothing_to_resolve"  # a resolve of a key that is not firing: not sent
    NO_ROUTE = "no_route"  # no route matched: state recorded, nothing owed


@dataclass(frozen=True)
class OutboxItem:
    id: int
    sink: str
    rule: str
    severity: str
    alert: dict[str, Any]
    attempts: int
    created_at: datetime


class AlertOutbox:
    """The outbox on ``engine`` (at the migrations' head). ``clock`` is the time every decision uses."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utc_now) -> None:
        require_head(engine, "alert outbox database")
        self._engine, self._clock = engine, clock

    def accept(self, alert: Alert, sinks: Sequence[str], *, repeat_interval: timedelta,
               group_window: timedelta) -> Acceptance:
        """Record ``alert`` and queue one row per sink of ``sinks`` when it is owed (module docstring)."""
        for _ in range(_CAS_RETRIES):
            try:
                return self._accept_once(alert, sinks, repeat_interval, group_window)
            except (_Raced, IntegrityError, OperationalError) as exc:  # a concurrent writer won; decide again
                log.info("alert accept raced on dedup_key=%s (%s); retrying", alert.dedup_key, type(exc).__name__)
        raise OperationalError(f"alert accept dedup_key={alert.dedup_key}", None, RuntimeError(
            f"lost {_CAS_RETRIES} compare-and-set races in a row"))

    def _accept_once(self, alert: Alert, sinks: Sequence[str], repeat_interval: timedelta,
                     group_window: timedelta) -> Acceptance:
        now = self._clock()
        with self._engine.begin() as conn:
            row = conn.execute(select(_S).where(_S.c.dedup_key == alert.dedup_key)).first()
            firing = row is not None and row.state == AlertState.FIRED
            if alert.state is AlertState.FIRED and row is not None and firing \
                    and now - row.last_sent_at < repeat_interval:
                verdict = Acceptance.REPEAT
            elif alert.state is AlertState.RESOLVED and not firing:
                verdict = Acceptance.NOTHING_TO_RESOLVE
            else:
                verdict = Acceptance.QUEUED if sinks else Acceptance.NO_ROUTE
            if verdict in (Acceptance.REPEAT, Acceptance.NOTHING_TO_RESOLVE):
                if row is not None:
                    conn.execute(update(_S).where(_S.c.dedup_key == alert.dedup_key)
                                 .values(last_seen_at=now, suppressed=_S.c.suppressed + 1))
                return verdict
            values = dict(rule=alert.name, state=str(alert.state), last_seen_at=now, last_sent_at=now, suppressed=0)
            if row is None:
                conn.execute(insert(_S).values(dedup_key=alert.dedup_key, **values))
            else:  # compare-and-set: only the writer that saw this state moves it
                moved = conn.execute(update(_S).where(_S.c.dedup_key == alert.dedup_key,
                                                      _S.c.state == row.state,
                                                      _S.c.last_sent_at == row.last_sent_at).values(**values))
                if moved.rowcount != 1:
                    raise _Raced(alert.dedup_key)
            if sinks:
                payload = alert.to_dict()
                conn.execute(insert(_O), [dict(sink=sink, rule=alert.name, dedup_key=alert.dedup_key,
                                               severity=str(alert.severity), state=str(alert.state), alert=payload,
                                               status="pending", attempts=0, created_at=now,
                                               next_attempt_at=now + group_window) for sink in sinks])
            return verdict

    def state(self, dedup_key: str) -> AlertState | None:
        """The last accepted state of ``dedup_key`` (None: never raised)."""
        with self._engine.connect() as conn:
            found = conn.execute(select(_S.c.state).where(_S.c.dedup_key == dedup_key)).scalar_one_or_none()
        return None if found is None else AlertState(found)

    def claim_due(self, lease: timedelta) -> list[list[OutboxItem]]:
        """Claim the rows due now, grouped by (sink, rule), oldest first (module docstring)."""
        now = self._clock()
        with self._engine.connect() as conn:
            rows = conn.execute(select(_O).where(_O.c.status.in_(("pending", "sending")))
                                .order_by(_O.c.id).limit(SCAN_LIMIT)).all()

        def due(r: Any) -> bool:
            if r.status == "sending":
                return r.lease_until is not None and r.lease_until <= now
            return bool(r.next_attempt_at <= now)

        due_groups = {(r.sink, r.rule) for r in rows if due(r)}
        taken: dict[tuple[str, str], list[OutboxItem]] = {}
        for r in rows:
            key = (r.sink, r.rule)
            if key not in due_groups or not (due(r) or (r.status == "pending" and r.attempts == 0)):
                continue
            if self._claim(r, now + lease):
                taken.setdefault(key, []).append(OutboxItem(r.id, r.sink, r.rule, r.severity, dict(r.alert),
                                                            r.attempts, r.created_at))
        return list(taken.values())

    def _claim(self, r: Any, lease_until: datetime) -> bool:
        lease_match = _O.c.lease_until.is_(None) if r.lease_until is None else _O.c.lease_until == r.lease_until
        with self._engine.begin() as conn:
            claimed = conn.execute(update(_O).where(_O.c.id == r.id, _O.c.status == r.status,
                                                    _O.c.attempts == r.attempts, lease_match)
                                   .values(status="sending", lease_until=lease_until))
            return claimed.rowcount == 1

    def mark_delivered(self, ids: Sequence[int], message_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(_O).where(_O.c.id.in_(list(ids)), _O.c.status == "sending")
                         .values(status="delivered", delivered_at=self._clock(), attempts=_O.c.attempts + 1,
                                 message_id=message_id, lease_until=None, last_error=None))

    def mark_attempt_failed(self, ids: Sequence[int], error: str, retry_at: datetime | None) -> None:
        """Record a failed attempt: back to ``pending`` until ``retry_at``, or ``failed`` for good when None."""
        status = "pending" if retry_at is not None else "failed"
        with self._engine.begin() as conn:
            conn.execute(update(_O).where(_O.c.id.in_(list(ids)), _O.c.status == "sending")
                         .values(status=status, attempts=_O.c.attempts + 1, last_error=error[:2000],
                                 next_attempt_at=retry_at or self._clock(), lease_until=None))

    def counts(self) -> dict[str, int]:
        """Rows by status (every status present, zero when none)."""
        with self._engine.connect() as conn:
            query = select(_O.c.status, func.count()).group_by(_O.c.status)
            found = {str(status): int(n) for status, n in conn.execute(query)}
        return {s: int(found.get(s, 0)) for s in ("pending", "sending", "delivered", "failed")}

    def rows(self) -> list[dict[str, Any]]:
        """Every row, oldest first (operator views and tests)."""
        with self._engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(_O).order_by(_O.c.id))]
