"""Secrets of the alert sinks (SMTP password, webhook signing secret) set to marker values never appear in logs,
webhook bodies or headers, e-mails, the outbox or the errors raised, also when deliveries fail."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import Engine

from ai_trading.monitoring.alerts import Alert, Router, Severity
from ai_trading.monitoring.config import EmailConfig, RetryConfig
from ai_trading.monitoring.sinks import DeliveryFailed, EmailSink, WebhookSink
from tests.monitoring.servers import smtp_server, webhook_receiver
from tests.monitoring.test_delivery import config, webhook
from tests.secret_markers import OMS_DB_PASSWORD, SMTP_PASSWORD, WEBHOOK_SECRET, SecretScan

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

SMTP_MARKER, HOOK_MARKER, DSN_MARKER = SMTP_PASSWORD, WEBHOOK_SECRET, OMS_DB_PASSWORD
ENV = {"AI_TRADING_WEBHOOK_SECRET": HOOK_MARKER, "AI_TRADING_SMTP_USER": "alerts",
       "AI_TRADING_SMTP_PASSWORD": SMTP_MARKER}
FAST = RetryConfig(max_attempts=2, backoff_initial_seconds=0.001, backoff_max_seconds=0.002, jitter=0.0)


def _clean(text: str) -> None:
    scan = SecretScan()
    scan.text("text", text)
    scan.assert_clean()


def test_sink_secrets_never_leak_into_logs_payloads_outbox_or_errors(db_engine: Engine,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with webhook_receiver([500, 200, 403]) as hook, smtp_server("alerts", SMTP_MARKER) as good, \
            smtp_server("alerts", "another-password") as refusing:
        mail = EmailConfig(host=good.host, port=good.port, from_addr="a@desk.test", to_addrs=("o@desk.test",),
                           security="none", retry=FAST, timeout_seconds=5.0)
        bad_mail = EmailConfig(host=refusing.host, port=refusing.port, from_addr="a@desk.test",
                               to_addrs=("o@desk.test",), security="none", retry=FAST, timeout_seconds=5.0)
        router = Router.build(config({"hook": webhook(hook.url, FAST), "mail": mail, "bad_mail": bad_mail}),
                              db_engine, environ=ENV)
        payload = {"dsn": f"postgresql://ops:{DSN_MARKER}@db/oms", "password": DSN_MARKER, "note": "x"}
        router.raise_alert(Alert(name="r1", severity=Severity.CRITICAL, source="live", dedup_key="k1",
                                 summary="first", payload=payload))
        router.raise_alert(Alert(name="r2", severity=Severity.CRITICAL, source="live", dedup_key="k2",
                                 summary="second"))  # the webhook refuses it with 403: a logged failure

        assert len(good.envelopes) == 2 and refusing.envelopes == []  # the bad one failed to authenticate
        assert router.stats["messages_failed"] == 3  # the 403, and bad_mail's 535 for each alert (not retried)
        for envelope in good.envelopes:
            _clean((envelope.original_content or b"").decode())
        for request in hook.requests:
            _clean(request.body.decode() + json.dumps(request.headers))
        _clean(json.dumps(router.outbox.rows(), default=str))
        _clean(caplog.text)
        assert "HTTP 403" in caplog.text and "SMTP 535" in caplog.text  # the failures were logged


def test_delivery_errors_raised_by_sinks_hold_no_secret() -> None:
    with smtp_server("alerts", "right") as box:
        mail = EmailConfig(host=box.host, port=box.port, from_addr="a@desk.test", to_addrs=("o@desk.test",),
                           security="none", retry=FAST, timeout_seconds=5.0)
        with pytest.raises(DeliveryFailed) as failed:
            EmailSink("mail", mail, "alerts", SMTP_MARKER).send({"message_id": "m", "alerts": []})
        assert not failed.value.retryable
        _clean(str(failed.value) + repr(failed.value.__cause__) + repr(failed.value.__context__))
    sink = WebhookSink("hook", webhook(f"http://127.0.0.1:1/{HOOK_MARKER}?token={HOOK_MARKER}", FAST), HOOK_MARKER)
    with pytest.raises(DeliveryFailed) as failed:
        sink.send({"message_id": "m", "alerts": []})
    assert failed.value.retryable
    _clean(str(failed.value) + repr(failed.value.__cause__) + repr(failed.value.__context__))
