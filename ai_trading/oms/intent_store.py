"""Durable order intents: the OMS's source of truth, on PostgreSQL (psycopg 3) or SQLite (WAL).

Usage::

    from ai_trading.oms.db import make_engine
    from ai_trading.oms.intent_store import IntentStore

    store = IntentStore(make_engine(dsn))        # refuses a database not at the migrations' head
    intent = store.create(OrderIntent(...))      # idempotent on the client order id (CIDv2)
    if store.claim_for_submit(intent.client_order_id):   # exactly one worker wins
        ...send to the broker under intent.broker_safe_id...
        store.record(intent.client_order_id, OrderEvent.acked(broker_order_id))
    store.record(cid, OrderEvent.filled(fill))   # a redelivered trade id is a no-op

Guarantees:

- Every durable step is one transaction: the current state (on the intent's row), the event log entry and
  the fill are written together or not at all. On PostgreSQL it is one statement in autocommit (one round
  trip); on SQLite a transaction of its statements. Each event is validated by ``models.apply`` before
  anything is written, so an illegal event raises and writes nothing.
- ``create`` is idempotent on the CID: a second create (in any process, even concurrently) returns the
  stored intent; the unique constraint decides the race and the loser reads the winner's row back.
- ``claim_for_submit`` is a compare-and-set (``UPDATE ... WHERE state = 'CREATED'``), so of any number of
  threads or processes racing on one intent exactly one gets True. Other transitions read the row, validate,
  and write under a compare-and-set on the row's event count: a writer that lost the race to another
  reads again and validates again. The snapshot a store last wrote of an open intent stands in for the
  read of its next event; the compare-and-set proves it current, and only a write is decided on it (a
  no-op or a refusal is decided on a fresh read).
- A fill is stored once per broker trade id (unique constraint); ``replay`` folds the event log with the
  same ``apply`` and must equal the stored state.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    JSON,
    Engine,
    Integer,
    Numeric,
    Row,
    String,
    Table,
    bindparam,
    func,
    insert,
    literal,
    literal_column,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ai_trading.errors import IllegalTransition, IntentConflict, OrderValidationError, UnknownIntent
from ai_trading.oms import models
from ai_trading.oms.db import DriverStatement, KeptConnection, require_head
from ai_trading.oms.models import (
    OPEN_STATES,
    EventKind,
    Fill,
    OrderEvent,
    OrderIntent,
    OrderSnapshot,
    OrderState,
    OrderType,
    Side,
    utc_now,
)
from ai_trading.oms.tables import QTY, EventRow, FillRow, IntentRow, ReconciliationRow, UtcDateTime

log = logging.getLogger(__name__)

_I = cast(Table, IntentRow.__table__)
_E = cast(Table, EventRow.__table__)
_F = cast(Table, FillRow.__table__)
_R = cast(Table, ReconciliationRow.__table__)
# Built once: a durable step then costs no statement construction, only the cached compiled form.
_CREATE = insert(_I)
# PostgreSQL: an intent already stored under the CID is left as it is (no row inserted, read back), so the
# usual repeated create (each submit creates the intent a micro-batch already stored) raises no error; a
# taken broker-safe id still does. Inline: the row count tells whether it went in, so no RETURNING of the new
# row's id (SQLAlchemy's implicit one) costs the server a projection and the client a result to read.
_CREATE_UNLESS_STORED = (postgresql.insert(_I).inline()
                         .on_conflict_do_nothing(index_elements=["client_order_id"]))
# (returns what the claimed intent's snapshot needs: a CREATED intent has no fills, so no trade ids)
_CLAIM = (update(_I).where(_I.c.client_order_id == bindparam("cid"), _I.c.state == bindparam("from_state"))
          .values(state=bindparam("to_state"), last_sequence=_I.c.last_sequence + 1,
                  updated_at=bindparam("now", type_=UtcDateTime()))
          .returning(_I.c.id, _I.c.client_order_id, _I.c.quantity, _I.c.state, _I.c.filled_quantity, _I.c.fees,
                     _I.c.broker_order_id, _I.c.last_sequence))
# the intent with its trade ids, one row per fill, in one round trip
_READ = (select(_I, _F.c.trade_id.label("fill_trade_id")).select_from(_I.outerjoin(_F, _F.c.intent_id == _I.c.id))
         .where(_I.c.client_order_id == bindparam("cid")))
# compare-and-set on the event count: only the writer that read the latest state moves the row
_MOVE = (update(_I).where(_I.c.id == bindparam("row_id"), _I.c.last_sequence == bindparam("seen"))
         .values(state=bindparam("to_state"), filled_quantity=bindparam("to_filled", type_=QTY),
                 fees=bindparam("to_fees", type_=QTY), broker_order_id=bindparam("to_broker"),
                 last_sequence=bindparam("to_sequence"), updated_at=bindparam("now", type_=UtcDateTime())))
_LOG = insert(_E)
_FILL = insert(_F)
_EVENT_COLUMNS = ("intent_id", "sequence", "kind", "payload", "recorded_at")
_FILL_COLUMNS = ("intent_id", "trade_id", "quantity", "price", "fee", "timestamp")


def _logged(moved: Any, sequence: Any) -> Any:
    """INSERT of the event row for the intent ``moved`` returns (nothing when it returns no row)."""
    return insert(_E).from_select(_EVENT_COLUMNS, select(
        moved.c.id, sequence, bindparam("kind", type_=String()), bindparam("payload", type_=JSON()),
        bindparam("now", type_=UtcDateTime())))


# PostgreSQL runs each durable step as one statement in autocommit (one round trip, its own transaction):
# the compare-and-set UPDATE and the inserts that depend on it share a WITH, so they commit together or
# not at all, and an UPDATE that matched no row inserts nothing. SQLite has no data-modifying WITH and runs
# the same statements one by one in a transaction.
_CLAIMED = _CLAIM.cte("claimed")
_CLAIM_ONE = select(_CLAIMED).add_cte(_logged(_CLAIMED, _CLAIMED.c.last_sequence).cte("claim_logged"))
_MOVED = _MOVE.returning(_I.c.id).cte("moved")
# (the fill's parameters are prefixed: an UPDATE sets every column named by an execution parameter)
_FILLED = insert(_F).from_select(_FILL_COLUMNS, select(
    _MOVED.c.id, bindparam("fill_trade_id", type_=String()), bindparam("fill_quantity", type_=QTY),
    bindparam("fill_price", type_=QTY), bindparam("fill_fee", type_=QTY),
    bindparam("fill_timestamp", type_=UtcDateTime())))
_MOVE_ONE = select(_MOVED.c.id).add_cte(_logged(_MOVED, bindparam("to_sequence", type_=Integer())).cte("logged"))
_MOVE_FILL_ONE = _MOVE_ONE.add_cte(_FILLED.cte("filled"))
_RETRIES = 20  # compare-and-set misses in a row before giving up (only under heavy write contention)
# PostgreSQL's micro-batch: one short statement whose parameters are one array per column (unnest turns them
# into rows), where a multi-row VALUES is a statement as long as the batch that the driver parses again
# for every batch (most of a batch's client time)
_CREATED_COLUMNS = tuple(column for column in _I.c if column.name != "id")
_CREATED_COLUMNS_NAMES = tuple(column.name for column in _CREATED_COLUMNS)


def _unbounded(column: Any) -> Any:
    # An explicit cast to varchar(n) truncates and to numeric(p, s) rounds, silently: the arrays carry the
    # bare types, so storing into the columns checks length and scale as a single-row INSERT does.
    kind = column.type
    return String() if isinstance(kind, String) else Numeric() if isinstance(kind, Numeric) else kind


_CREATE_MANY_ROWS = func.unnest(*(bindparam(f"each_{column.name}", type_=ARRAY(_unbounded(column)))
                                  for column in _CREATED_COLUMNS)).table_valued(
    *(column.name for column in _CREATED_COLUMNS)).render_derived(name="batch")
_CREATE_MANY = (postgresql.insert(_I)
                .from_select([column.name for column in _CREATED_COLUMNS], select(*_CREATE_MANY_ROWS.c))
                .on_conflict_do_nothing(index_elements=["client_order_id"]).returning(_I.c.client_order_id))
# A strategy's working book in one statement: its fills after a cursor (kind 0: quantity, price, fee) and its
# open intents (kind 1: quantity, filled quantity, fees), each kind in id order.
_WORKING = union_all(
    select(literal_column("0", Integer).label("kind"), _F.c.id, _I.c.symbol, _I.c.side, _F.c.quantity.label("a"),
           _F.c.price.label("b"), _F.c.fee.label("c"))
    .join_from(_F, _I, _I.c.id == _F.c.intent_id)
    .where(_F.c.id > bindparam("after"), _I.c.strategy == bindparam("strategy")),
    select(literal_column("1", Integer), _I.c.id, _I.c.symbol, _I.c.side, _I.c.quantity, _I.c.filled_quantity,
           _I.c.fees)
    # (one parameter per open state, not one expanding list: compiled once, it runs on the driver as it is)
    .where(_I.c.strategy == bindparam("strategy"), _I.c.state.in_([literal(s.value) for s in OPEN_STATES])))
_WORKING = _WORKING.order_by(_WORKING.selected_columns.kind, _WORKING.selected_columns.id)


_KNOWN = 4096  # snapshots of the open intents this store last wrote, kept to validate their next event


@dataclass(frozen=True)
class OrderRecord:
    """A stored intent and its current state."""

    intent: OrderIntent
    snapshot: OrderSnapshot

    @property
    def client_order_id(self) -> str:
        return self.intent.client_order_id

    @property
    def state(self) -> OrderState:
        return self.snapshot.state


@dataclass(frozen=True)
class BookFill:
    """A stored fill as a position keeper reads it: the store's fill id (its cursor), symbol, side, quantity,
    price and fee."""

    id: int
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal


@dataclass(frozen=True)
class ReconciliationRun:
    """One recorded reconciliation run."""

    started_at: datetime
    finished_at: datetime
    outcome: str
    counts: Mapping[str, int]
    detail: str | None


@dataclass(frozen=True)
class StoredFill:
    """A stored fill with its order's symbol and side; ``id`` is the store's running number (a reader's cursor)."""

    id: int
    client_order_id: str
    strategy: str
    symbol: str
    side: Side
    order_type: OrderType
    fill: Fill


class _Contended(Exception):
    """Another writer changed the row between our read and our write: read again."""


class IntentStore:
    """Intents, their event log, current state and fills, in the database behind ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.revision = require_head(engine, "oms store")
        self.engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._one_statement = engine.dialect.name == "postgresql"  # data-modifying WITH (see _CLAIM_ONE)
        # the connection of a single step: on PostgreSQL one kept open, as a step is one short statement
        self._kept = KeptConnection(engine) if self._one_statement else None
        if self._one_statement:
            dialect = engine.dialect
            self._create_one = DriverStatement(_CREATE_UNLESS_STORED, dialect, _CREATED_COLUMNS_NAMES)
            self._claim_one = DriverStatement(_CLAIM_ONE, dialect)
            self._move_one = DriverStatement(_MOVE_ONE, dialect)
            self._move_fill_one = DriverStatement(_MOVE_FILL_ONE, dialect)
        else:
            # the decide path's statements (working book, the bar's intents) compiled once for the driver
            self._working = DriverStatement(_WORKING, engine.dialect)
            self._create_each = DriverStatement(sqlite.insert(_I).on_conflict_do_nothing(
                index_elements=["client_order_id"]), engine.dialect, _CREATED_COLUMNS_NAMES)
        # A step's connection: PostgreSQL's kept autocommit one; on SQLite one from the pool, whose writes commit
        # through SQLAlchemy (see _immediate)
        self._step: Callable[[], AbstractContextManager[Connection]] = self.engine.connect
        if self._kept is not None:
            self._step = self._kept.connect
            weakref.finalize(self, self._kept.close)
        # cid -> (row id, snapshot) as this store last wrote it: the next event is validated against it
        # without a read, and the write's compare-and-set on the event count proves it is still current
        self._known: OrderedDict[str, tuple[int, OrderSnapshot]] = OrderedDict()
        self._known_lock = threading.Lock()

    def close(self) -> None:
        """Return the connection this store keeps for its durable steps to the pool (a later step takes a
        new one); the store does so itself when it is garbage-collected."""
        if self._kept is not None:
            self._kept.close()

    # ---- intents -------------------------------------------------------------------------------------

    def create(self, intent: OrderIntent) -> OrderIntent:
        """Store ``intent`` (state CREATED) and return it; when its CID is stored already, return the stored
        intent. ``IntentConflict`` when the stored one differs in content the CID does not cover."""
        if intent.broker_order_id is not None:
            raise OrderValidationError(f"intent {intent.client_order_id}: created with broker_order_id "
                                       f"{intent.broker_order_id!r}; the broker's id is recorded by its ack")
        try:
            # one INSERT is its own transaction: autocommit spares the BEGIN and COMMIT round trips
            values = _intent_values(intent, utc_now())
            if self._one_statement:
                with self._step() as conn:
                    if self._create_one.run(conn, values)[0] == 0:
                        return self._read_back([intent], conn)[0]
            else:
                with self._autocommit.connect() as conn:
                    conn.execute(_CREATE, values)
            return intent
        except IntegrityError:
            stored = self._read_back([intent])
            return stored[0]

    def create_many(self, intents: Sequence[OrderIntent], conn: Connection | None = None) -> list[OrderIntent]:
        """Micro-batched ``create``: all of ``intents`` in one transaction (one durable commit), each
        idempotent on its CID like ``create``; returns the stored intents in the given order. With ``conn``
        (a :meth:`transaction`'s) they are written in that transaction, which commits them."""
        if not intents:
            return []
        for intent in intents:
            if intent.broker_order_id is not None:
                raise OrderValidationError(f"intent {intent.client_order_id}: created with a broker_order_id")
        now = utc_now()
        rows = [_intent_values(intent, now) for intent in intents]
        # a transaction, not autocommit: a batch that conflicts with a stored intent leaves nothing stored
        with _begun(self.engine, conn) as conn:
            if self._one_statement:
                inserted = set(conn.execute(_CREATE_MANY, {f"each_{column.name}": [row[column.name] for row in rows]
                                                           for column in _CREATED_COLUMNS}).scalars())
            else:
                # one executemany, no RETURNING: when every row went in none was stored before; otherwise
                # every intent is read back and compared (the stored one wins, as above)
                created = self._create_each.run_many(conn, rows)
                inserted = {row["client_order_id"] for row in rows} if created == len(rows) else set()
            return self._stored(intents, inserted, conn)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction for a caller that reads the store and creates intents from what it read (the
        execution engine's rebalance: its working positions, the kill switch, the bar's intents), committed
        when the block ends, rolled back if it raises. On SQLite it takes the write lock first (BEGIN
        IMMEDIATE): no other writer commits between its reads and its writes, and its reads are never refused
        the upgrade to a write."""
        with self.engine.connect() as conn, (conn.begin() if self._one_statement else _immediate(conn)):
            yield conn

    def _stored(self, intents: Sequence[OrderIntent], inserted: set[str], conn: Connection) -> list[OrderIntent]:
        # only the intents stored before (or twice in this batch) are read back and compared
        times = Counter(intent.client_order_id for intent in intents)
        existing = [intent for intent in intents
                    if intent.client_order_id not in inserted or times[intent.client_order_id] > 1]
        stored = {i.client_order_id: i for i in self._read_back(existing, conn)} if existing else {}
        return [stored.get(intent.client_order_id, intent) for intent in intents]

    def _read_back(self, intents: Sequence[OrderIntent], conn: Connection | None = None) -> list[OrderIntent]:
        cids = [intent.client_order_id for intent in intents]
        with _connect(self.engine, conn) as c:
            rows = {row.client_order_id: row for row in c.execute(select(_I).where(_I.c.client_order_id.in_(cids)))}
            out = []
            for intent in intents:
                row = rows.get(intent.client_order_id)
                if row is None:
                    other = c.execute(select(_I.c.client_order_id).where(
                        _I.c.broker_safe_id == intent.broker_safe_id)).scalar_one_or_none()
                    raise IntentConflict(f"intent {intent.client_order_id}: its broker-safe id {intent.broker_safe_id} "
                                         f"is taken by {other}" if other else
                                         f"intent {intent.client_order_id}: not stored after a unique-key conflict")
                stored = _intent_from_row(row)
                if (stored.order_type, stored.limit_price) != (intent.order_type, intent.limit_price):
                    raise IntentConflict(
                        f"intent {intent.client_order_id} is stored as {stored.order_type} limit {stored.limit_price}; "
                        f"created again as {intent.order_type} limit {intent.limit_price} (bump its version)")
                out.append(stored)
            return out

    def find(self, client_order_id: str) -> OrderRecord | None:
        return self._find(_I.c.client_order_id == client_order_id)

    def find_by_broker_safe_id(self, broker_safe_id: str) -> OrderRecord | None:
        """The intent a venue knows by ``broker_safe_id`` (the id it was sent under), or None (not ours)."""
        return self._find(_I.c.broker_safe_id == broker_safe_id)

    def get(self, client_order_id: str) -> OrderRecord:
        record = self.find(client_order_id)
        if record is None:
            raise UnknownIntent(f"the oms store holds no intent with client order id {client_order_id!r}")
        return record

    def _find(self, where: Any) -> OrderRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(_I).where(where)).one_or_none()
            if row is None:
                return None
            trade_ids = _trade_ids(conn, [row.id]).get(row.id, frozenset())
        return OrderRecord(_intent_from_row(row), _snapshot_from_row(row, trade_ids))

    def open_orders(self) -> list[OrderRecord]:
        """Every intent not in a terminal state, oldest first (what reconciliation walks at startup)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_I).where(_I.c.state.in_([s.value for s in OPEN_STATES]))
                                .order_by(_I.c.id)).all()
            trades = _trade_ids(conn, [row.id for row in rows])
        return [OrderRecord(_intent_from_row(row), _snapshot_from_row(row, trades.get(row.id, frozenset())))
                for row in rows]

    def state_counts(self) -> dict[OrderState, int]:
        """How many intents are in each state (every state listed, zeros included)."""
        with self.engine.connect() as conn:
            counted: dict[str, int] = {state: n for state, n in conn.execute(
                select(_I.c.state, func.count()).group_by(_I.c.state))}
        return {state: int(counted.get(state.value, 0)) for state in OrderState}

    # ---- transitions ---------------------------------------------------------------------------------

    def claim_for_submit(self, client_order_id: str) -> bool:
        """Move a CREATED intent to SUBMITTED; True for exactly one caller of any number racing on it
        (threads or processes), who must then send the order. False when the intent is past CREATED."""
        target = models.TRANSITIONS[(OrderState.CREATED, EventKind.SUBMITTED)]
        now = utc_now()
        move = {"cid": client_order_id, "from_state": OrderState.CREATED.value, "to_state": target.value, "now": now}
        log = {"kind": EventKind.SUBMITTED.value, "payload": {}, "recorded_at": now}
        if self._one_statement:
            with self._step() as conn:
                claimed = next(iter(self._claim_one.run(conn, {**move, **log})[1]), None)
        else:
            with self.engine.begin() as conn:
                claimed = conn.execute(_CLAIM, move).one_or_none()
                if claimed is not None:
                    conn.execute(_LOG, {**log, "intent_id": claimed.id, "sequence": claimed.last_sequence})
        if claimed is not None:
            self._remember(claimed.id, _snapshot_from_row(claimed, frozenset()))
            return True
        with self._step() as conn:
            if conn.execute(select(_I.c.id).where(_I.c.client_order_id == client_order_id)).first() is None:
                raise UnknownIntent(f"the oms store holds no intent with client order id {client_order_id!r}")
        return False

    def record(self, client_order_id: str, event: OrderEvent) -> OrderSnapshot:
        """Apply ``event`` (validated by ``models.apply``) and store it in one transaction; returns the new
        snapshot, or the current one unchanged when the event is a no-op (a known trade id, a repeated ack).
        ``IllegalTransition`` / ``Overfill`` write nothing."""
        if event.sequence is not None:
            raise OrderValidationError(f"order {client_order_id}: event {event.kind} given sequence "
                                       f"{event.sequence}; the store numbers events")
        for attempt in range(_RETRIES):
            try:
                return self._record_once(client_order_id, event, recall=attempt == 0)
            except _Contended:
                continue
            except IntegrityError:
                # the fill's trade id went in first elsewhere (rolled back, nothing written): another order's
                # trade is refused; the same order's (a concurrent duplicate) is a no-op on the next read
                fill = event.fill if event.kind is EventKind.FILLED else None
                if fill is None:
                    raise
                with self.engine.connect() as conn:
                    owner = conn.execute(select(_I.c.client_order_id).join(_F, _F.c.intent_id == _I.c.id)
                                         .where(_F.c.trade_id == fill.trade_id)).scalar_one_or_none()
                if owner is None:
                    raise
                if owner != client_order_id:
                    raise IllegalTransition(f"order {client_order_id}: fill {fill.trade_id} is already recorded "
                                            f"for order {owner}") from None
        raise IllegalTransition(f"order {client_order_id}: event {event.kind} lost the compare-and-set "
                                f"{_RETRIES} times in a row to other writers")

    def _record_once(self, client_order_id: str, event: OrderEvent, *, recall: bool) -> OrderSnapshot:
        # Validate with models.apply, then write under a compare-and-set on the row's event count: a writer
        # that got there in between makes the write match no row (nothing written) and the caller reads
        # again. No lock is held across the validation. The snapshot this store last wrote spares the read;
        # only a write decides on it, so a no-op or a refusal is decided on a fresh read.
        known = self._recall(client_order_id) if recall else None
        if known is not None:
            row_id, before = known
            try:
                after = models.apply(before, event)
            except IllegalTransition:
                after = before
            if after is not before:
                with self._step() as conn:
                    if self._write(conn, row_id, before.sequence, after, event):
                        return after
        with self._step() as conn:
            rows = conn.execute(_READ, {"cid": client_order_id}).all()
            if not rows:
                raise UnknownIntent(f"the oms store holds no intent with client order id {client_order_id!r}")
            row = rows[0]
            trade_ids = frozenset(r.fill_trade_id for r in rows if r.fill_trade_id is not None)
            before = _snapshot_from_row(row, trade_ids)
            after = models.apply(before, event)
            if after is before:
                return before
            if not self._write(conn, row.id, before.sequence, after, event):
                raise _Contended
        return after

    def _write(self, conn: Connection, row_id: int, seen: int, after: OrderSnapshot, event: OrderEvent) -> bool:
        """Move the row from event count ``seen`` to ``after`` with ``event``'s log entry (and fill); False,
        writing nothing, when the row is no longer at ``seen``. On PostgreSQL ``conn`` is in autocommit and the
        one statement runs on it; on SQLite the statements run in a transaction of their own on ``conn``."""
        now = utc_now()
        move = {"row_id": row_id, "seen": seen, "to_state": after.state.value, "to_filled": after.filled_quantity,
                "to_fees": after.fees, "to_broker": after.broker_order_id, "to_sequence": after.sequence, "now": now}
        log = {"kind": event.kind.value, "payload": dict(event.payload), "recorded_at": now}
        fill = event.fill if event.kind is EventKind.FILLED else None
        stored = {} if fill is None else {"trade_id": fill.trade_id, "quantity": fill.quantity, "price": fill.price,
                                          "fee": fill.fee, "timestamp": fill.timestamp}
        if self._one_statement:
            prefixed = {f"fill_{key}": value for key, value in stored.items()}
            statement = self._move_one if fill is None else self._move_fill_one
            moved = bool(statement.run(conn, {**move, **log, **prefixed})[1])
        else:
            with _immediate(conn):
                moved = conn.execute(_MOVE, move).rowcount == 1
                if moved:
                    conn.execute(_LOG, {**log, "intent_id": row_id, "sequence": after.sequence})
                    if fill is not None:
                        conn.execute(_FILL, {**stored, "intent_id": row_id})
        if moved:
            self._remember(row_id, after)
        else:
            self._forget(after.client_order_id)
        return moved

    def _remember(self, row_id: int, snapshot: OrderSnapshot) -> None:
        with self._known_lock:
            if snapshot.is_terminal:  # no event moves it again
                self._known.pop(snapshot.client_order_id, None)
                return
            self._known[snapshot.client_order_id] = (row_id, snapshot)
            self._known.move_to_end(snapshot.client_order_id)
            if len(self._known) > _KNOWN:
                self._known.popitem(last=False)

    def _recall(self, client_order_id: str) -> tuple[int, OrderSnapshot] | None:
        with self._known_lock:
            return self._known.get(client_order_id)

    def _forget(self, client_order_id: str) -> None:
        with self._known_lock:
            self._known.pop(client_order_id, None)

    # ---- history -------------------------------------------------------------------------------------

    def events(self, client_order_id: str) -> list[OrderEvent]:
        """The intent's event log, in order."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_E.c.kind, _E.c.payload, _E.c.sequence)
                                .join(_I, _I.c.id == _E.c.intent_id)
                                .where(_I.c.client_order_id == client_order_id).order_by(_E.c.sequence)).all()
        return [OrderEvent(EventKind(kind), payload, sequence) for kind, payload, sequence in rows]

    def fills(self, client_order_id: str) -> list[Fill]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(_F.c.trade_id, _F.c.quantity, _F.c.price, _F.c.fee, _F.c.timestamp)
                                .join(_I, _I.c.id == _F.c.intent_id)
                                .where(_I.c.client_order_id == client_order_id).order_by(_F.c.id)).all()
        return [Fill(trade_id=r.trade_id, quantity=_dec(r.quantity), price=_dec(r.price), fee=_dec(r.fee),
                     timestamp=r.timestamp) for r in rows]

    def fills_after(self, after: int = 0, strategy: str | None = None) -> list[StoredFill]:
        """Every stored fill with ``id > after`` (of ``strategy``'s intents when given), in the order stored:
        positions are their signed sum, and a reader keeps the last ``id`` as its cursor."""
        query = (select(_F.c.id, _F.c.trade_id, _F.c.quantity, _F.c.price, _F.c.fee, _F.c.timestamp,
                        _I.c.client_order_id, _I.c.strategy, _I.c.symbol, _I.c.side, _I.c.order_type)
                 .join(_I, _I.c.id == _F.c.intent_id).where(_F.c.id > after).order_by(_F.c.id))
        if strategy is not None:
            query = query.where(_I.c.strategy == strategy)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [StoredFill(id=r.id, client_order_id=r.client_order_id, strategy=r.strategy, symbol=r.symbol,
                           side=Side(r.side), order_type=OrderType(r.order_type),
                           fill=Fill(trade_id=r.trade_id, quantity=_dec(r.quantity), price=_dec(r.price),
                                     fee=_dec(r.fee), timestamp=r.timestamp)) for r in rows]

    def working_book(self, strategy: str, after: int,
                     conn: Connection | None = None) -> tuple[list[BookFill], list[tuple[str, Side, Decimal]]]:
        """In one read (on ``conn`` when given): ``strategy``'s fills with ``id > after`` in the order stored,
        and the unfilled rest (symbol, side, quantity) of each of its open intents, oldest first."""
        values = {"after": after, "strategy": strategy}
        with _connect(self.engine, conn) as c:
            # the decide path's hot read runs on the driver on SQLite; on PostgreSQL SQLAlchemy's numeric readers
            # expect the values its own cursor setup returns, not psycopg's raw ones
            rows = c.execute(_WORKING, values).all() if self._one_statement else self._working.rows(c, values)
        fills = [BookFill(id_, symbol, Side(side), _dec(a), _dec(b), _dec(f))
                 for kind, id_, symbol, side, a, b, f in rows if kind == 0]
        rests = [(symbol, Side(side), _dec(a) - _dec(b)) for kind, _id, symbol, side, a, b, _f in rows if kind == 1]
        return fills, rests

    def latest_fill_time(self) -> datetime | None:
        """The newest stored fill's timestamp: a venue's fills from then on may not all be stored yet."""
        with self.engine.connect() as conn:
            return cast(datetime | None, conn.execute(select(func.max(_F.c.timestamp))).scalar_one())

    def replay(self, client_order_id: str) -> OrderSnapshot:
        """The intent's state rebuilt from its event log alone, with ``models.apply``."""
        record = self.get(client_order_id)
        return models.replay(OrderSnapshot.initial(record.intent), self.events(client_order_id))

    # ---- reconciliation runs -------------------------------------------------------------------------

    def record_reconciliation(self, outcome: str, counts: Mapping[str, int], started_at: datetime,
                              finished_at: datetime | None = None, detail: str | None = None) -> ReconciliationRun:
        """Store one reconciliation run (the reconcile module calls this at the end of each run)."""
        if not outcome:
            raise OrderValidationError("reconciliation outcome: a non-empty string (e.g. 'ok', 'failed')")
        bad = {k: v for k, v in counts.items()
               if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int)}
        if bad:
            raise OrderValidationError(f"reconciliation counts {bad}: names to integers")
        run = ReconciliationRun(started_at=started_at, finished_at=finished_at or utc_now(), outcome=outcome,
                                counts=dict(counts), detail=detail)
        with self.engine.begin() as conn:
            conn.execute(insert(_R), {"started_at": run.started_at, "finished_at": run.finished_at,
                                      "outcome": outcome, "counts": dict(counts), "detail": detail})
        return run

    def last_reconciliation(self) -> ReconciliationRun | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(_R).order_by(_R.c.id.desc()).limit(1)).one_or_none()
        if row is None:
            return None
        return ReconciliationRun(started_at=row.started_at, finished_at=row.finished_at, outcome=row.outcome,
                                 counts=dict(row.counts), detail=row.detail)


