"""Delivery to real servers on 127.0.0.1: a critical alert by e-mail (aiosmtpd, authenticated) and by a signed
webhook; retries only on 5xx, 429 and connection failures; the outbox retrying later; a repeat inside the repeat
interval, a resolve and a burst each sent once. Database tests run on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from typing import Any

import pytest
from sqlalchemy import Engine

from ai_trading.errors import ConfigError
from ai_trading.monitoring.alerts import Acceptance, Alert, Router, Severity
from ai_trading.monitoring.config import (
    AlertsConfig,
    DeliveryConfig,
    EmailConfig,
    LogSinkConfig,
    RetryConfig,
    RouteConfig,
    SinkConfig,
    WebhookConfig,
)
from ai_trading.monitoring.sinks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_webhook_signature
from tests.monitoring.servers import smtp_server, webhook_receiver

# loopback only: the test SMTP server takes AUTH in clear text
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

SECRET = "whsec-test-0123456789"
FAST = RetryConfig(max_attempts=3, backoff_initial_seconds=0.001, backoff_max_seconds=0.005, jitter=0.5)
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def config(sinks: dict[str, SinkConfig], *, repeat: float = 3600.0, group: float = 0.0,
           delivery: DeliveryConfig | None = None, routes: tuple[RouteConfig, ...] | None = None) -> AlertsConfig:
    return AlertsConfig(sinks=sinks, routes=routes or (RouteConfig(sinks=tuple(sinks)),),
                        repeat_interval_seconds=repeat, group_window_seconds=group,
                        delivery=delivery or DeliveryConfig(max_attempts=3, backoff_initial_seconds=1.0,
                                                            backoff_max_seconds=10.0, lease_seconds=60.0))


def webhook(url: str, retry: RetryConfig = FAST) -> WebhookConfig:
    return WebhookConfig(url=url, secret_env="AI_TRADING_WEBHOOK_SECRET", connect_timeout_seconds=2.0,
                         read_timeout_seconds=2.0, retry=retry)


def alert(n: int = 0, severity: Severity = Severity.CRITICAL, name: str = "live.drawdown_breach",
          at: datetime = T0) -> Alert:
    return Alert(name=name, severity=severity, source="live", dedup_key=f"{name}:{n}", summary=f"breach {n}",
                 payload={"n": n}, raised_at=at)


ENV = {"AI_TRADING_WEBHOOK_SECRET": SECRET, "AI_TRADING_SMTP_USER": "alerts",
       "AI_TRADING_SMTP_PASSWORD": "smtp-pass-0123"}


def make_router(engine: Engine, cfg: AlertsConfig, clock: Clock | None = None) -> Router:
    return Router.build(cfg, engine, environ=ENV, clock=clock or Clock())


def _signature_ok(headers: dict[str, str], body: bytes) -> bool:
    """The receiver's check, written here independently of the sink: HMAC-SHA256 over 'timestamp.body'."""
    ts = headers[TIMESTAMP_HEADER]
    expected = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers[SIGNATURE_HEADER]) and abs(time.time() - int(ts)) < 60


def test_critical_alert_arrives_by_email_and_by_signed_webhook(db_engine: Engine) -> None:
    with webhook_receiver() as hook, smtp_server("alerts", "smtp-pass-0123") as box:
        email = EmailConfig(host=box.host, port=box.port, from_addr="alerts@desk.test", to_addrs=("oncall@desk.test",),
                            security="none", retry=FAST, timeout_seconds=5.0)
        router = make_router(db_engine, config({"hook": webhook(hook.url), "mail": email}))
        assert router.raise_alert(alert(1)) is Acceptance.QUEUED

        assert len(hook.requests) == 1
        request = hook.requests[0]
        assert _signature_ok(request.headers, request.body)
        body = json.loads(request.body)
        assert body["severity"] == "critical" and body["count"] == 1
        assert body["alerts"][0]["dedup_key"] == "live.drawdown_breach:1" and body["alerts"][0]["state"] == "fired"

        assert box.logins == ["alerts"] and len(box.envelopes) == 1
        envelope = box.envelopes[0]
        assert envelope.rcpt_tos == ["oncall@desk.test"] and envelope.mail_from == "alerts@desk.test"
        mail = message_from_bytes(envelope.original_content or b"")
        assert mail["Subject"] == "[CRITICAL] live.drawdown_breach fired"
        assert "breach 1" in mail.get_payload()
        assert router.outbox.counts()["delivered"] == 2


