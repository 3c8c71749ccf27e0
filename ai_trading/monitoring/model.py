"""The one alert type every source becomes: name (the rule), severity, source, dedup key, payload, state."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ai_trading.errors import ConfigError
from ai_trading.secrets import mask_secrets


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class AlertState(StrEnum):
    FIRED = "fired"
    RESOLVED = "resolved"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


@dataclass(frozen=True)
class Alert:
    """One alert. ``dedup_key`` identifies the condition (a repeat of it inside the repeat interval is not sent
    again; its resolve is sent once); ``name`` is the rule (alerts of one rule raised in a burst go out as one
    message). The payload is masked (:func:`ai_trading.secrets.mask_secrets`) and made JSON-safe on creation."""

    name: str
    severity: Severity
    source: str
    dedup_key: str
    summary: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    state: AlertState = AlertState.FIRED
    raised_at: datetime = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        for key, limit in (("name", 128), ("source", 64), ("dedup_key", 256)):
            value = getattr(self, key)
            if not isinstance(value, str) or not value or len(value) > limit:
                raise ConfigError(f"alert {key}={value!r}: must be a non-empty string of at most {limit} characters")
        object.__setattr__(self, "severity", Severity(self.severity))
        object.__setattr__(self, "state", AlertState(self.state))
        if self.raised_at.tzinfo is None:
            raise ConfigError(f"alert {self.name}: raised_at={self.raised_at!r} must be timezone-aware")
        object.__setattr__(self, "payload", _json_safe(mask_secrets(dict(self.payload))))

    def resolved(self, summary: str | None = None, at: datetime | None = None) -> Alert:
        """The resolve of this alert (same name, source and dedup key)."""
        return replace(self, state=AlertState.RESOLVED, summary=summary or f"resolved: {self.summary}",
                       raised_at=at or utc_now())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "severity": str(self.severity), "source": self.source,
                "dedup_key": self.dedup_key, "summary": self.summary, "state": str(self.state),
                "raised_at": self.raised_at.isoformat(), "payload": dict(self.payload)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        return cls(name=data["name"], severity=Severity(data["severity"]), source=data["source"],
                   dedup_key=data["dedup_key"], summary=data["summary"], payload=data.get("payload", {}),
                   state=AlertState(data["state"]), raised_at=datetime.fromisoformat(data["raised_at"]))
