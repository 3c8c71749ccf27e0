"""A webhook answering 429 or 503 with ``Retry-After`` (delay-seconds or an HTTP date) is retried no sooner than
asked, and never later than the retry's ``backoff_max_seconds``; a real HTTP server on 127.0.0.1 measures the
gap between the two requests (a lower bound only: a loaded machine may only make it longer)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from ai_trading.monitoring.config import RetryConfig
from ai_trading.monitoring.sinks import WebhookSink, parse_retry_after
from tests.monitoring.servers import webhook_receiver
from tests.monitoring.test_delivery import webhook

SECRET = "whsec-retry-after-0123"
# Without Retry-After the sink would retry after about a millisecond.
QUICK = RetryConfig(max_attempts=2, backoff_initial_seconds=0.001, backoff_max_seconds=30.0, jitter=0.0)


def _gap_after(answer: tuple[int, dict[str, str]], retry: RetryConfig = QUICK) -> float:
    with webhook_receiver([answer, 200]) as hook:
        WebhookSink("hook", webhook(hook.url, retry), SECRET).send({"message_id": "m1", "alerts": []})
        first, second = hook.requests
    assert (first.status, second.status) == (answer[0], 200)
    assert first.body == second.body  # the same message, sent again
    return second.at - first.at


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_delays_the_retry_at_least_that_long(status: int) -> None:
    assert _gap_after((status, {"Retry-After": "2"})) >= 1.95


def test_retry_after_http_date_delays_the_retry_until_that_time() -> None:
    until = int(time.time()) + 3  # whole seconds, as HTTP dates carry: at least 2 s from now
    date = format_datetime(datetime.fromtimestamp(until, UTC), usegmt=True)
    gap = _gap_after((503, {"Retry-After": date}))
    assert gap >= 1.95
    assert time.time() >= until - 0.05  # the retry waited for the date itself


def test_retry_after_beyond_the_configured_cap_waits_only_the_cap() -> None:
    waits: list[float] = []
    capped = RetryConfig(max_attempts=2, backoff_initial_seconds=0.001, backoff_max_seconds=0.25, jitter=0.0)
    with webhook_receiver([(429, {"Retry-After": "3600"}), 200]) as hook:
        WebhookSink("hook", webhook(hook.url, capped), SECRET, sleep=waits.append).send({"message_id": "m"})
        assert [r.status for r in hook.requests] == [429, 200]
    assert waits == [0.25]


def test_malformed_retry_after_falls_back_to_the_backoff_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    waits: list[float] = []
    with webhook_receiver([(429, {"Retry-After": "soon"}), 200]) as hook:
        WebhookSink("hook", webhook(hook.url, QUICK), SECRET, sleep=waits.append).send({"message_id": "m"})
        assert len(hook.requests) == 2
    assert waits == [0.001]
    assert "malformed Retry-After header 'soon'" in caplog.text


def test_retry_after_on_another_status_is_not_taken() -> None:
    waits: list[float] = []
    with webhook_receiver([(500, {"Retry-After": "3600"}), 200]) as hook:
        WebhookSink("hook", webhook(hook.url, QUICK), SECRET, sleep=waits.append).send({"message_id": "m"})
        assert len(hook.requests) == 2
    assert waits == [0.001]


def test_parse_retry_after_reads_seconds_and_dates_and_refuses_the_rest() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(" 0 ", now=now) == 0.0
    assert parse_retry_after("Tue, 01 Dec 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Tue, 01 Dec 2026 11:59:00 GMT", now=now) == 0.0  # a past date: no wait
    for bad in ("-5", "1.5", "soon", "", "Tue, 99 Foo 2026"):
        assert parse_retry_after(bad, now=now) is None, bad
    assert parse_retry_after(None, now=now) is None