def test_a_tampered_body_or_stale_timestamp_fails_verification() -> None:
    body = b'{"a":1}'
    ts = str(int(time.time()))
    sig = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert verify_webhook_signature(SECRET.encode(), body, ts, sig)
    assert not verify_webhook_signature(SECRET.encode(), b'{"a":2}', ts, sig)
    assert not verify_webhook_signature(SECRET.encode(), body, ts, sig, now=time.time() + 3600)
    assert not verify_webhook_signature(b"other", body, ts, sig)


def test_webhook_answering_5xx_twice_then_200_gets_the_alert_exactly_once(db_engine: Engine) -> None:
    with webhook_receiver([503, 500]) as hook:
        router = make_router(db_engine, config({"hook": webhook(hook.url)}))
        router.raise_alert(alert(1))
        router.dispatch()
        assert [r.status for r in hook.requests] == [503, 500, 200]
        assert len({json.loads(r.body)["message_id"] for r in hook.requests}) == 1
        assert router.outbox.counts() == {"pending": 0, "sending": 0, "delivered": 1, "failed": 0}
        assert router.stats["messages_delivered"] == 1


def test_webhook_4xx_is_not_retried_and_marks_the_message_failed(db_engine: Engine) -> None:
    with webhook_receiver([400]) as hook:
        clock = Clock()
        router = make_router(db_engine, config({"hook": webhook(hook.url)}), clock)
        router.raise_alert(alert(1))  # never raises into the caller
        clock.advance(3600)
        router.dispatch()
        assert [r.status for r in hook.requests] == [400]
        assert router.outbox.counts()["failed"] == 1 and router.stats["messages_failed"] == 1
        assert "HTTP 400" in (router.outbox.rows()[0]["last_error"] or "")


def test_webhook_429_is_retried(db_engine: Engine) -> None:
    with webhook_receiver([429]) as hook:
        router = make_router(db_engine, config({"hook": webhook(hook.url)}))
        router.raise_alert(alert(1))
        assert [r.status for r in hook.requests] == [429, 200]
        assert router.outbox.counts()["delivered"] == 1


def test_webhook_read_timeout_is_retried(db_engine: Engine) -> None:
    with webhook_receiver() as hook:
        hook.delays = [1.0]  # the first answer comes after the read timeout
        slow = WebhookConfig(url=hook.url, connect_timeout_seconds=2.0, read_timeout_seconds=0.3, retry=FAST)
        router = make_router(db_engine, config({"hook": slow}))
        router.raise_alert(alert(1))
        assert len(hook.requests) == 2 and router.outbox.counts()["delivered"] == 1


def test_outbox_retries_later_with_backoff_after_the_sink_gives_up(db_engine: Engine) -> None:
    with webhook_receiver([500, 500, 500, 502]) as hook:
        clock = Clock()
        router = make_router(db_engine, config({"hook": webhook(hook.url)}), clock)
        router.raise_alert(alert(1))
        assert len(hook.requests) == 3 and router.outbox.counts()["pending"] == 1
        router.dispatch()  # not due yet: backoff of 0.5..1.5 s
        assert len(hook.requests) == 3
        clock.advance(2.0)
        router.dispatch()
        assert [r.status for r in hook.requests] == [500, 500, 500, 502, 200]
        assert router.outbox.counts()["delivered"] == 1
        assert router.outbox.rows()[0]["attempts"] == 2


def test_unreachable_webhook_never_raises_and_gives_up_after_max_attempts(db_engine: Engine) -> None:
    clock = Clock()
    router = make_router(db_engine, config({"hook": webhook("http://127.0.0.1:1/hook")}), clock)
    router.raise_alert(alert(1))
    for _ in range(5):
        clock.advance(60)
        router.dispatch()
    assert router.outbox.counts()["failed"] == 1
    assert router.stats["messages_retrying"] == 2 and router.stats["messages_failed"] == 1


