"""The REST transport's retry rules on their own: what a 429 asks to wait, and reads against a dead server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from pytest_httpserver import HTTPServer

from ai_trading.rest import Credentials, RestClient, RestUnavailable
from tests.alpaca_server import FakeAlpaca, error, fake_on, serve

NOW = 1_700_000_000.0
CREDS = Credentials("K", "S", "key-id-marker", "secret-marker")


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPServer]:
    with serve() as running:
        yield running


@pytest.fixture
def fake(server: HTTPServer) -> FakeAlpaca:
    return fake_on(server)


def client(url: str, waits: list[float], max_retries: int = 3) -> RestClient:
    return RestClient(url, CREDS, connect_timeout=0.5, read_timeout=2.0, max_retries=max_retries,
                      backoff_seconds=0.5, max_wait_seconds=30.0, sleep=waits.append, clock=lambda: NOW)


@pytest.mark.parametrize(("headers", "wait"), [
    ({"Retry-After": format_datetime(datetime.fromtimestamp(NOW + 12, UTC), usegmt=True)}, 12.0),
    ({"Retry-After": "3"}, 3.0),
    ({"X-RateLimit-Reset": str(int(NOW) - 5)}, 0.0),  # a reset already past: retry at once
    ({"X-RateLimit-Reset": str(int(NOW) + 9), "Retry-After": "2"}, 2.0),  # Retry-After wins
])
def test_a_429_waits_what_its_headers_ask(fake: FakeAlpaca, headers: dict[str, str], wait: float) -> None:
    waits: list[float] = []
    fake.fail("GET", "/v2/orders", error(429, 42910000, "rate limit exceeded", headers))
    assert client(fake.url, waits).request("GET", "/v2/orders", params={"status": "open", "direction": "asc"},
                                           retry=True).body == []
    assert waits == [wait]


def test_a_429_without_headers_backs_off(fake: FakeAlpaca) -> None:
    waits: list[float] = []
    fake.fail("GET", "/v2/orders", error(429, 42910000, "rate limit exceeded"))
    client(fake.url, waits).request("GET", "/v2/orders", params={"status": "open", "direction": "asc"}, retry=True)
    assert len(waits) == 1 and 0.5 <= waits[0] <= 0.625


def test_reads_against_a_dead_server_retry_then_raise_unavailable_without_the_keys() -> None:
    with serve() as gone:
        url = gone.url_for("/").rstrip("/")
    waits: list[float] = []
    with pytest.raises(RestUnavailable, match="connection failed") as caught:
        client(url, waits, max_retries=2).request("GET", "/v2/orders", retry=True)
    assert len(waits) == 2 and caught.value.status == 0
    assert "marker" not in f"{caught.value!s}{caught.value!r}{caught.value.__context__!r}"


def test_a_state_changing_request_is_never_repeated(fake: FakeAlpaca) -> None:
    waits: list[float] = []
    fake.fail("POST", "/v2/orders", error(503, 50310000, "unavailable"))
    with pytest.raises(RestUnavailable, match="HTTP 503"):
        client(fake.url, waits).request("POST", "/v2/orders", json={}, retry=False)
    assert waits == [] and len(fake.requests("POST", "/v2/orders")) == 1
