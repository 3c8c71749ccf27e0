"""Typed configuration of the order-management layer (``conf/oms/default.yaml``), built once by the wiring layer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ai_trading.errors import ConfigError
from ai_trading.execution.engine import EngineConfig
from ai_trading.oms.reconcile import ForeignOrderPolicy


@dataclass(frozen=True)
class PaperVenueConfig:
    dsn: str
    seed: int

    def __post_init__(self) -> None:
        if not isinstance(self.dsn, str) or not self.dsn:
            raise ConfigError("oms.paper_venue.dsn: a database URL")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"oms.paper_venue.seed={self.seed!r}: an int")


@dataclass(frozen=True)
class OmsConfig:
    dsn: str
    foreign_orders: ForeignOrderPolicy
    paper_venue: PaperVenueConfig
    engine: EngineConfig

    def __post_init__(self) -> None:
        if not isinstance(self.dsn, str) or not self.dsn:
            raise ConfigError("oms.dsn: a database URL")
        try:
            object.__setattr__(self, "foreign_orders", ForeignOrderPolicy(self.foreign_orders))
        except ValueError:
            raise ConfigError(f"oms.foreign_orders={self.foreign_orders!r}: one of "
                              f"{[p.value for p in ForeignOrderPolicy]}") from None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> OmsConfig:
        """From the resolved ``oms`` group as plain containers; unknown or missing keys are named."""
        expected = {"dsn", "foreign_orders", "paper_venue", "engine"}
        if set(values) != expected:
            raise ConfigError(f"oms config keys {sorted(values)}: expected {sorted(expected)}")
        try:
            return cls(dsn=values["dsn"], foreign_orders=values["foreign_orders"],
                       paper_venue=PaperVenueConfig(**values["paper_venue"]), engine=EngineConfig(**values["engine"]))
        except TypeError as exc:
            raise ConfigError(f"oms config: {exc}") from None