def test_repeat_inside_the_interval_is_sent_once_and_again_after_it(db_engine: Engine) -> None:
    with webhook_receiver() as hook:
        clock = Clock()
        router = make_router(db_engine, config({"hook": webhook(hook.url)}, repeat=600.0), clock)
        assert router.raise_alert(alert(1)) is Acceptance.QUEUED
        clock.advance(599)
        assert router.raise_alert(alert(1)) is Acceptance.REPEAT
        assert len(hook.requests) == 1
        clock.advance(2)
        assert router.raise_alert(alert(1)) is Acceptance.QUEUED
        assert len(hook.requests) == 2


def test_resolve_is_sent_once_and_only_for_a_firing_alert(db_engine: Engine) -> None:
    with webhook_receiver() as hook:
        router = make_router(db_engine, config({"hook": webhook(hook.url)}))
        assert router.raise_alert(alert(2).resolved()) is Acceptance.NOTHING_TO_RESOLVE
        router.raise_alert(alert(1))
        assert router.raise_alert(alert(1).resolved()) is Acceptance.QUEUED
        assert router.raise_alert(alert(1).resolved()) is Acceptance.NOTHING_TO_RESOLVE
        states = [json.loads(r.body)["alerts"][0]["state"] for r in hook.requests]
        assert states == ["fired", "resolved"]
        assert router.raise_alert(alert(1)) is Acceptance.QUEUED  # fires again after its resolve
        assert len(hook.requests) == 3


def test_a_burst_of_one_rule_is_delivered_as_one_message(db_engine: Engine) -> None:
    with webhook_receiver() as hook:
        clock = Clock()
        router = make_router(db_engine, config({"hook": webhook(hook.url)}, group=5.0), clock)
        for n in range(4):
            router.raise_alert(alert(n, at=clock.now))
            clock.advance(1.0)
        other = alert(9, name="execution.cost_spike", severity=Severity.WARNING, at=clock.now)
        router.raise_alert(other)
        assert hook.requests == []  # held for the group window
        clock.advance(1.5)  # the drawdown group's window (from its first alert) has passed, not the cost one's
        router.dispatch()
        assert len(hook.requests) == 1
        body = json.loads(hook.requests[0].body)
        assert body["count"] == 4 and [a["payload"]["n"] for a in body["alerts"]] == [0, 1, 2, 3]
        clock.advance(5.0)
        router.dispatch()
        assert len(hook.requests) == 2 and json.loads(hook.requests[1].body)["rule"] == "execution.cost_spike"
        assert router.outbox.counts()["delivered"] == 5


def test_routes_pick_sinks_by_severity_and_source(db_engine: Engine) -> None:
    with webhook_receiver() as hook:
        routes = (RouteConfig(sinks=("log",)),
                  RouteConfig(sinks=("hook",), min_severity=Severity.CRITICAL, sources=("live", "oms")))
        router = make_router(db_engine, config({"log": LogSinkConfig(), "hook": webhook(hook.url)}, routes=routes))
        assert router.sinks_for(alert(1)) == ["log", "hook"]
        assert router.sinks_for(alert(2, severity=Severity.WARNING)) == ["log"]
        evaluation = Alert(name="slo.x", severity=Severity.CRITICAL, source="evaluation", dedup_key="k", summary="s")
        assert router.sinks_for(evaluation) == ["log"]
        router.raise_alert(alert(2, severity=Severity.WARNING))
        router.raise_alert(evaluation)
        assert hook.requests == []
        router.raise_alert(alert(1))
        assert len(hook.requests) == 1


def test_missing_secret_is_a_config_error_naming_the_variable(db_engine: Engine) -> None:
    cfg = config({"hook": webhook("http://127.0.0.1:1/hook")})
    with pytest.raises(ConfigError, match="AI_TRADING_WEBHOOK_SECRET is not set"):
        Router.build(cfg, db_engine, environ={})


@pytest.mark.parametrize(("build", "match"), [
    (lambda: EmailConfig(host="smtp.example.com", port=25, from_addr="a@b.c", to_addrs=("d@e.f",), security="none"),
     "loopback"),
    (lambda: WebhookConfig(url="ftp://x"), "http"),
    (lambda: RetryConfig(max_attempts=0), "max_attempts"),
])
def test_bad_sink_config_is_refused(build: Callable[[], Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        sink = build()
        sink.validate("alerts.sinks.x") if not isinstance(sink, RetryConfig) else sink.validate("r")
