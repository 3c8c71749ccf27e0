"""The e-mail sink over STARTTLS and SSL against aiosmtpd on 127.0.0.1 with a CA made in the test: the server
requires AUTH and accepts it only over TLS; the sink verifies the server's certificate (the test CA through
``ca_file``; without it, or with another CA, it refuses to send), and a relay recording the TCP stream shows the
credentials never cross the wire in clear text."""

from __future__ import annotations

import base64
from email import message_from_bytes
from pathlib import Path

import pytest

from ai_trading.errors import ConfigError
from ai_trading.monitoring.config import EmailConfig, RetryConfig
from ai_trading.monitoring.sinks import DeliveryFailed, EmailSink, build_sink
from tests.monitoring.servers import (
    TlsFiles,
    Wire,
    make_certificates,
    smtp_server,
    tcp_recorder,
    tls_smtp_server,
)

# the implicit-TLS server takes AUTH with auth_require_tls off (see tls_smtp_server), and the clear-text control
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

USER, PASSWORD = "alerts-user", "smtp-tls-password-4d2c"
ENV = {"AI_TRADING_SMTP_USER": USER, "AI_TRADING_SMTP_PASSWORD": PASSWORD}
ONCE = RetryConfig(max_attempts=1, backoff_initial_seconds=0.0, backoff_max_seconds=0.0, jitter=0.0)
MESSAGE = {"message_id": "m-tls", "rule": "live.drawdown_breach", "severity": "critical", "count": 1,
           "alerts": [{"state": "fired", "severity": "critical", "name": "live.drawdown_breach", "source": "live",
                       "summary": "drawdown 25%", "dedup_key": "k"}]}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def _config(port: int, security: str, ca_file: Path | None) -> EmailConfig:
    return EmailConfig(host="127.0.0.1", port=port, from_addr="alerts@desk.test", to_addrs=("oncall@desk.test",),
                       security=security, ca_file=None if ca_file is None else str(ca_file),  # type: ignore[arg-type]
                       timeout_seconds=5.0, retry=ONCE)


def _credential_forms() -> list[bytes]:
    """The password as sent by AUTH PLAIN and AUTH LOGIN (base64), and raw."""
    return [PASSWORD.encode(), base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()),
            base64.b64encode(PASSWORD.encode()), base64.b64encode(USER.encode())]


def _assert_no_credentials_in_clear(wire: Wire) -> None:
    seen = bytes(wire.client_to_server)
    for form in _credential_forms():
        assert form not in seen, form
    assert b"AUTH" not in seen  # not even the command: it went inside TLS


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_email_over_tls_verifies_the_server_and_logs_in_only_inside_tls(certs: TlsFiles,
                                                                        security: str) -> None:
    with tls_smtp_server(USER, PASSWORD, certs, security) as box, tcp_recorder(box.port) as wire:
        sink = build_sink("mail", _config(wire.port, security, certs.ca_file), ENV)
        sink.send(MESSAGE)
        assert box.logins == [USER] and box.auth_over_tls == [True]
        (envelope,) = box.envelopes
        assert envelope.rcpt_tos == ["oncall@desk.test"]
        mail = message_from_bytes(envelope.original_content or b"")
        assert mail["Subject"] == "[CRITICAL] live.drawdown_breach fired"
    clear = bytes(wire.client_to_server)
    if security == "starttls":
        assert clear.count(b"\r\n") == 2 and b"STARTTLS\r\n" in clear  # EHLO and STARTTLS, then only TLS
    else:
        assert b"EHLO" not in clear  # TLS from the first byte
    _assert_no_credentials_in_clear(wire)


def test_the_wire_recorder_sees_credentials_sent_in_clear_text() -> None:
    """The control: over security=none (loopback only) the same recorder does see the login."""
    with smtp_server(USER, PASSWORD) as box, tcp_recorder(box.port) as wire:
        EmailSink("mail", _config(wire.port, "none", None), USER, PASSWORD).send(MESSAGE)
        assert box.logins == [USER]
    assert any(form in bytes(wire.client_to_server) for form in _credential_forms())


def test_starttls_refused_by_the_server_means_no_login_and_no_mail() -> None:
    with smtp_server(USER, PASSWORD) as box, tcp_recorder(box.port) as wire:  # offers no STARTTLS
        sink = EmailSink("mail", _config(wire.port, "starttls", None), USER, PASSWORD)
        with pytest.raises(DeliveryFailed, match="SMTPNotSupportedError") as failed:
            sink.send(MESSAGE)
        assert not failed.value.retryable
        assert box.logins == [] and box.envelopes == []
    _assert_no_credentials_in_clear(wire)


@pytest.mark.parametrize("security", ["starttls", "ssl"])
@pytest.mark.parametrize("trust", ["system CAs", "another CA"])
def test_an_unverifiable_server_certificate_is_refused_before_any_login(certs: TlsFiles, security: str,
                                                                        trust: str, tmp_path: Path) -> None:
    ca_file = None if trust == "system CAs" else make_certificates(tmp_path, name="other").ca_file
    with tls_smtp_server(USER, PASSWORD, certs, security) as box, tcp_recorder(box.port) as wire:
        sink = EmailSink("mail", _config(wire.port, security, ca_file), USER, PASSWORD)
        with pytest.raises(DeliveryFailed, match=r"certificate of 127\.0\.0\.1:\d+ not verified") as failed:
            sink.send(MESSAGE)
        assert not failed.value.retryable  # no retry makes an untrusted certificate trusted
        assert box.logins == [] and box.auth_over_tls == [] and box.envelopes == []
    _assert_no_credentials_in_clear(wire)


def test_ca_file_must_exist_and_hold_certificates_and_needs_tls(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"alerts.sinks.mail.ca_file=.*no such file"):
        build_sink("mail", _config(25, "starttls", tmp_path / "missing.pem"), ENV)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"alerts.sinks.mail.ca_file=.*not a PEM file"):
        build_sink("mail", _config(25, "ssl", junk), ENV)
    with pytest.raises(ConfigError, match="ca_file is set but security=none"):
        _config(25, "none", junk).validate("alerts.sinks.mail")
