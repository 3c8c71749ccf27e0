"""JSON over HTTP with API keys from the environment: the transport of the Alpaca broker and data source.

Keys are read once from the named environment variables and sent only as request headers; they never enter a
log line, an exception or a repr (requests keeps them on its prepared request, which nothing here logs).

Retries are the caller's choice per request, because only the caller knows whether a repeat is safe:

- ``retry=True`` (reads, cancels): a timeout, a lost connection, a 5xx or a 429 is retried up to
  ``max_retries`` times. A 429 waits what the server asks (``Retry-After`` seconds, or until the Unix time in
  ``X-RateLimit-Reset``), the others an exponential backoff (``backoff_seconds * 2**attempt``, jittered by up
  to a quarter); every wait is capped at ``max_wait_seconds``.
- ``retry=False`` (an order submission): no request is ever sent twice; a timeout, a lost connection, a 5xx
  or a 429 raises :class:`RestUnavailable` at once and the caller decides (look the order up first).

Any other 4xx raises :class:`RestError` with the server's status, code and message.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from ai_trading.errors import AiTradingError, ConfigError
from ai_trading.secrets import mask_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Credentials:
    """An API key pair; ``repr`` shows only where the values came from."""

    key_id_env: str
    secret_key_env: str
    key_id: str = field(repr=False)
    secret_key: str = field(repr=False)


def credentials_from_env(key_id_env: str, secret_key_env: str, what: str) -> Credentials:
    """The key pair in environment variables ``key_id_env`` and ``secret_key_env``; :class:`ConfigError`
    naming the variables (never their values) when either is unset or empty."""
    missing = [name for name in (key_id_env, secret_key_env) if not os.environ.get(name)]
    if missing:
        raise ConfigError(f"{what} needs API keys in the environment: set {' and '.join(missing)} (the key id "
                          f"in {key_id_env}, the secret in {secret_key_env})")
    return Credentials(key_id_env, secret_key_env, os.environ[key_id_env], os.environ[secret_key_env])


def check_rest_settings(settings: Any, prefix: str, urls: tuple[str, ...]) -> None:
    """:class:`ConfigError` naming ``prefix.<field>`` for a bad connection setting of ``settings``: the ``urls``
    fields, the key variables' names, the timeouts and waits, and ``max_retries``."""
    for name in urls:
        url = getattr(settings, name)
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ConfigError(f"{prefix}.{name}={url!r}: must be an http(s) URL")
    for name in ("key_id_env", "secret_key_env"):
        if not isinstance(getattr(settings, name), str) or not getattr(settings, name):
            raise ConfigError(f"{prefix}.{name}={getattr(settings, name)!r}: must name an environment variable")
    for name in ("connect_timeout", "read_timeout", "backoff_seconds", "max_wait_seconds"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{prefix}.{name}={value!r}: must be a number of seconds > 0")
    retries = settings.max_retries
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"{prefix}.max_retries={retries!r}: must be an integer >= 0")


class RestError(AiTradingError):
    """The server answered a request with an error: ``status`` (0 when no answer came), Alpaca's ``code``
    (when its body carried one) and ``message``."""

    def __init__(self, method: str, url: str, status: int, message: str, code: int | None = None) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.code = code
        self.message = message
        what = f"HTTP {status}" if status else "no answer"
        super().__init__(f"{method} {url}: {what}" + (f" code={code}" if code is not None else "") + f": {message}")


class RestUnavailable(RestError):
    """No usable answer (timeout, lost connection, 5xx, 429): for a request that changes state, its outcome
    is unknown."""


@dataclass(frozen=True)
class Response:
    status: int
    body: Any
    headers: Mapping[str, str]


