"""Where alert messages go: a signed webhook (requests), e-mail (smtplib) and the log.

A sink's ``send(message)`` either delivers or raises :class:`DeliveryFailed` saying whether a later attempt may
succeed (``retryable``). Inside one ``send`` a sink retries transient failures itself (exponential backoff with
jitter; after a webhook's 429 or 503 it waits at least the answer's ``Retry-After``, never beyond the retry's
``backoff_max_seconds``); the outbox retries a retryable failure later again. Error texts never hold a secret:
the webhook URL is shown by host only and the sink's secrets are scrubbed from every message it raises.

Webhook authentication: headers ``X-AI-Trading-Timestamp`` (Unix seconds) and ``X-AI-Trading-Signature``
(``sha256=`` + hex HMAC-SHA256 with the shared secret over ``timestamp + "." + body``). A receiver recomputes the
HMAC over the raw body, compares in constant time and rejects a timestamp outside its tolerance (a replay);
:func:`verify_webhook_signature` does exactly that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from ai_trading.errors import AiTradingError, ConfigError
from ai_trading.monitoring.config import EmailConfig, LogSinkConfig, RetryConfig, SinkConfig, WebhookConfig
from ai_trading.secrets import MASK, mask_text

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-AI-Trading-Signature"
TIMESTAMP_HEADER = "X-AI-Trading-Timestamp"
MESSAGE_ID_HEADER = "X-AI-Trading-Message-Id"


class DeliveryFailed(AiTradingError):
    """A sink did not take a message; ``retryable`` says whether trying again later may succeed."""

    def __init__(self, sink: str, reason: str, *, retryable: bool, attempts: int) -> None:
        self.sink, self.reason, self.retryable, self.attempts = sink, reason, retryable, attempts
        kind = "transient" if retryable else "permanent"
        super().__init__(f"alert sink {sink!r}: {kind} failure after {attempts} attempt(s): {reason}")


class Sink(Protocol):
    name: str

    def send(self, message: Mapping[str, Any]) -> None: ...


class _Transient(Exception):
    """One attempt failed in a way a retry may fix; ``retry_after`` is the wait the server asked for (seconds)."""

    def __init__(self, text: str, retry_after: float | None = None) -> None:
        super().__init__(text)
        self.retry_after = retry_after


class _Permanent(Exception):
    """One attempt failed in a way no retry fixes."""


def backoff_delay(retry: RetryConfig, attempt: int, rng: random.Random | None = None) -> float:
    """Wait before retry number ``attempt`` (1, 2, ...): initial * 2**(attempt-1), capped, times a jitter factor."""
    base = min(retry.backoff_max_seconds, retry.backoff_initial_seconds * 2 ** (attempt - 1))
    factor = 1.0 + (rng or random).uniform(-retry.jitter, retry.jitter)
    return max(0.0, base * factor)


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return mask_text(text)


def _with_retries(name: str, retry: RetryConfig, attempt_once: Callable[[], None], secrets: Sequence[str],
                  sleep: Callable[[float], None]) -> None:
    for attempt in range(1, retry.max_attempts + 1):
        try:
            attempt_once()
            return
        except _Permanent as exc:
            raise DeliveryFailed(name, _scrub(str(exc), secrets), retryable=False, attempts=attempt) from None
        except _Transient as exc:
            reason = _scrub(str(exc), secrets)
            if attempt == retry.max_attempts:
                raise DeliveryFailed(name, reason, retryable=True, attempts=attempt) from None
            delay = backoff_delay(retry, attempt)
            if exc.retry_after is not None:  # the server's wait, never beyond the configured cap
                delay = min(retry.backoff_max_seconds, max(delay, exc.retry_after))
            log.warning("alert sink=%s attempt=%d failed (%s); retrying in %.3f s", name, attempt, reason, delay)
            sleep(delay)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date; a past date is 0), or None
    when the header is absent or malformed."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def sign_webhook(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_webhook_signature(secret: bytes, body: bytes, timestamp: str, signature: str, *, now: float | None = None,
                             tolerance_seconds: float = 300.0) -> bool:
    """What a receiver checks: the signature matches (constant time) and the timestamp is within tolerance."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign_webhook(secret, timestamp, body), signature)


