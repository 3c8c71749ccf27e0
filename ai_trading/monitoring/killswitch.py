"""The kill switch: a database-persisted stop on new orders, engaged by an operator or by critical alerts.

Usage::

    switch = KillSwitch(engine)                  # refuses a database not at the migrations' head
    switch.engage("drawdown breach", who="ops", mode=KillSwitchMode.REDUCE_ONLY)
    if switch.allow_new_order(reduces_position=False):   # the engine asks before creating each intent
        ...
    switch.release("investigated", who="ops")

Every change is a row of an append-only log (who, why, when); the newest row is the state, so it survives
restarts and crashes and every process on the database sees the same switch. ``allow_new_order`` reads the
database on each call: an operator's engage from another process takes effect on the next order. Cancels are
never blocked (they only take risk off). A database error propagates: the caller must not trade blind.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Engine, Table, desc, insert, select
from sqlalchemy.engine import Connection

from ai_trading.errors import ConfigError
from ai_trading.monitoring.tables import KillSwitchEventRow
from ai_trading.oms.db import DriverStatement, require_head

log = logging.getLogger(__name__)

_K = cast(Table, KillSwitchEventRow.__table__)
_COLUMNS = (_K.c.id, _K.c.action, _K.c.mode, _K.c.who, _K.c.reason, _K.c.at)  # a KillSwitchEvent's, in its order
_LATEST = select(*_COLUMNS).order_by(desc(_K.c.id)).limit(1)
MAX_WHO = 128


class KillSwitchMode(StrEnum):
    BLOCK_ALL = "block_all"  # no new order at all
    REDUCE_ONLY = "reduce_only"  # only orders that reduce an existing position


@dataclass(frozen=True)
class KillSwitchEvent:
    """One change of the switch: ``action`` engage/release, the mode engaged (None on release), who, why, when."""

    id: int
    action: str
    mode: KillSwitchMode | None
    who: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class KillSwitchState:
    """The switch now; ``last`` is the change that set it (None: never touched, released)."""

    engaged: bool
    mode: KillSwitchMode | None
    last: KillSwitchEvent | None

    def allows(self, *, reduces_position: bool) -> bool:
        """Whether a new order may be sent under this state."""
        if not self.engaged:
            return True
        return self.mode is KillSwitchMode.REDUCE_ONLY and reduces_position


def _event(row: Sequence[Any]) -> KillSwitchEvent:
    """A row of ``_COLUMNS``."""
    id_, action, mode, who, reason, at = row
    return KillSwitchEvent(id=id_, action=action, mode=KillSwitchMode(mode) if mode else None, who=who,
                           reason=reason, at=at)


def _check_text(name: str, value: str, limit: int | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"kill switch {name}={value!r}: must be a non-empty string")
    if limit is not None and len(value) > limit:
        raise ConfigError(f"kill switch {name} is {len(value)} characters long: at most {limit}")
    return value.strip()


class KillSwitch:
    """The persisted kill switch on ``engine`` (the OMS database, at the migrations' head)."""

    def __init__(self, engine: Engine) -> None:
        require_head(engine, "kill switch database")
        self._engine = engine
        # read before every bar's orders: compiled once, run on the driver
        self._latest = DriverStatement(_LATEST, engine.dialect)

    def state(self, conn: Connection | None = None) -> KillSwitchState:
        """The switch now; read on ``conn`` when given (a transaction of the caller's on this switch's database,
        e.g. the execution engine's that creates the intents it allowed)."""
        if conn is None:
            with self._engine.connect() as own:
                rows = self._latest.rows(own, {})
        else:
            if conn.engine.url != self._engine.url:
                raise ConfigError(f"kill switch on {self._engine.url.render_as_string(hide_password=True)} read "
                                  f"on a connection to {conn.engine.url.render_as_string(hide_password=True)}")
            rows = self._latest.rows(conn, {})
        if not rows:
            return KillSwitchState(engaged=False, mode=None, last=None)
        event = _event(rows[0])
        return KillSwitchState(engaged=event.action == "engage", mode=event.mode, last=event)

    def allow_new_order(self, *, reduces_position: bool) -> bool:
        """True when a new order may go out: the switch is released, or engaged reduce-only and the order only
        reduces an existing position. Cancels are not orders here: they are always allowed."""
        return self.state().allows(reduces_position=reduces_position)

    def engage(self, reason: str, *, who: str, mode: KillSwitchMode = KillSwitchMode.BLOCK_ALL) -> KillSwitchState:
        """Engage (or change the mode of an engaged switch). Engaging again in the same mode records nothing."""
        reason, who, mode = _check_text("reason", reason), _check_text("who", who, MAX_WHO), KillSwitchMode(mode)
        current = self.state()
        if current.engaged and current.mode is mode:
            log.info("kill switch already engaged mode=%s by=%s; not recorded again", mode, current.last and
                     current.last.who)
            return current
        self._append("engage", mode, who, reason)
        log.warning("kill switch ENGAGED mode=%s who=%s reason=%s", mode, who, reason)
        return self.state()

    def release(self, reason: str, *, who: str) -> KillSwitchState:
        """Release an engaged switch; releasing a released switch records nothing."""
        reason, who = _check_text("reason", reason), _check_text("who", who, MAX_WHO)
        current = self.state()
        if not current.engaged:
            log.info("kill switch already released; not recorded again")
            return current
        self._append("release", None, who, reason)
        log.warning("kill switch released who=%s reason=%s", who, reason)
        return self.state()

    def history(self, limit: int | None = None) -> list[KillSwitchEvent]:
        """The changes, newest first (``limit`` of them when given)."""
        query = select(*_COLUMNS).order_by(desc(_K.c.id))
        if limit is not None:
            query = query.limit(limit)
        with self._engine.connect() as conn:
            return [_event(row) for row in conn.execute(query)]

    def _append(self, action: str, mode: KillSwitchMode | None, who: str, reason: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(insert(_K).values(action=action, mode=mode.value if mode else None, who=who, reason=reason,
                                           at=datetime.now(UTC)))