@contextmanager
def _immediate(conn: Connection) -> Iterator[Connection]:
    """A write transaction on ``conn`` (SQLite, not in autocommit) that takes the write lock first (BEGIN
    IMMEDIATE): no other writer commits between its reads and its writes, and its reads are never refused the
    upgrade to a write. Committed through the connection when the block ends, rolled back if it raises.

    A step writes on the connection it read on rather than on a second one from the pool: SQLite drops a
    connection's page cache whenever another connection writes, so a second connection's write makes the next
    read on the first (the decide path's) read every page again.
    """
    if not conn.in_transaction():
        conn.begin()  # what commits below: statements run on the driver (DriverStatement) begin none
    # issued by hand, the driver then opens no transaction of its own, and the connection's commit or rollback
    # ends this one; a write lock still held by another writer when the busy timeout ends raises OperationalError
    conn.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


@contextmanager
def _begun(engine: Engine, conn: Connection | None) -> Iterator[Connection]:
    """``conn`` when given (the caller's transaction commits), else a transaction of its own."""
    if conn is not None:
        yield conn
        return
    with engine.begin() as own:
        yield own


@contextmanager
def _connect(engine: Engine, conn: Connection | None) -> Iterator[Connection]:
    """``conn`` when given (inside a caller's transaction), else a fresh connection."""
    if conn is not None:
        yield conn
        return
    with engine.connect() as own:
        yield own