class WebhookSink:
    """POSTs a message as JSON with a timestamped HMAC-SHA256 signature (see the module docstring)."""

    def __init__(self, name: str, config: WebhookConfig, secret: str, *, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not secret:
            raise ConfigError(f"alerts.sinks.{name}: the signing secret (${config.secret_env}) is empty")
        self.name, self._config, self._secret = name, config, secret
        self._session = session or requests.Session()
        self._sleep = sleep
        parts = urlsplit(config.url)
        self._where = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")

    def send(self, message: Mapping[str, Any]) -> None:
        body = json.dumps(message, sort_keys=True, separators=(",", ":")).encode()
        _with_retries(self.name, self._config.retry, lambda: self._post(body, str(message.get("message_id", ""))),
                      [self._secret], self._sleep)
        log.info("alert delivered sink=%s to=%s message_id=%s", self.name, self._where, message.get("message_id"))

    def _post(self, body: bytes, message_id: str) -> None:
        timestamp = str(int(time.time()))  # fresh per attempt: a retry is not a replay of a stale timestamp
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: sign_webhook(self._secret.encode(), timestamp, body),
                   MESSAGE_ID_HEADER: message_id}
        timeout = (self._config.connect_timeout_seconds, self._config.read_timeout_seconds)
        try:
            response = self._session.post(self._config.url, data=body, headers=headers, timeout=timeout,
                                          allow_redirects=False)
        except requests.Timeout as exc:
            raise _Transient(f"timeout posting to {self._where}: {type(exc).__name__}") from None
        except requests.ConnectionError as exc:
            raise _Transient(f"cannot connect to {self._where}: {type(exc).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in (429, 503):
            header = response.headers.get("Retry-After")
            wait = parse_retry_after(header)
            if header is not None and wait is None:
                log.warning("alert sink=%s: %s sent a malformed Retry-After header %r; using the backoff",
                            self.name, self._where, header[:64])
            raise _Transient(f"{self._where} answered HTTP {status}"
                             + (f" (Retry-After {wait:.0f} s)" if wait is not None else ""), retry_after=wait)
        if status >= 500:
            raise _Transient(f"{self._where} answered HTTP {status}")
        raise _Permanent(f"{self._where} answered HTTP {status}")


class EmailSink:
    """Sends a message as a plain-text e-mail (subject: severity, rule, count) over SMTP."""

    def __init__(self, name: str, config: EmailConfig, username: str | None, password: str | None, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name, self._config = name, config
        self._username, self._password = username, password
        self._sleep = sleep
        self._tls = None if config.security == "none" else tls_context(config, f"alerts.sinks.{name}")

    def send(self, message: Mapping[str, Any]) -> None:
        email = _email(self._config, message)
        _with_retries(self.name, self._config.retry, lambda: self._send_once(email),
                      [s for s in (self._password, self._username) if s], self._sleep)
        log.info("alert delivered sink=%s to=%s message_id=%s", self.name, self._config.host,
                 message.get("message_id"))

    def _send_once(self, email: EmailMessage) -> None:
        c = self._config
        try:
            smtp: smtplib.SMTP
            if c.security == "ssl":
                smtp = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout_seconds, context=self._tls)
            else:
                smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout_seconds)
            with smtp:
                if c.security == "starttls":
                    # a server not offering STARTTLS raises here (SMTPNotSupportedError): never a clear-text login
                    smtp.starttls(context=self._tls)
                if self._username is not None and self._password is not None:
                    smtp.login(self._username, self._password)
                smtp.send_message(email)
        except smtplib.SMTPResponseException as exc:  # auth failures and rejections included
            text = f"SMTP {exc.smtp_code} from {c.host}"
            if 400 <= exc.smtp_code < 500:
                raise _Transient(text) from None
            raise _Permanent(text) from None
        except smtplib.SMTPRecipientsRefused:
            raise _Permanent(f"SMTP server {c.host} refused every recipient") from None
        except smtplib.SMTPServerDisconnected:
            raise _Transient(f"SMTP server {c.host}:{c.port} disconnected") from None
        except smtplib.SMTPException as exc:  # before OSError: smtplib's errors are OSErrors too
            raise _Permanent(f"SMTP error from {c.host}: {type(exc).__name__}") from None
        except ssl.SSLCertVerificationError as exc:  # a wrong or untrusted certificate: no retry changes it
            raise _Permanent(f"TLS certificate of {c.host}:{c.port} not verified: {exc.verify_message}") from None
        except OSError as exc:  # refused, unreachable, timed out, TLS handshake
            raise _Transient(f"SMTP connection to {c.host}:{c.port} failed: {type(exc).__name__}") from None


