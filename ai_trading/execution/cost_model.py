"""Per-symbol EWMA model of execution cost (bps), the one cost truth of evaluation, RL and live trading.

Expected cost of a market order of ``q`` shares in a bar of volume ``V`` with per-bar volatility ``sigma``
(fraction; ``sigma_bps = 1e4 * sigma``)::

    cost_bps = (half_spread_bps[s] + spread_vol_coef * sigma_bps)                       # spread
             + impact_scale[s] * (fixed_bps + vol_coef * sigma_bps
                                  + impact_coef * sigma_bps * sqrt(q / V))              # slippage

The square-root term follows Almgren et al. (2005) and Toth et al. (2011). Two numbers per symbol learn
from fills, each by an EWMA with the configured half-life (in fills): the volatility-free half-spread,
and the ratio of observed slippage to the formula's. Fees are exact and known, so they are not modelled.
Symbols never seen start from the priors. The same numbers parameterise
:class:`ai_trading.execution.simulator.ExecutionSimulator` when it is given the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ai_trading.errors import ConfigError, ManifestVerificationError, OrderValidationError

log = logging.getLogger(__name__)

STATE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class EwmaCostModelConfig:
    """Priors, half-life and the sqrt-law coefficients; units in ``conf/cost_model/ewma.yaml``."""

    half_life: float = 50.0
    prior_half_spread_bps: float = 1.0
    symbol_half_spread_bps: Mapping[str, float] = field(default_factory=dict)
    prior_impact_scale: float = 1.0
    spread_vol_coef: float = 0.25
    slippage_fixed_bps: float = 0.5
    slippage_vol_coef: float = 0.05
    impact_coef: float = 0.7

    def __post_init__(self) -> None:
        numbers = {k: v for k, v in asdict(self).items() if k != "symbol_half_spread_bps"}
        numbers.update({f"symbol_half_spread_bps.{k}": v for k, v in self.symbol_half_spread_bps.items()})
        for name, value in numbers.items():
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"cost_model.{name}={value!r}: must be a finite number >= 0")
        if self.half_life <= 0:
            raise ConfigError(f"cost_model.half_life={self.half_life}: must be > 0")


@dataclass(frozen=True)
class CostObservation:
    """One fill report, simulated or from the live execution log.

    ``side`` +1 buy / -1 sell; ``reference_price`` the mid when the order reached the venue;
    ``volatility`` per-bar (fraction); ``volume`` the bar's volume; ``half_spread_bps`` when quotes (or the
    simulator) say what part of the cost was spread, else None and only the slippage ratio learns.
    """

    symbol: str
    side: int
    quantity: float
    fill_price: float
    reference_price: float
    volatility: float
    volume: float
    half_spread_bps: float | None = None

    def __post_init__(self) -> None:
        if self.side not in (1, -1):
            raise OrderValidationError(f"cost observation side={self.side!r}: expected 1 or -1 ({self.symbol})")
        for name in ("quantity", "fill_price", "reference_price", "volume"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise OrderValidationError(f"cost observation {name}={value!r} must be > 0 ({self.symbol})")
        if not math.isfinite(self.volatility) or self.volatility < 0:
            raise OrderValidationError(f"cost observation volatility={self.volatility!r} ({self.symbol})")

    @property
    def cost_bps(self) -> float:
        return self.side * (self.fill_price - self.reference_price) / self.reference_price * 1e4


@dataclass
class _SymbolState:
    half_spread_bps: float
    impact_scale: float
    n_obs: int = 0


class EwmaCostModel:
    """Per-symbol EWMA cost model; ``predict`` returns expected cost in bps (spread + slippage, no fees)."""

    def __init__(self, config: EwmaCostModelConfig | None = None) -> None:
        self.config = config or EwmaCostModelConfig()
        self._alpha = 1.0 - 0.5 ** (1.0 / self.config.half_life)
        self._state: dict[str, _SymbolState] = {}

    def _get(self, symbol: str) -> _SymbolState:
        state = self._state.get(symbol)
        if state is None:
            prior = self.config.symbol_half_spread_bps.get(symbol, self.config.prior_half_spread_bps)
            return _SymbolState(float(prior), float(self.config.prior_impact_scale))
        return state

    def half_spread_bps(self, symbol: str) -> float:
        """Volatility-free half-spread (bps) of ``symbol``: learned, or the prior."""
        return self._get(symbol).half_spread_bps

    def impact_scale(self, symbol: str) -> float:
        """Learned multiplier of the slippage formula (1 = the configured coefficients)."""
        return self._get(symbol).impact_scale

    def n_observations(self, symbol: str) -> int:
        return self._get(symbol).n_obs

    def _slippage_formula_bps(self, quantity: float, volatility: float, volume: float) -> float:
        c = self.config
        sigma_bps = volatility * 1e4
        return c.slippage_fixed_bps + c.slippage_vol_coef * sigma_bps + c.impact_coef * sigma_bps * math.sqrt(
            quantity / volume)

    def predict(self, symbol: str, quantity: float, price: float, volatility: float, volume: float) -> float:
        """Expected cost (bps of the reference price) of a market order of ``quantity`` shares.

        ``price`` is validated only (costs are relative); ``volatility`` per bar (fraction); ``volume``
        the bar volume the order trades against (> 0).
        """
        for name, value in (("quantity", quantity), ("price", price), ("volume", volume)):
            if not math.isfinite(value) or value <= 0:
                raise OrderValidationError(f"predict {name}={value!r} must be a finite number > 0 ({symbol})")
        if not math.isfinite(volatility) or volatility < 0:
            raise OrderValidationError(f"predict volatility={volatility!r} must be >= 0 ({symbol})")
        state = self._get(symbol)
        spread = state.half_spread_bps + self.config.spread_vol_coef * volatility * 1e4
        return spread + state.impact_scale * self._slippage_formula_bps(quantity, volatility, volume)

    def update(self, observations: CostObservation | Iterable[CostObservation]) -> None:
        """Fold fill reports into the per-symbol EWMAs, in the order given."""
        items = [observations] if isinstance(observations, CostObservation) else observations
        a = self._alpha
        for obs in items:
            state = self._get(obs.symbol)
            vol_bps = obs.volatility * 1e4
            if obs.half_spread_bps is not None:
                base = obs.half_spread_bps - self.config.spread_vol_coef * vol_bps
                state.half_spread_bps += a * (base - state.half_spread_bps)
                spread_paid = obs.half_spread_bps
            else:
                spread_paid = state.half_spread_bps + self.config.spread_vol_coef * vol_bps
            formula = self._slippage_formula_bps(obs.quantity, obs.volatility, obs.volume)
            if formula > 0:
                ratio = (obs.cost_bps - spread_paid) / formula
                state.impact_scale += a * (ratio - state.impact_scale)
            state.n_obs += 1
            self._state[obs.symbol] = state

    # -- persistence -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Canonical, JSON-ready state (config + per-symbol numbers)."""
        config = asdict(self.config)
        config["symbol_half_spread_bps"] = dict(sorted(self.config.symbol_half_spread_bps.items()))
        symbols = {s: asdict(st) for s, st in sorted(self._state.items())}
        return {"format_version": STATE_FORMAT_VERSION, "config": config, "symbols": symbols}

    @staticmethod
    def hash_state(state: Mapping[str, Any]) -> str:
        """SHA-256 of the canonical JSON of ``state`` (sorted keys, no whitespace, floats by repr)."""
        text = json.dumps(state, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def state_hash(self) -> str:
        return self.hash_state(self.state_dict())

    def save(self, path: str | Path) -> str:
        """Write state, format version and hash as JSON; returns the hash (for the model manifest)."""
        state = self.state_dict()
        digest = self.hash_state(state)
        payload = {"format_version": STATE_FORMAT_VERSION, "sha256": digest, "state": state}
        Path(path).write_text(json.dumps(payload, sort_keys=True, indent=1), encoding="utf-8")
        log.info("saved cost model path=%s symbols=%d sha256=%s", path, len(self._state), digest[:12])
        return digest

    @classmethod
    def load(cls, path: str | Path, expected_sha256: str | None = None) -> EwmaCostModel:
        """Read a saved state; the hash must verify (and equal ``expected_sha256`` when given)."""
        try:
            payload = json.loads(Path(path).read_text(encoding="utf-8"))
            version, digest, state = payload["format_version"], payload["sha256"], payload["state"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read cost model state {path}: {exc}") from exc
        if version != STATE_FORMAT_VERSION or state.get("format_version") != STATE_FORMAT_VERSION:
            raise ConfigError(f"cost model state {path} has format version {version}, "
                              f"this code reads {STATE_FORMAT_VERSION}")
        actual = cls.hash_state(state)
        if actual != digest or (expected_sha256 is not None and actual != expected_sha256):
            raise ManifestVerificationError(f"cost model state {path}: sha256 {actual} does not match "
                                            f"{expected_sha256 or digest}")
        model = cls(EwmaCostModelConfig(**state["config"]))
        for symbol, values in state["symbols"].items():
            model._state[symbol] = _SymbolState(float(values["half_spread_bps"]), float(values["impact_scale"]),
                                                int(values["n_obs"]))
        return model
