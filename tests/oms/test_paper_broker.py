"""The paper venue: the Broker protocol, unique client order ids, fills equal to the simulator's per-order path,
durability across restarts, and the fault-injection wrapper. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from ai_trading.data import load_bars
from ai_trading.errors import ConfigError, SchemaRevisionError
from ai_trading.execution import ExecutionSimulator, OrderSide, OrderType, SimOrder, SimulatorConfig, TimeInForce
from ai_trading.oms.brokers.base import (
    Broker,
    BrokerOrderStatus,
    BrokerUnavailable,
    DuplicateClientOrderId,
    OrderRequest,
    UnknownOrder,
)
from ai_trading.oms.brokers.flaky import FlakyBroker, SubmitFault
from ai_trading.oms.brokers.paper import InvalidOrderRequest, PaperBroker, VenueClockError
from ai_trading.oms.brokers.paper_tables import PaperFillRow, PaperOrderRow
from ai_trading.oms.db import make_engine, upgrade_to_head
from ai_trading.oms.models import OrderType as OmsType
from ai_trading.oms.models import Side

BARS = load_bars(["NVDA", "ORCL"], start="2003-01-01", end="2003-12-31")  # 252 daily bars each
STAMPS = pd.DatetimeIndex(sorted(set(BARS.index.get_level_values("timestamp"))))
CONFIG = SimulatorConfig()  # conf/simulator/default.yaml


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def dsn_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """Makes fresh databases at head: a SQLite file in tmp, or a new PostgreSQL database."""
    engines: list[Engine] = []

    def make(name: str = "venue") -> Engine:
        if request.param == "sqlite":
            dsn = f"sqlite:///{tmp_path / f'{name}.db'}"
        else:
            dsn = request.getfixturevalue("postgres_database") if not engines else _another_pg(request)
        engine = make_engine(dsn)
        upgrade_to_head(engine)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


def _another_pg(request: pytest.FixtureRequest) -> str:
    # postgres_database is one database per test; a second venue in one test needs its own.
    url = make_url(request.getfixturevalue("postgres_server"))
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    request.addfinalizer(drop)
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def engine(dsn_factory) -> Engine:  # type: ignore[no-untyped-def]
    return dsn_factory()


def _req(cid: str, symbol: str = "NVDA", side: Side = Side.BUY, qty: float = 100_000.0,
         limit: float | None = None) -> OrderRequest:
    kind = OmsType.LIMIT if limit is not None else OmsType.MARKET
    return OrderRequest(cid, symbol, side, qty, kind, limit)


def _sim_order(request: OrderRequest, bar: int) -> SimOrder:
    return SimOrder(request.symbol, OrderSide(request.side.value), request.quantity, STAMPS[bar],
                    OrderType(request.order_type.value), request.limit_price, TimeInForce.GTC)


# A session: at each listed bar the orders placed after that bar's close. Two orders on one bar and symbol
# share its volume; the 9e6-share order needs several bars; limits above and below the far touch.
def _session() -> dict[int, list[OrderRequest]]:
    nvda = float(BARS.xs("NVDA", level="symbol")["close"].iloc[10])
    orcl = float(BARS.xs("ORCL", level="symbol")["close"].iloc[30])
    return {
        0: [_req("a1", qty=150_000.0), _req("a2", "ORCL", Side.SELL, 250_000.0)],
        3: [_req("b1", qty=9_000_000.0), _req("b2", qty=6_000_000.0),
            _req("b3", "ORCL", Side.BUY, 80_000.0, limit=orcl * 0.97)],
        10: [_req("c1", side=Side.SELL, qty=300_000.0, limit=nvda * 0.99),  # marketable
             _req("c2", side=Side.BUY, qty=500_000.0, limit=nvda * 0.98)],  # passive, fills when traded through
        30: [_req("d1", "ORCL", Side.SELL, 12_000_000.0, limit=orcl * 1.01)],
    }


def _run(venue: PaperBroker, session: dict[int, list[OrderRequest]], until: int,
         restart: int | None = None, reopen=None) -> PaperBroker:  # type: ignore[no-untyped-def]
    for bar in range(until):
        if bar == restart:
            venue = reopen()
        for request in session.get(bar, []):
            venue.submit(request)
        venue.advance()
    return venue


def test_paper_broker_and_flaky_broker_are_brokers(engine: Engine) -> None:
    venue = PaperBroker(engine, CONFIG, BARS, seed=1)
    assert isinstance(venue, Broker)
    assert isinstance(FlakyBroker(venue), Broker)


def test_submit_duplicate_client_order_id_raises_and_creates_nothing(engine: Engine) -> None:
    venue = PaperBroker(engine, CONFIG, BARS, seed=1)
    first = venue.submit(_req("dup", qty=1_000.0))
    assert first.status is BrokerOrderStatus.NEW and first.broker_order_id
    with pytest.raises(DuplicateClientOrderId, match="dup"):
        venue.submit(_req("dup", "ORCL", Side.SELL, 5_000.0))
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(PaperOrderRow)) == 1
    assert venue.get_order("dup") == first
    assert [o.client_order_id for o in venue.list_open_orders()] == ["dup"]


def test_paper_fills_equal_the_simulators_per_order_path(engine: Engine) -> None:
    session = _session()
    venue = _run(PaperBroker(engine, CONFIG, BARS, seed=7), session, until=60)
    # The same orders, decided at the same bars' closes, through the simulator directly in one call.
    requests = [(bar, r) for bar, rs in session.items() for r in rs]
    results = ExecutionSimulator(CONFIG, BARS, seed=7).execute_many([_sim_order(r, bar) for bar, r in requests])
    expected = [(r.client_order_id, f.time, f.quantity, f.price, f.fee)
                for (_, r), result in zip(requests, results, strict=True) for f in result.fills if f.time <= STAMPS[60]]
    fills = venue.list_fills()
    got = [(f.client_order_id, pd.Timestamp(f.timestamp), f.quantity, f.price, f.fee) for f in fills]
    assert sorted(got) == sorted(expected)
    assert len(got) >= 15  # partial fills on several bars, not one fill per order
    assert len({f.trade_id for f in fills}) == len(fills)
    for (_, request), result in zip(requests, results, strict=True):
        order = venue.get_order(request.client_order_id)
        assert order is not None
        done = sum(f.quantity for f in result.fills if f.time <= STAMPS[60])
        assert order.filled_quantity == pytest.approx(done, rel=1e-12)
        if result.fills and result.fills[-1].time <= STAMPS[60] and result.status.value == "filled":
            assert order.status is BrokerOrderStatus.FILLED


def test_large_order_fills_partially_across_bars(engine: Engine) -> None:
    venue = PaperBroker(engine, CONFIG, BARS, seed=3)
    venue.submit(_req("big", qty=6_000_000.0))
    first = venue.advance()
    order = venue.get_order("big")
    assert order is not None and len(first) == 1
    assert order.status is BrokerOrderStatus.PARTIALLY_FILLED
    volume = float(BARS.loc[(STAMPS[1], "NVDA"), "volume"])
    assert first[0].quantity == pytest.approx(CONFIG.participation_cap * volume)
    bars = 1
    while order.status is not BrokerOrderStatus.FILLED:
        venue.advance()
        bars += 1
        order = venue.get_order("big")
        assert order is not None
    fills = venue.list_fills()
    assert len(fills) == bars > 2
    assert sum(f.quantity for f in fills) == pytest.approx(6_000_000.0)
    assert order.filled_quantity == pytest.approx(6_000_000.0)
    assert order.average_price == pytest.approx(sum(f.quantity * f.price for f in fills) / 6_000_000.0)
    assert venue.list_fills(since=fills[-1].timestamp) == fills[-1:]
    assert venue.list_open_orders() == []


def test_limit_orders_passive_waits_marketable_fills_within_limit_and_cancel(engine: Engine) -> None:
    venue = PaperBroker(engine, CONFIG, BARS, seed=3)
    close = float(BARS.loc[(STAMPS[0], "NVDA"), "close"])
    venue.submit(_req("deep", qty=10_000.0, limit=close * 0.5))  # never traded through in a few bars
    venue.submit(_req("take", qty=10_000.0, limit=close * 1.5))  # beyond the far touch: takes liquidity
    fills = venue.advance(3)
    assert [f.client_order_id for f in fills] == ["take"]
    assert fills[0].price <= close * 1.5
    assert venue.get_order("take").status is BrokerOrderStatus.FILLED  # type: ignore[union-attr]
    assert [o.client_order_id for o in venue.list_open_orders()] == ["deep"]
    canceled = venue.cancel("deep")
    assert canceled.status is BrokerOrderStatus.CANCELED and canceled.filled_quantity == 0.0
    assert venue.list_open_orders() == []
    assert venue.advance(2) == []
    assert venue.cancel("take").status is BrokerOrderStatus.FILLED  # a filled order stays filled
    with pytest.raises(UnknownOrder):
        venue.cancel("nobody")


def test_cancel_of_partially_filled_order_stops_its_fills(engine: Engine) -> None:
    venue = PaperBroker(engine, CONFIG, BARS, seed=3)
    venue.submit(_req("big", qty=6_000_000.0))
    venue.advance()
    order = venue.cancel("big")
    assert order.status is BrokerOrderStatus.CANCELED and 0 < order.filled_quantity < 6_000_000.0
    assert venue.advance(3) == []
    assert venue.get_order("big") == order


def test_restarted_venue_gives_the_fills_of_an_uninterrupted_one(dsn_factory) -> None:  # type: ignore[no-untyped-def]
    session = _session()
    straight = _run(PaperBroker(dsn_factory("straight"), CONFIG, BARS, seed=11), session, until=45)
    engine = dsn_factory("restarted")
    engines = [engine]

    def reopen() -> PaperBroker:
        engines[-1].dispose()
        engines.append(make_engine(engines[-1].url.render_as_string(hide_password=False)))
        return PaperBroker(engines[-1], CONFIG, BARS, seed=11)

    # Restart right after bar 5, while b1 and b2 are part-filled and b3 rests on the book.
    restarted = _run(PaperBroker(engine, CONFIG, BARS, seed=11), session, until=45, restart=6, reopen=reopen)
    assert restarted.cursor == straight.cursor == 45
    assert restarted.list_fills() == straight.list_fills()
    for rs in session.values():
        for r in rs:
            assert restarted.get_order(r.client_order_id) == straight.get_order(r.client_order_id)
    for e in engines:
        e.dispose()


def test_reopening_with_another_market_or_seed_is_refused(engine: Engine) -> None:
    PaperBroker(engine, CONFIG, BARS, seed=1)
    with pytest.raises(ConfigError, match="runs on market"):
        PaperBroker(engine, CONFIG, BARS, seed=2)
    with pytest.raises(ConfigError, match="runs on market"):
        PaperBroker(engine, replace(CONFIG, spread_bps=4.0), BARS, seed=1)


def test_venue_refuses_a_database_not_at_head(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(SchemaRevisionError, match="alembic upgrade head"):
        PaperBroker(engine, CONFIG, BARS)
    engine.dispose()


def test_lost_request_leaves_nothing_and_lost_ack_leaves_the_order(engine: Engine) -> None:
    venue = PaperBroker(engine, CONFIG, BARS, seed=1)
    flaky = FlakyBroker(venue, [SubmitFault.LOST_REQUEST, SubmitFault.LOST_ACK])
    with pytest.raises(BrokerUnavailable, match="lost before"):
        flaky.submit(_req("r1"))
    assert flaky.get_order("r1") is None  # never received: safe to resend
    with pytest.raises(BrokerUnavailable, match="answer was lost"):
        flaky.submit(_req("r2"))
    acked = flaky.get_order("r2")
    assert acked is not None and acked.status is BrokerOrderStatus.NEW  # accepted: look up, do not resend
    with pytest.raises(DuplicateClientOrderId):
        flaky.submit(_req("r2"))
    assert flaky.submit(_req("r1")).status is BrokerOrderStatus.NEW  # the plan is used up
    flaky.fail_next(SubmitFault.LOST_ACK)
    with pytest.raises(BrokerUnavailable):
        flaky.submit(_req("r3"))
    assert sorted(o.client_order_id for o in venue.list_open_orders()) == ["r1", "r2", "r3"]
    assert flaky.injected == [(SubmitFault.LOST_REQUEST, "r1"), (SubmitFault.LOST_ACK, "r2"),
                              (SubmitFault.LOST_ACK, "r3")]
    flaky_fills = flaky.list_fills()
    venue.advance()
    assert flaky_fills == [] and {f.client_order_id for f in flaky.list_fills()} == {"r1", "r2", "r3"}


def test_foreign_orders_are_listed_and_filled_like_others(engine: Engine) -> None:
    venue = PaperBroker(engine, CONFIG, BARS, seed=1)
    venue.submit(_req("ours"))
    foreign = venue.place_external(_req("manual-web-order-17", "ORCL", Side.SELL, 50_000.0))
    assert foreign.status is BrokerOrderStatus.NEW
    assert [o.client_order_id for o in venue.list_open_orders()] == ["ours", "manual-web-order-17"]
    fills = venue.advance()
    assert {f.client_order_id for f in fills} == {"ours", "manual-web-order-17"}
    with engine.connect() as conn:
        flags = dict(conn.execute(select(PaperOrderRow.client_order_id, PaperOrderRow.external)).all())
    assert flags == {"ours": False, "manual-web-order-17": True}


def test_unfillable_orders_are_rejected_malformed_requests_refused(engine: Engine) -> None:
    venue = PaperBroker(engine, CONFIG, BARS, seed=1)
    rejected = venue.submit(_req("zzz", "ZZZ"))
    assert rejected.status is BrokerOrderStatus.REJECTED and "unknown symbol" in (rejected.reject_reason or "")
    with pytest.raises(DuplicateClientOrderId):
        venue.submit(_req("zzz"))
    for cid, request in (("neg", _req("neg", qty=-5.0)), ("nan", _req("nan", qty=float("nan"))),
                         ("nolimit", OrderRequest("nolimit", "NVDA", Side.BUY, 5.0, OmsType.LIMIT, None))):
        with pytest.raises(InvalidOrderRequest):
            venue.submit(request)
        assert venue.get_order(cid) is None
    assert venue.list_open_orders() == []


def test_day_orders_expire_at_their_sessions_end(engine: Engine) -> None:
    venue = PaperBroker(engine, CONFIG, BARS, seed=1, time_in_force=TimeInForce.DAY)
    venue.submit(_req("day", qty=6_000_000.0))
    fills = venue.advance()
    order = venue.get_order("day")
    assert order is not None and order.status is BrokerOrderStatus.CANCELED  # one daily bar per session
    assert order.filled_quantity == pytest.approx(sum(f.quantity for f in fills)) and fills


def test_on_bar_processes_up_to_the_bar_and_refuses_old_or_unknown_bars(engine: Engine) -> None:
    venue = PaperBroker(engine, CONFIG, BARS, seed=1)
    venue.submit(_req("big", qty=6_000_000.0))
    fills = venue.on_bar(STAMPS[3])
    assert venue.cursor == 3 and venue.clock == STAMPS[3]
    assert [pd.Timestamp(f.timestamp) for f in fills] == list(STAMPS[1:4])
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(PaperFillRow)) == 3
    with pytest.raises(VenueClockError, match="already processed"):
        venue.on_bar(STAMPS[2])
    with pytest.raises(VenueClockError, match="not a bar"):
        venue.on_bar(STAMPS[5] + pd.Timedelta("1h"))
    venue.on_bar(STAMPS[-1])
    with pytest.raises(VenueClockError, match="no bar after"):
        venue.advance()


def test_unique_client_order_id_is_the_databases_rule(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    venue = PaperBroker(engine, CONFIG, BARS, seed=1)
    venue.submit(_req("race"))
    # Another process inserted the id between this one's check and its insert: the constraint decides.
    real = PaperBroker._row
    calls: list[str] = []

    def check_misses_once(session: object, cid: str) -> PaperOrderRow | None:
        calls.append(cid)
        return None if len(calls) == 1 else real(session, cid)  # type: ignore[arg-type]

    monkeypatch.setattr(PaperBroker, "_row", staticmethod(check_misses_once))
    with pytest.raises(DuplicateClientOrderId, match="race"):
        venue.submit(_req("race", "ORCL"))
    assert len(calls) == 2  # the insert hit the constraint, then the lookup found the other order
    with engine.connect() as conn:
        assert conn.execute(select(PaperOrderRow.symbol)).scalars().all() == ["NVDA"]


def test_two_venue_objects_on_one_database_share_orders_and_clock(engine: Engine) -> None:
    a = PaperBroker(engine, CONFIG, BARS, seed=1)
    b = PaperBroker(engine, CONFIG, BARS, seed=1)
    a.submit(_req("shared", qty=6_000_000.0))
    with pytest.raises(DuplicateClientOrderId):
        b.submit(_req("shared"))
    fills = b.advance()
    assert a.cursor == 1 and a.list_fills() == fills
    with pytest.raises(VenueClockError, match="already processed"):
        a.on_bar(STAMPS[1])
    assert [pd.Timestamp(f.timestamp) for f in a.on_bar(STAMPS[2])] == [STAMPS[2]]
    assert b.get_order("shared") == a.get_order("shared")