def tls_context(config: EmailConfig, where: str) -> ssl.SSLContext:
    """A client TLS context verifying the server's certificate chain and host name, trusting the system's CAs or
    only those in ``config.ca_file``."""
    if config.ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=config.ca_file)
    except FileNotFoundError:
        raise ConfigError(f"{where}.ca_file={config.ca_file!r}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{where}.ca_file={config.ca_file!r}: not a PEM file of CA certificates "
                          f"({type(exc).__name__}: {exc})") from None


def _email(config: EmailConfig, message: Mapping[str, Any]) -> EmailMessage:
    email = EmailMessage()
    email["From"] = config.from_addr
    email["To"] = ", ".join(config.to_addrs)
    email["Subject"] = subject(message)
    email["X-AI-Trading-Message-Id"] = str(message.get("message_id", ""))
    lines = [f"{a['state'].upper()} [{a['severity']}] {a['name']} ({a['source']}): {a['summary']}"
             for a in message.get("alerts", [])]
    email.set_content("\n".join(lines) + "\n\n" + json.dumps(message, indent=2, sort_keys=True) + "\n")
    return email


def subject(message: Mapping[str, Any]) -> str:
    count = int(message.get("count", 1))
    states = "/".join(sorted({a["state"] for a in message.get("alerts", [])})) or "fired"
    more = f" ({count} alerts)" if count > 1 else ""
    return f"[{str(message.get('severity', '')).upper()}] {message.get('rule')} {states}{more}"


_LEVEL = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}


class LogSink:
    """Logs a message on the ``ai_trading.monitoring.sinks`` logger at its severity's level."""

    def __init__(self, name: str) -> None:
        self.name = name

    def send(self, message: Mapping[str, Any]) -> None:
        for a in message.get("alerts", []):
            log.log(_LEVEL.get(a["severity"], logging.WARNING),
                    "ALERT %s severity=%s source=%s dedup_key=%s message_id=%s: %s", a["state"], a["severity"],
                    a["source"], a["dedup_key"], message.get("message_id"), a["summary"])


def _env(environ: Mapping[str, str], variable: str, where: str) -> str:
    value = environ.get(variable)
    if not value:
        raise ConfigError(f"{where}: environment variable {variable} is not set (it holds a secret of this sink)")
    return value


def build_sink(name: str, config: SinkConfig, environ: Mapping[str, str], *,
               sleep: Callable[[float], None] = time.sleep) -> Sink:
    """The sink ``config`` describes, its secrets read from ``environ``; a missing secret is a ConfigError."""
    where = f"alerts.sinks.{name}"
    if isinstance(config, WebhookConfig):
        return WebhookSink(name, config, _env(environ, config.secret_env, where), sleep=sleep)
    if isinstance(config, EmailConfig):
        user = _env(environ, config.username_env, where) if config.username_env else None
        password = _env(environ, config.password_env, where) if config.password_env else None
        return EmailSink(name, config, user, password, sleep=sleep)
    if isinstance(config, LogSinkConfig):
        return LogSink(name)
    raise ConfigError(f"{where}: unknown sink config {type(config).__name__}")
