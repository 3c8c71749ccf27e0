"""The Alpaca broker against a local server speaking Alpaca's documented JSON: submit and acks, lookups by client
order id, duplicate ids, unknown outcomes never resent, retried reads honouring rate limits, pagination,
cancels, refusals, and keys that never reach a log or an exception."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from ai_trading.errors import ConfigError
from ai_trading.oms.brokers.alpaca import (
    MAX_CLIENT_ORDER_ID,
    AlpacaBroker,
    AlpacaConfig,
    AlpacaProtocolError,
    AlpacaRejected,
)
from ai_trading.oms.brokers.base import (
    Broker,
    BrokerOrderStatus,
    BrokerUnavailable,
    DuplicateClientOrderId,
    OrderRequest,
    UnknownOrder,
)
from ai_trading.oms.idempotency import broker_safe_id, make_cid
from ai_trading.oms.models import OrderType, Side
from ai_trading.rest import RestClient
from tests.alpaca_server import FakeAlpaca, error, fake_on, ok, serve

KEY_ID = "PKMARKERKEYID0000001"
SECRET = "marker-secret-ZZZ-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPServer]:
    with serve() as running:
        yield running


@pytest.fixture
def fake(server: HTTPServer) -> FakeAlpaca:
    return fake_on(server)


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)


class Waits(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_broker(fake: FakeAlpaca, waits: Waits | None = None, *, max_retries: int = 3, read_timeout: float = 2.0,
                now: float | None = None) -> AlpacaBroker:
    config = AlpacaConfig(base_url=fake.url, read_timeout=read_timeout, max_retries=max_retries)
    client = RestClient(fake.url, config.credentials(), connect_timeout=config.connect_timeout,
                        read_timeout=read_timeout, max_retries=max_retries, backoff_seconds=config.backoff_seconds,
                        max_wait_seconds=config.max_wait_seconds, sleep=waits if waits is not None else Waits(),
                        clock=(lambda: now) if now is not None else time.time)
    return AlpacaBroker(config, client=client)


def cid(n: int = 1) -> str:
    return broker_safe_id(make_cid(strategy="ppo", symbol="SPY", side="buy", session="2024-03-01", horizon="1d",
                                   signal_hash="deadbeef", quantity=n, version=1))


def request(n: int = 1, **kw: object) -> OrderRequest:
    return OrderRequest(client_order_id=kw.pop("client_order_id", cid(n)), symbol="SPY",  # type: ignore[arg-type]
                        side=Side.BUY, quantity=kw.pop("quantity", float(n)), **kw)  # type: ignore[arg-type]


def test_alpaca_broker_is_a_broker(fake: FakeAlpaca, keys: None) -> None:
    assert isinstance(make_broker(fake), Broker)


def test_submit_sends_alpacas_order_body_with_keys_as_headers_and_returns_the_ack(fake: FakeAlpaca,
                                                                                   keys: None) -> None:
    broker = make_broker(fake)
    order = broker.submit(request(2, order_type=OrderType.LIMIT, limit_price=101.5))
    (post,) = fake.requests("POST", "/v2/orders")
    assert json.loads(post.body) == {"symbol": "SPY", "qty": "2", "side": "buy", "type": "limit",
                                     "time_in_force": "day", "client_order_id": cid(2), "limit_price": "101.5"}
    assert post.headers["Apca-Api-Key-Id"] == KEY_ID and post.headers["Apca-Api-Secret-Key"] == SECRET
    (held,) = fake.orders.values()
    assert order.broker_order_id == held["id"] and order.client_order_id == cid(2)
    assert order.status is BrokerOrderStatus.NEW and order.quantity == 2.0 and order.limit_price == 101.5
    assert order.order_type is OrderType.LIMIT and order.filled_quantity == 0.0 and order.average_price is None
    assert broker.get_order(cid(2)) == order


def test_get_order_of_an_id_alpaca_never_received_is_none(fake: FakeAlpaca, keys: None) -> None:
    assert make_broker(fake).get_order(cid(7)) is None
    (seen,) = fake.requests("GET", "/v2/orders:by_client_order_id")
    assert seen.args == {"client_order_id": cid(7)}


def test_duplicate_client_order_id_422_is_looked_up_and_raises_duplicate(fake: FakeAlpaca, keys: None) -> None:
    broker = make_broker(fake)
    first = broker.submit(request())
    with pytest.raises(DuplicateClientOrderId) as caught:
        broker.submit(request())
    assert caught.value.client_order_id == cid()
    assert len(fake.requests("POST", "/v2/orders")) == 2 and len(fake.orders) == 1
    assert fake.requests("GET", "/v2/orders:by_client_order_id")  # confirmed by a lookup
    assert broker.get_order(cid()) == first


def test_a_422_naming_the_id_for_an_order_alpaca_does_not_hold_is_a_protocol_error(fake: FakeAlpaca,
                                                                                     keys: None) -> None:
    fake.fail("POST", "/v2/orders", error(422, 40010001, "client_order_id must be unique"))
    with pytest.raises(AlpacaProtocolError, match="holds no order"):
        make_broker(fake).submit(request())


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_submit_answered_5xx_or_429_is_unavailable_and_never_resent(fake: FakeAlpaca, keys: None,
                                                                   status: int) -> None:
    waits = Waits()
    fake.fail("POST", "/v2/orders", error(status, 50010000, "internal error", {"Retry-After": "1"}))
    with pytest.raises(BrokerUnavailable, match="outcome unknown"):
        make_broker(fake, waits).submit(request())
    assert len(fake.requests("POST", "/v2/orders")) == 1 and waits == []
    assert fake.orders == {}


def test_submit_timing_out_after_alpaca_accepted_is_unavailable_not_resent_and_found_by_lookup(
        fake: FakeAlpaca, keys: None) -> None:
    def lost_ack(req: Request) -> Response:
        answer = fake.route(req)  # Alpaca takes the order ...
        time.sleep(0.8)  # ... and its answer comes too late
        return answer

    fake.fail("POST", "/v2/orders", lost_ack)
    broker = make_broker(fake, read_timeout=0.3)
    with pytest.raises(BrokerUnavailable):
        broker.submit(request())
    assert len(fake.requests("POST", "/v2/orders")) == 1
    found = broker.get_order(cid())
    assert found is not None and found.broker_order_id == next(iter(fake.orders))


def test_submit_to_a_closed_port_is_unavailable(keys: None) -> None:
    with serve() as gone:
        url = gone.url_for("/").rstrip("/")
    broker = AlpacaBroker(AlpacaConfig(base_url=url, connect_timeout=0.5, max_retries=0))
    with pytest.raises(BrokerUnavailable, match="connection failed"):
        broker.submit(request())


def test_reads_retry_a_429_waiting_what_retry_after_asks(fake: FakeAlpaca, keys: None) -> None:
    waits = Waits()
    broker = make_broker(fake, waits)
    broker.submit(request())
    fake.fail("GET", "/v2/orders:by_client_order_id",
              error(429, 42910000, "rate limit exceeded", {"Retry-After": "7"}),
              error(429, 42910000, "rate limit exceeded", {"Retry-After": "2"}))
    assert broker.get_order(cid()) is not None
    assert waits == [7.0, 2.0]
    assert len(fake.requests("GET", "/v2/orders:by_client_order_id")) == 3


def test_reads_retry_a_429_until_x_ratelimit_reset(fake: FakeAlpaca, keys: None) -> None:
    waits = Waits()
    broker = make_broker(fake, waits, now=1_700_000_000.0)
    fake.fail("GET", "/v2/orders", error(429, 42910000, "rate limit exceeded",
                                         {"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "0",
                                          "X-RateLimit-Reset": "1700000004"}))
    assert broker.list_open_orders() == []
    assert waits == [4.0]


def test_a_429_asking_more_than_max_wait_waits_the_cap(fake: FakeAlpaca, keys: None) -> None:
    waits = Waits()
    fake.fail("GET", "/v2/orders", error(429, 42910000, "slow down", {"Retry-After": "3600"}))
    make_broker(fake, waits).list_open_orders()
    assert waits == [AlpacaConfig().max_wait_seconds]


def test_reads_retry_5xx_with_growing_backoff_and_give_up_after_max_retries(fake: FakeAlpaca, keys: None) -> None:
    waits = Waits()
    fake.fail("GET", "/v2/orders:by_client_order_id", *[error(503, 50310000, "unavailable")] * 3)
    with pytest.raises(BrokerUnavailable, match="HTTP 503"):
        make_broker(fake, waits, max_retries=2).get_order(cid())
    assert len(fake.requests("GET", "/v2/orders:by_client_order_id")) == 3
    base = AlpacaConfig().backoff_seconds
    assert len(waits) == 2 and base <= waits[0] <= 1.25 * base and 2 * base <= waits[1] <= 2.5 * base


def test_a_403_is_a_clear_refusal_naming_alpacas_message(fake: FakeAlpaca, keys: None) -> None:
    fake.fail("POST", "/v2/orders", error(403, 40310000, "insufficient buying power"))
    with pytest.raises(AlpacaRejected, match=r"HTTP 403 code=40310000: insufficient buying power.*wrong keys"):
        make_broker(fake).submit(request())
    assert len(fake.requests("POST", "/v2/orders")) == 1


def test_a_client_order_id_over_alpacas_limit_is_refused_before_sending(fake: FakeAlpaca, keys: None) -> None:
    with pytest.raises(AlpacaRejected, match=f"1..{MAX_CLIENT_ORDER_ID} characters"):
        make_broker(fake).submit(request(client_order_id="x" * (MAX_CLIENT_ORDER_ID + 1)))
    assert fake.seen == []
    assert len(cid()) <= MAX_CLIENT_ORDER_ID  # the OMS's default broker-safe id fits


@pytest.mark.parametrize(("change", "match"), [
    ({"order_type": OrderType.LIMIT}, "needs limit_price"), ({"limit_price": 10.0}, "takes no limit_price"),
    ({"quantity": 0.0}, "qty"), ({"quantity": float("nan")}, "qty"),
])
def test_a_malformed_order_is_refused_before_sending(fake: FakeAlpaca, keys: None, change: dict[str, object],
                                                     match: str) -> None:
    with pytest.raises(AlpacaRejected, match=f"not sent.*{match}") as caught:
        make_broker(fake).submit(request(**change))
    assert caught.value.status is None and fake.seen == []


def test_list_open_orders_pages_past_500_and_keeps_orders_sharing_the_boundary_stamp(fake: FakeAlpaca,
                                                                                      keys: None) -> None:
    base = fake.clock
    for i in range(1100):
        # pairs of orders share a submitted_at, so page boundaries fall between equal stamps
        fake.add_order(f"o{i}", submitted_at=base + timedelta(milliseconds=i // 2))
    for order in list(fake.orders.values())[::10]:
        order["status"] = "filled"
    opened = {o["client_order_id"] for o in fake.orders.values() if o["status"] != "filled"}
    listed = make_broker(fake).list_open_orders()
    assert [o.client_order_id for o in listed] == sorted(opened, key=lambda c: int(c[1:]))
    assert len(opened) == 990 and len(fake.requests("GET", "/v2/orders")) == 2  # 500, then 491 from the boundary


def test_list_fills_pages_activities_resolves_client_ids_and_filters_since(fake: FakeAlpaca, keys: None) -> None:
    broker = make_broker(fake)
    placed = [broker.submit(request(n)) for n in (1, 2, 3)]
    orders = [fake.orders[p.broker_order_id] for p in placed]
    for i in range(240):
        order = orders[i % 3]
        order["qty"] = "1000"
        fake.fill(order, "1", f"{100 + i * 0.01:.2f}")
    broker = make_broker(fake)  # a fresh adapter: no client ids known yet
    fills = broker.list_fills()
    assert len(fills) == 240 and len({f.trade_id for f in fills}) == 240
    assert [f.timestamp for f in fills] == sorted(f.timestamp for f in fills)
    assert {f.client_order_id for f in fills} == {cid(1), cid(2), cid(3)}
    assert all(f.client_order_id == placed[[p.broker_order_id for p in placed].index(f.broker_order_id)]
               .client_order_id for f in fills)
    assert len(fake.requests("GET", "/v2/account/activities/FILL")) == 3
    assert len([s for s in fake.seen if s.path.startswith("/v2/orders/")]) == 3  # one lookup per order
    since = fills[150].timestamp
    later = broker.list_fills(since)
    assert [f.trade_id for f in later] == [f.trade_id for f in fills[150:]]


def test_cancel_an_open_order_then_a_filled_one_then_an_unknown_one(fake: FakeAlpaca, keys: None) -> None:
    broker = make_broker(fake)
    broker.submit(request(1))
    done = broker.submit(request(2))
    fake.fill(fake.orders[done.broker_order_id], "2", "100")
    canceled = broker.cancel(cid(1))
    assert canceled.status is BrokerOrderStatus.CANCELED
    assert len(fake.requests("DELETE", f"/v2/orders/{canceled.broker_order_id}")) == 1
    filled = broker.cancel(cid(2))
    assert filled.status is BrokerOrderStatus.FILLED and filled.average_price == 100.0
    assert not fake.requests("DELETE", f"/v2/orders/{done.broker_order_id}")
    with pytest.raises(UnknownOrder):
        broker.cancel(cid(9))


def test_cancel_racing_a_fill_returns_the_filled_order(fake: FakeAlpaca, keys: None) -> None:
    broker = make_broker(fake)
    placed = broker.submit(request(1))

    def filled_meanwhile(req: Request) -> Response:
        fake.fill(fake.orders[placed.broker_order_id], "1", "99.5")
        return error(422, 42210000, "order is not cancelable")

    fake.fail("DELETE", f"/v2/orders/{placed.broker_order_id}", filled_meanwhile)
    assert broker.cancel(cid(1)).status is BrokerOrderStatus.FILLED


@pytest.mark.parametrize(("status", "filled", "expected"), [
    ("new", "0", BrokerOrderStatus.NEW), ("accepted", "0", BrokerOrderStatus.NEW),
    ("pending_new", "0", BrokerOrderStatus.NEW), ("accepted_for_bidding", "0", BrokerOrderStatus.NEW),
    ("held", "0", BrokerOrderStatus.NEW), ("pending_cancel", "0", BrokerOrderStatus.NEW),
    ("pending_cancel", "1", BrokerOrderStatus.PARTIALLY_FILLED), ("done_for_day", "1",
                                                                   BrokerOrderStatus.PARTIALLY_FILLED),
    ("partially_filled", "1", BrokerOrderStatus.PARTIALLY_FILLED), ("filled", "4", BrokerOrderStatus.FILLED),
    ("calculated", "4", BrokerOrderStatus.FILLED), ("calculated", "1", BrokerOrderStatus.PARTIALLY_FILLED),
    ("canceled", "1", BrokerOrderStatus.CANCELED), ("expired", "0", BrokerOrderStatus.CANCELED),
    ("replaced", "0", BrokerOrderStatus.CANCELED), ("rejected", "0", BrokerOrderStatus.REJECTED),
])
def test_alpaca_statuses_map_onto_broker_statuses(fake: FakeAlpaca, keys: None, status: str, filled: str,
                                                  expected: BrokerOrderStatus) -> None:
    order = fake.add_order("x1", qty="4", status=status)
    order["filled_qty"] = filled
    order["filled_avg_price"] = "10" if filled != "0" else None
    got = make_broker(fake).get_order("x1")
    assert got is not None and got.status is expected and got.filled_quantity == float(filled)


def test_an_unknown_status_is_a_protocol_error(fake: FakeAlpaca, keys: None) -> None:
    fake.add_order("x1", status="teleported")
    with pytest.raises(AlpacaProtocolError, match="teleported"):
        make_broker(fake).get_order("x1")


def test_a_foreign_stop_limit_order_is_listed_as_a_limit_order(fake: FakeAlpaca, keys: None) -> None:
    fake.add_order("manual", kind="stop_limit", limit_price="90", side="sell")
    (order,) = make_broker(fake).list_open_orders()
    assert order.order_type is OrderType.LIMIT and order.limit_price == 90.0 and order.side is Side.SELL


def test_missing_keys_are_a_config_error_naming_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    with pytest.raises(ConfigError, match="set APCA_API_KEY_ID") as caught:
        AlpacaBroker(AlpacaConfig())
    assert SECRET not in str(caught.value)
    monkeypatch.setenv("MY_KEY", KEY_ID)
    monkeypatch.delenv("MY_SECRET", raising=False)
    with pytest.raises(ConfigError, match="set MY_SECRET"):
        AlpacaBroker(AlpacaConfig(key_id_env="MY_KEY", secret_key_env="MY_SECRET"))


def test_keys_never_reach_logs_or_exceptions(fake: FakeAlpaca, keys: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broker = make_broker(fake, max_retries=1)
    raised: list[BaseException] = []
    broker.submit(request(1))
    broker.list_open_orders()
    broker.list_fills()
    echo = f"bad key {KEY_ID} / {SECRET}"  # a server that echoes what it got
    for answer in (error(403, 40310000, echo), error(500, 1, echo), error(422, 40010001, echo)):
        fake.fail("POST", "/v2/orders", answer)
        with pytest.raises(Exception) as caught:  # noqa: PT011 - each answer raises its own type
            broker.submit(request(5))
        raised.append(caught.value)
    fake.fail("GET", "/v2/orders", *[ok({"not": "a list"})])
    with pytest.raises(AlpacaProtocolError) as protocol:
        broker.list_open_orders()
    raised.append(protocol.value)
    assert any(s.headers.get("Apca-Api-Secret-Key") == SECRET for s in fake.seen)  # the keys were sent
    text = caplog.text + "".join(f"{e!s}{e!r}{e.__cause__!r}{e.__context__!r}" for e in raised)
    text += repr(broker.config) + repr(broker.config.credentials()) + repr(broker._rest)
    assert KEY_ID not in text and SECRET not in text
    assert "***" in "".join(str(e) for e in raised)


def test_the_yaml_preset_builds_the_python_defaults() -> None:
    built = instantiate(OmegaConf.load(ROOT / "conf" / "broker" / "alpaca.yaml"))
    assert built == AlpacaConfig()


@pytest.mark.parametrize(("field", "value"), [("base_url", "ftp://x"), ("read_timeout", 0), ("max_retries", -1),
                                              ("time_in_force", "ioc"), ("key_id_env", "")])
def test_bad_config_values_name_their_key(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"broker.{field}"):
        AlpacaConfig(**{field: value})  # type: ignore[arg-type]