class RestClient:
    """Requests to ``base_url`` with the key pair as Alpaca's ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY``
    headers. ``sleep`` and ``clock`` are injectable so tests can observe the waits."""

    def __init__(self, base_url: str, credentials: Credentials, *, connect_timeout: float, read_timeout: float,
                 max_retries: int, backoff_seconds: float, max_wait_seconds: float,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = (connect_timeout, read_timeout)
        self._max_retries = max_retries
        self._backoff = backoff_seconds
        self._max_wait = max_wait_seconds
        self._sleep = sleep
        self._clock = clock
        self._session = requests.Session()
        self._session.headers.update({"APCA-API-KEY-ID": credentials.key_id,
                                      "APCA-API-SECRET-KEY": credentials.secret_key,
                                      "Accept": "application/json"})
        self._secrets = (credentials.key_id, credentials.secret_key)

    def __repr__(self) -> str:
        return f"RestClient({self.base_url!r})"

    def close(self) -> None:
        self._session.close()

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json: Mapping[str, Any] | None = None, retry: bool) -> Response:
        """One answer with status < 400 (its JSON body, None when empty); a :class:`RestError` otherwise."""
        url = self.base_url + path
        attempt = 0
        while True:
            try:
                answer = self._session.request(method, url, params=params, json=json, timeout=self._timeout,
                                               allow_redirects=False)
            except requests.Timeout as exc:
                failure = RestUnavailable(method, url, 0, f"timed out ({type(exc).__name__})")
                wait = self._backoff_wait(attempt)
            except requests.ConnectionError as exc:
                failure = RestUnavailable(method, url, 0, f"connection failed ({type(exc).__name__})")
                wait = self._backoff_wait(attempt)
            else:
                if answer.status_code < 400:
                    return Response(answer.status_code, self._json(answer, method, url), answer.headers)
                code, message = self._error_of(answer)
                if answer.status_code == 429:
                    failure = RestUnavailable(method, url, 429, message or "rate limited", code)
                    wait = self._rate_limit_wait(answer.headers, attempt)
                elif answer.status_code >= 500:
                    failure = RestUnavailable(method, url, answer.status_code, message or answer.reason, code)
                    wait = self._backoff_wait(attempt)
                else:
                    raise RestError(method, url, answer.status_code, message or answer.reason, code)
            if not retry or attempt >= self._max_retries:
                log.warning("rest request failed method=%s url=%s status=%s attempts=%d", method, url,
                            failure.status, attempt + 1)
                raise failure
            log.info("rest retry method=%s url=%s status=%s attempt=%d wait=%.3fs", method, url, failure.status,
                     attempt + 1, wait)
            self._sleep(wait)
            attempt += 1

    def _backoff_wait(self, attempt: int) -> float:
        base = self._backoff * 2.0 ** attempt
        return min(self._max_wait, base * (1.0 + random.uniform(0.0, 0.25)))

    def _rate_limit_wait(self, headers: Mapping[str, str], attempt: int) -> float:
        """What a 429 asks to wait: ``Retry-After`` (seconds or an HTTP date), else until ``X-RateLimit-Reset``
        (Unix seconds), else the backoff."""
        retry_after = headers.get("Retry-After")
        if retry_after is not None:
            try:
                seconds = float(retry_after)
            except ValueError:
                try:
                    seconds = parsedate_to_datetime(retry_after).timestamp() - self._clock()
                except (TypeError, ValueError):
                    seconds = math.nan
            if math.isfinite(seconds):
                return min(self._max_wait, max(0.0, seconds))
        reset = headers.get("X-RateLimit-Reset")
        if reset is not None:
            try:
                return min(self._max_wait, max(0.0, float(reset) - self._clock()))
            except ValueError:
                pass
        return self._backoff_wait(attempt)

    def _json(self, answer: requests.Response, method: str, url: str) -> Any:
        if not answer.content:
            return None
        try:
            return answer.json()
        except ValueError:
            raise RestError(method, url, answer.status_code, "the answer is not JSON") from None

    def _error_of(self, answer: requests.Response) -> tuple[int | None, str]:
        """Alpaca's ``{"code": ..., "message": ...}`` error body, masked (a server may echo what it got)."""
        try:
            body = answer.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            code = body.get("code")
            message = str(body.get("message", ""))
        else:
            code, message = None, answer.text[:200]
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return (code if isinstance(code, int) and not isinstance(code, bool) else None), mask_text(message)