def _dec(value: Any) -> Decimal:
    # SQLite hands Numeric back rounded to the column's scale ("10.00000000"); normalise for equality of repr
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    return number.normalize() + 0 if number else Decimal(0)


def _intent_values(intent: OrderIntent, now: datetime) -> dict[str, Any]:
    return {"client_order_id": intent.client_order_id, "broker_safe_id": intent.broker_safe_id,
            "strategy": intent.strategy, "symbol": intent.symbol, "side": intent.side.value,
            "quantity": intent.quantity, "order_type": intent.order_type.value, "limit_price": intent.limit_price,
            "session": intent.session, "horizon": intent.horizon, "signal_hash": intent.signal_hash,
            "version": intent.version, "created_at": intent.created_at, "state": OrderState.CREATED.value,
            "filled_quantity": Decimal(0), "fees": Decimal(0),
            "broker_order_id": None, "last_sequence": 0, "updated_at": now}


def _intent_from_row(row: Row[Any]) -> OrderIntent:
    intent = OrderIntent(strategy=row.strategy, symbol=row.symbol, side=row.side, quantity=_dec(row.quantity),
                         session=row.session, horizon=row.horizon, signal_hash=row.signal_hash, version=row.version,
                         order_type=row.order_type,
                         limit_price=None if row.limit_price is None else _dec(row.limit_price),
                         created_at=row.created_at, broker_order_id=row.broker_order_id)
    if intent.client_order_id != row.client_order_id:
        raise IntentConflict(f"stored intent {row.client_order_id}: its content gives {intent.client_order_id}")
    return intent


def _snapshot_from_row(row: Row[Any], trade_ids: frozenset[str]) -> OrderSnapshot:
    return OrderSnapshot(client_order_id=row.client_order_id, quantity=_dec(row.quantity), state=OrderState(row.state),
                         filled_quantity=_dec(row.filled_quantity), fees=_dec(row.fees),
                         broker_order_id=row.broker_order_id, trade_ids=trade_ids, sequence=row.last_sequence)


def _trade_ids(conn: Connection, intent_ids: Iterable[int]) -> dict[int, frozenset[str]]:
    ids = list(intent_ids)
    if not ids:
        return {}
    out: dict[int, set[str]] = {}
    for intent_id, trade_id in conn.execute(select(_F.c.intent_id, _F.c.trade_id).where(_F.c.intent_id.in_(ids))):
        out.setdefault(intent_id, set()).add(trade_id)
    return {k: frozenset(v) for k, v in out.items()}
