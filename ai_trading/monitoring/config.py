"""Typed configs of ``conf/alerts/`` (defaults equal ``conf/alerts/default.yaml``; a sink's fields without a yaml
value have no default unless the yaml's commented example shows it). Secrets never appear here: sinks name the
environment variables that hold them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from ai_trading.errors import ConfigError
from ai_trading.monitoring.model import Severity

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _positive(where: str, value: float, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
        and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ConfigError(f"{where}={value!r}: must be a finite number {'>= 0' if allow_zero else '> 0'}")


def _count(where: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}={value!r}: must be an int >= 1")


@dataclass(frozen=True)
class RetryConfig:
    """In-call retries of one send (exponential backoff with jitter; only on transient failures)."""

    max_attempts: int = 3
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 5.0
    jitter: float = 0.5  # each wait is scaled by a uniform factor in [1 - jitter, 1 + jitter]

    def validate(self, where: str) -> None:
        _count(f"{where}.max_attempts", self.max_attempts)
        _positive(f"{where}.backoff_initial_seconds", self.backoff_initial_seconds, allow_zero=True)
        _positive(f"{where}.backoff_max_seconds", self.backoff_max_seconds, allow_zero=True)
        if not (isinstance(self.jitter, int | float) and 0.0 <= self.jitter <= 1.0):
            raise ConfigError(f"{where}.jitter={self.jitter!r}: must be in [0, 1]")


@dataclass(frozen=True)
class WebhookConfig:
    """POSTs each message as JSON, signed with HMAC-SHA256 over ``timestamp.body`` (secret from ``secret_env``)."""

    url: str
    secret_env: str = "AI_TRADING_WEBHOOK_SECRET"
    connect_timeout_seconds: float = 3.0
    read_timeout_seconds: float = 10.0
    retry: RetryConfig = field(default_factory=RetryConfig)
    type: Literal["webhook"] = "webhook"

    def validate(self, where: str) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.url: must be an http(s) URL")
        if not isinstance(self.secret_env, str) or not self.secret_env:
            raise ConfigError(f"{where}.secret_env: must name the environment variable holding the signing secret")
        _positive(f"{where}.connect_timeout_seconds", self.connect_timeout_seconds)
        _positive(f"{where}.read_timeout_seconds", self.read_timeout_seconds)
        self.retry.validate(f"{where}.retry")


@dataclass(frozen=True)
class EmailConfig:
    """Sends each message by SMTP: ``starttls`` or ``ssl``; ``none`` (plain) only to a loopback host. The server's
    certificate and host name are always verified, against the system's CAs or the PEM bundle ``ca_file``; the
    credentials are sent only over the verified TLS connection."""

    host: str
    port: int
    from_addr: str
    to_addrs: tuple[str, ...]
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username_env: str | None = "AI_TRADING_SMTP_USER"
    password_env: str | None = "AI_TRADING_SMTP_PASSWORD"
    timeout_seconds: float = 10.0
    ca_file: str | None = None
    retry: RetryConfig = field(default_factory=RetryConfig)
    type: Literal["email"] = "email"

    def validate(self, where: str) -> None:
        object.__setattr__(self, "to_addrs", tuple(self.to_addrs))
        if not self.host or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ConfigError(f"{where}: host and port (1..65535) are required, got {self.host!r}:{self.port!r}")
        if "@" not in self.from_addr or not self.to_addrs or any("@" not in a for a in self.to_addrs):
            raise ConfigError(f"{where}: from_addr and every to_addrs entry must be e-mail addresses")
        if self.security not in ("starttls", "ssl", "none"):
            raise ConfigError(f"{where}.security={self.security!r}: starttls, ssl or none")
        if self.security == "none" and self.host not in LOOPBACK_HOSTS:
            raise ConfigError(f"{where}.security=none sends in clear text: only allowed to a loopback host "
                              f"({', '.join(sorted(LOOPBACK_HOSTS))}), got {self.host!r}")
        if self.ca_file is not None and (not isinstance(self.ca_file, str) or not self.ca_file):
            raise ConfigError(f"{where}.ca_file={self.ca_file!r}: a PEM file of CA certificates, or null")
        if self.ca_file is not None and self.security == "none":
            raise ConfigError(f"{where}.ca_file is set but security=none verifies no certificate")
        if (self.username_env is None) != (self.password_env is None):
            raise ConfigError(f"{where}: username_env and password_env are set together or not at all")
        _positive(f"{where}.timeout_seconds", self.timeout_seconds)
        self.retry.validate(f"{where}.retry")


@dataclass(frozen=True)
class LogSinkConfig:
    """Writes each message to the ``ai_trading.monitoring.sinks`` logger (level by severity)."""

    type: Literal["log"] = "log"

    def validate(self, where: str) -> None:
        return None


SinkConfig = WebhookConfig | EmailConfig | LogSinkConfig


@dataclass(frozen=True)
class RouteConfig:
    """Alerts of at least ``min_severity`` from one of ``sources`` (empty: any source) go to ``sinks``."""

    sinks: tuple[str, ...]
    min_severity: Severity = Severity.INFO
    sources: tuple[str, ...] = ()

    def matches(self, severity: Severity, source: str) -> bool:
        return severity.rank >= self.min_severity.rank and (not self.sources or source in self.sources)


@dataclass(frozen=True)
class DeliveryConfig:
    """The outbox's retries of a message its sink failed to take (after the sink's own in-call retries)."""

    max_attempts: int = 10
    backoff_initial_seconds: float = 10.0
    backoff_max_seconds: float = 900.0
    lease_seconds: float = 120.0  # a message claimed by a dispatcher that died is taken again after this

    def validate(self) -> None:
        _count("alerts.delivery.max_attempts", self.max_attempts)
        _positive("alerts.delivery.backoff_initial_seconds", self.backoff_initial_seconds, allow_zero=True)
        _positive("alerts.delivery.backoff_max_seconds", self.backoff_max_seconds, allow_zero=True)
        _positive("alerts.delivery.lease_seconds", self.lease_seconds)


@dataclass(frozen=True)
class KillSwitchHookConfig:
    engage_on_critical: bool = False
    mode: Literal["block_all", "reduce_only"] = "block_all"


@dataclass(frozen=True)
class RulesConfig:
    """Thresholds of the live rules (see :mod:`ai_trading.monitoring.rules`)."""

    cost_spike_max_excess_bps: float = 10.0
    cost_spike_max_ratio: float = 3.0
    slippage_window: int = 50
    slippage_min_samples: int = 20
    slippage_max_drift_bps: float = 5.0
    max_drawdown: float = 0.2

    def validate(self) -> None:
        _positive("alerts.rules.cost_spike.max_excess_bps", self.cost_spike_max_excess_bps, allow_zero=True)
        _positive("alerts.rules.cost_spike.max_ratio", self.cost_spike_max_ratio)
        _count("alerts.rules.slippage_drift.window", self.slippage_window)
        _count("alerts.rules.slippage_drift.min_samples", self.slippage_min_samples)
        if self.slippage_min_samples > self.slippage_window:
            raise ConfigError("alerts.rules.slippage_drift.min_samples must be <= window")
        _positive("alerts.rules.slippage_drift.max_drift_bps", self.slippage_max_drift_bps)
        if not (0.0 < self.max_drawdown < 1.0):
            raise ConfigError(f"alerts.rules.drawdown.max_drawdown={self.max_drawdown!r}: must be in (0, 1)")


@dataclass(frozen=True)
class AlertsConfig:
    """The ``alerts`` group: sinks by name, routes, dedup and grouping, outbox retries, the kill-switch hook."""

    sinks: Mapping[str, SinkConfig]
    routes: tuple[RouteConfig, ...]
    repeat_interval_seconds: float = 3600.0
    group_window_seconds: float = 30.0
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    kill_switch: KillSwitchHookConfig = field(default_factory=KillSwitchHookConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "routes", tuple(self.routes))
        object.__setattr__(self, "sinks", dict(self.sinks))
        for name, sink in self.sinks.items():
            sink.validate(f"alerts.sinks.{name}")
        for i, route in enumerate(self.routes):
            unknown = [s for s in route.sinks if s not in self.sinks]
            if not route.sinks or unknown:
                raise ConfigError(f"alerts.routes[{i}].sinks={list(route.sinks)}: each must name a sink of "
                                  f"alerts.sinks ({', '.join(self.sinks) or 'none defined'})")
        _positive("alerts.repeat_interval_seconds", self.repeat_interval_seconds, allow_zero=True)
        _positive("alerts.group_window_seconds", self.group_window_seconds, allow_zero=True)
        self.delivery.validate()
        self.rules.validate()
        if self.kill_switch.mode not in ("block_all", "reduce_only"):
            raise ConfigError(f"alerts.kill_switch.mode={self.kill_switch.mode!r}: block_all or reduce_only")


def _known(where: str, data: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _retry(where: str, data: Mapping[str, Any] | None) -> RetryConfig:
    data = dict(data or {})
    _known(where, data, [f.name for f in fields(RetryConfig)])
    return RetryConfig(**data)


def _sink(name: str, data: Mapping[str, Any]) -> SinkConfig:
    where = f"alerts.sinks.{name}"
    if not isinstance(data, Mapping) or "type" not in data:
        raise ConfigError(f"{where}: a mapping with type: webhook | email | log")
    data = dict(data)
    kind = data["type"]
    cls: type[WebhookConfig] | type[EmailConfig] | type[LogSinkConfig]
    if kind == "webhook":
        cls = WebhookConfig
    elif kind == "email":
        cls = EmailConfig
    elif kind == "log":
        cls = LogSinkConfig
    else:
        raise ConfigError(f"{where}.type={kind!r}: webhook, email or log")
    _known(where, data, [f.name for f in fields(cls)])
    if "retry" in data:
        data["retry"] = _retry(f"{where}.retry", data["retry"])
    if "to_addrs" in data:
        data["to_addrs"] = tuple(data["to_addrs"])
    try:
        return cls(**data)
    except TypeError as exc:  # a required key missing
        raise ConfigError(f"{where}: {exc}") from None


def alerts_config_from_mapping(data: Mapping[str, Any]) -> AlertsConfig:
    """The typed config of the composed ``alerts`` group (a plain mapping: the entrypoint resolves it)."""
    data = dict(data)
    _known("alerts", data, ["sinks", "routes", "repeat_interval_seconds", "group_window_seconds", "delivery",
                            "kill_switch", "rules"])
    sinks = {str(k): _sink(str(k), v) for k, v in dict(data.get("sinks") or {}).items()}
    routes = []
    for i, r in enumerate(data.get("routes") or []):
        r = dict(r)
        _known(f"alerts.routes[{i}]", r, ["sinks", "min_severity", "sources"])
        try:
            severity = Severity(r.get("min_severity", "info"))
        except ValueError:
            raise ConfigError(f"alerts.routes[{i}].min_severity={r.get('min_severity')!r}: info, warning or "
                              "critical") from None
        routes.append(RouteConfig(sinks=tuple(r.get("sinks") or ()), min_severity=severity,
                                  sources=tuple(r.get("sources") or ())))
    delivery = dict(data.get("delivery") or {})
    _known("alerts.delivery", delivery, [f.name for f in fields(DeliveryConfig)])
    hook = dict(data.get("kill_switch") or {})
    _known("alerts.kill_switch", hook, [f.name for f in fields(KillSwitchHookConfig)])
    rules = dict(data.get("rules") or {})
    _known("alerts.rules", rules, ["cost_spike", "slippage_drift", "drawdown"])
    flat: dict[str, Any] = {}
    for group, prefix, keys in (("cost_spike", "cost_spike_", ("max_excess_bps", "max_ratio")),
                                ("slippage_drift", "slippage_", ("window", "min_samples", "max_drift_bps")),
                                ("drawdown", "", ("max_drawdown",))):
        values = dict(rules.get(group) or {})
        _known(f"alerts.rules.{group}", values, keys)
        flat.update({f"{prefix}{key}": value for key, value in values.items()})
    scalars = {k: data[k] for k in ("repeat_interval_seconds", "group_window_seconds") if k in data}
    return AlertsConfig(sinks=sinks, routes=tuple(routes), delivery=DeliveryConfig(**delivery),
                        kill_switch=KillSwitchHookConfig(**hook), rules=RulesConfig(**flat), **scalars)
