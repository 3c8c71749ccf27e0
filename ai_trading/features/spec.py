"""Versioned feature specifications and their schema hash.

A :class:`FeatureSpec` names an ordered list of causal features with their parameters. Its
``schema_hash`` is the SHA-256 of a canonical JSON of spec name, version, ordered features with
parameters, output columns and dtypes: the identity that every consumer of features checks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final

from ai_trading.data.fingerprint import canonical_json
from ai_trading.errors import ConfigError

FEATURE_DTYPE: Final = "float32"

# kind -> (parameter names, bars of history before the first row at which the feature is defined)
_KINDS: Final[dict[str, tuple[tuple[str, ...], Callable[[Mapping[str, int]], int]]]] = {
    "log_return": (("horizon",), lambda p: p["horizon"]),
    "realized_vol": (("window",), lambda p: p["window"]),  # `window` one-bar returns need window+1 closes
    "parkinson_vol": (("window",), lambda p: p["window"] - 1),
    "momentum": (("window",), lambda p: p["window"] - 1),
    "zscore": (("window",), lambda p: p["window"] - 1),
    "volume_z": (("window",), lambda p: p["window"] - 1),
}


@dataclass(frozen=True)
class FeatureDef:
    """One feature: a kind and its integer parameters (lookbacks in bars)."""

    kind: str
    params: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigError(f"unknown feature kind {self.kind!r}; known: {sorted(_KINDS)}")
        required = _KINDS[self.kind][0]
        if set(self.params) != set(required):
            raise ConfigError(f"feature {self.kind} takes parameters {required}, got {sorted(self.params)}")
        for key, value in self.params.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"feature {self.kind}.{key} must be a positive integer, got {value!r}")
        if self.kind in ("realized_vol", "zscore", "volume_z") and self.params["window"] < 2:
            raise ConfigError(f"feature {self.kind}.window must be at least 2 (a sample deviation)")

    @property
    def column(self) -> str:
        return "_".join([self.kind, *(str(self.params[k]) for k in sorted(self.params))])

    @property
    def lookback(self) -> int:
        """Bars before the first row at which this feature is defined."""
        return _KINDS[self.kind][1](self.params)


@dataclass(frozen=True)
class FeatureSpec:
    """A named, versioned, ordered set of features."""

    name: str
    version: int
    features: tuple[FeatureDef, ...]

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("feature spec needs a name")
        if not self.features:
            raise ConfigError(f"feature spec {self.name} has no features")
        columns = self.columns
        if len(set(columns)) != len(columns):
            raise ConfigError(f"feature spec {self.name} repeats a feature: {columns}")

    @property
    def columns(self) -> list[str]:
        return [f.column for f in self.features]

    @property
    def warmup(self) -> int:
        """Rows per symbol dropped at the start because some feature is not yet defined."""
        return max(f.lookback for f in self.features)

    def canonical(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "features": [{"kind": f.kind, "params": dict(sorted(f.params.items()))} for f in self.features],
            "columns": self.columns,
            "dtypes": [FEATURE_DTYPE] * len(self.features),
        }

    @property
    def schema_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.canonical())).hexdigest()


def make_spec(name: str, version: int, features: Sequence[Mapping[str, Any]]) -> FeatureSpec:
    """Build a spec from config: ``features`` is a list of ``{kind: ..., <param>: <int>, ...}``."""
    defs = []
    for entry in features:
        params = {k: v for k, v in entry.items() if k != "kind"}
        if "kind" not in entry:
            raise ConfigError(f"feature entry {dict(entry)} of spec {name} has no 'kind'")
        defs.append(FeatureDef(kind=str(entry["kind"]), params=params))
    return FeatureSpec(name=name, version=int(version), features=tuple(defs))


def registered_hashes() -> dict[str, dict[str, str]]:
    """The committed registry ``{spec name: {version: schema hash}}``."""
    text = resources.files("ai_trading.features").joinpath("schema_registry.json").read_text("utf-8")
    registry: dict[str, dict[str, str]] = json.loads(text)
    return registry
