"""Per-symbol EWMA cost model: what execution really cost, learned from fills, on top of the simulator preset.

The simulator preset (:class:`~ai_trading.execution.SimulatorConfig`, ``conf/simulator/*.yaml``) is the cost
truth a user picks: its half-spread (quoted or estimated from bars, widened with volatility) and its slippage
formula ``fixed_bps + vol_coef * sigma_bps + impact_coef * sigma_bps * sqrt(q / V)`` (square-root law,
Almgren et al. 2005, Toth et al. 2011). This model holds only what fills teach: per symbol two multipliers of
that truth, each an EWMA with the configured half-life (in fill reports):

- ``spread_scale``: observed half-spread / the preset's half-spread at the fill's bar;
- ``impact_scale``: observed slippage beyond the spread / the preset's slippage formula.

A symbol never seen has both at 1, so a fresh model leaves every preset exactly as it says (``zero_cost``
stays free whatever was learned: a multiple of zero is zero). Fees are exact and known, so not modelled.

The learned state persists as a versioned JSON file with a SHA-256 of its canonical content
(:meth:`EwmaCostModel.save`, :meth:`EwmaCostModel.load`); simulation, evaluation and the RL env load it by
path from ``conf/cost_model``. Fill reports fold in with :meth:`EwmaCostModel.update` and a new version is
written with :meth:`EwmaCostModel.save`; a venue's fills reach it through :mod:`ai_trading.execution.cost_feedback`,
which writes each learned state as a new version of the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ai_trading.durable_files import replace_durably
from ai_trading.errors import ConfigError, ManifestVerificationError, OrderValidationError
from ai_trading.execution.config import SimulatorConfig

log = logging.getLogger(__name__)

STATE_FORMAT_VERSION = 2


@dataclass(frozen=True)
class EwmaCostModelConfig:
    """Half-life of the learning (fill reports) and the learned state file (None: nothing learned yet,
    every multiplier 1); see ``conf/cost_model/ewma.yaml``."""

    half_life: float = 50.0
    state_path: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.half_life, bool) or not isinstance(self.half_life, int | float) \
                or not math.isfinite(self.half_life) or self.half_life <= 0:
            raise ConfigError(f"cost_model.half_life={self.half_life!r}: must be a finite number > 0")
        if self.state_path is not None and not str(self.state_path).strip():
            raise ConfigError("cost_model.state_path is empty: give a file path or null")


@dataclass(frozen=True)
class CostObservation:
    """One fill report, simulated or from the live execution log.

    ``side`` +1 buy / -1 sell; ``reference_price`` the mid when the order reached the venue; ``volatility``
    per-bar (fraction); ``volume`` the bar's volume; ``preset_half_spread_bps`` the half-spread the simulator
    preset gives that bar (before any learned multiplier); ``half_spread_bps`` the half-spread actually paid
    when quotes (or the simulator) say so, else None and only the slippage multiplier learns.
    """

    symbol: str
    side: int
    quantity: float
    fill_price: float
    reference_price: float
    volatility: float
    volume: float
    preset_half_spread_bps: float
    half_spread_bps: float | None = None

    def __post_init__(self) -> None:
        if self.side not in (1, -1):
            raise OrderValidationError(f"cost observation side={self.side!r}: expected 1 or -1 ({self.symbol})")
        for name in ("quantity", "fill_price", "reference_price", "volume"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise OrderValidationError(f"cost observation {name}={value!r} must be > 0 ({self.symbol})")
        for name in ("volatility", "preset_half_spread_bps"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise OrderValidationError(f"cost observation {name}={value!r} must be >= 0 ({self.symbol})")
        if self.half_spread_bps is not None and (not math.isfinite(self.half_spread_bps) or self.half_spread_bps < 0):
            raise OrderValidationError(f"cost observation half_spread_bps={self.half_spread_bps!r} must be >= 0 "
                                       f"({self.symbol})")

    @property
    def cost_bps(self) -> float:
        return self.side * (self.fill_price - self.reference_price) / self.reference_price * 1e4


@dataclass
class _SymbolState:
    spread_scale: float = 1.0
    impact_scale: float = 1.0
    n_obs: int = 0


class EwmaCostModel:
    """Learned per-symbol multipliers of a simulator preset's costs; ``predict`` gives the expected cost in
    bps (spread + slippage, no fees) of a market order under the preset with what was learned."""

    def __init__(self, config: EwmaCostModelConfig, preset: SimulatorConfig) -> None:
        self.config = config
        self.preset = preset
        self._alpha = 1.0 - 0.5 ** (1.0 / config.half_life)
        self._state: dict[str, _SymbolState] = {}

    @classmethod
    def from_config(cls, config: EwmaCostModelConfig, preset: SimulatorConfig) -> EwmaCostModel:
        """The model a run uses: the learned state at ``config.state_path`` (which must exist when set),
        or a fresh one."""
        if config.state_path is None:
            return cls(config, preset)
        return cls.load(config.state_path, config, preset)

    def spread_scale(self, symbol: str) -> float:
        """Learned multiplier of the preset's half-spread (1 before any fill)."""
        state = self._state.get(symbol)
        return 1.0 if state is None else state.spread_scale

    def impact_scale(self, symbol: str) -> float:
        """Learned multiplier of the preset's slippage formula (1 before any fill)."""
        state = self._state.get(symbol)
        return 1.0 if state is None else state.impact_scale

    def n_observations(self, symbol: str) -> int:
        state = self._state.get(symbol)
        return 0 if state is None else state.n_obs

    def slippage_formula_bps(self, quantity: float, volatility: float, volume: float) -> float:
        """The preset's slippage (bps) of ``quantity`` shares in a bar of ``volume`` at per-bar ``volatility``."""
        c = self.preset
        sigma_bps = volatility * 1e4
        return c.slippage_fixed_bps + c.slippage_vol_coef * sigma_bps + c.impact_coef * sigma_bps * math.sqrt(
            quantity / volume)

    def predict(self, symbol: str, quantity: float, volatility: float, volume: float,
                preset_half_spread_bps: float) -> float:
        """Expected cost (bps of the reference price) of a market order of ``quantity`` shares, with the
        preset's half-spread at that bar ``preset_half_spread_bps``, per-bar ``volatility`` and bar ``volume``."""
        for name, value in (("quantity", quantity), ("volume", volume)):
            if not math.isfinite(value) or value <= 0:
                raise OrderValidationError(f"predict {name}={value!r} must be a finite number > 0 ({symbol})")
        for name, value in (("volatility", volatility), ("preset_half_spread_bps", preset_half_spread_bps)):
            if not math.isfinite(value) or value < 0:
                raise OrderValidationError(f"predict {name}={value!r} must be >= 0 ({symbol})")
        return (self.spread_scale(symbol) * preset_half_spread_bps
                + self.impact_scale(symbol) * self.slippage_formula_bps(quantity, volatility, volume))

    def update(self, observations: CostObservation | Iterable[CostObservation]) -> None:
        """Fold fill reports into the per-symbol EWMAs, in the order given. A multiplier learns only from
        fills where the preset predicts a non-zero cost for it (a ratio to zero says nothing)."""
        items = [observations] if isinstance(observations, CostObservation) else observations
        a = self._alpha
        for obs in items:
            state = self._state.setdefault(obs.symbol, _SymbolState())
            if obs.half_spread_bps is not None:
                spread_paid = obs.half_spread_bps
                if obs.preset_half_spread_bps > 0:
                    ratio = obs.half_spread_bps / obs.preset_half_spread_bps
                    state.spread_scale += a * (ratio - state.spread_scale)
            else:
                spread_paid = state.spread_scale * obs.preset_half_spread_bps
            formula = self.slippage_formula_bps(obs.quantity, obs.volatility, obs.volume)
            if formula > 0:
                ratio = max(obs.cost_bps - spread_paid, 0.0) / formula
                state.impact_scale += a * (ratio - state.impact_scale)
            state.n_obs += 1

    # -- persistence -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Canonical, JSON-ready learned state (per-symbol multipliers and counts)."""
        symbols = {s: asdict(st) for s, st in sorted(self._state.items())}
        return {"format_version": STATE_FORMAT_VERSION, "symbols": symbols}

    @staticmethod
    def hash_state(state: Mapping[str, Any]) -> str:
        """SHA-256 of the canonical JSON of ``state`` (sorted keys, no whitespace, floats by repr)."""
        text = json.dumps(state, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def state_hash(self) -> str:
        """Hash of the learned state alone."""
        return self.hash_state(self.state_dict())

    @property
    def cost_hash(self) -> str:
        """Hash of the whole cost truth a run uses: the preset's coefficients and the learned state (the
        ``cost_model_hash`` every run and model carries)."""
        return self.hash_state({"preset": asdict(self.preset), "learned": self.state_dict()})

    def save(self, path: str | Path) -> str:
        """Write the learned state, its format version and hash as JSON, atomically and durably (a reader never
        sees a half-written file; the live loop pays the flush between bars, not in the next bar's durable
        commit); returns the hash."""
        state = self.state_dict()
        digest = self.hash_state(state)
        payload = {"format_version": STATE_FORMAT_VERSION, "sha256": digest, "state": state}
        replace_durably(Path(path), json.dumps(payload, sort_keys=True, indent=1))
        log.info("saved cost model path=%s symbols=%d sha256=%s", path, len(self._state), digest[:12])
        return digest

    @classmethod
    def load(cls, path: str | Path, config: EwmaCostModelConfig, preset: SimulatorConfig,
             expected_sha256: str | None = None) -> EwmaCostModel:
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
        model = cls(config, preset)
        try:
            for symbol, values in state["symbols"].items():
                model._state[str(symbol)] = _SymbolState(float(values["spread_scale"]), float(values["impact_scale"]),
                                                         int(values["n_obs"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"cost model state {path}: bad symbol entry: {exc}") from exc
        log.info("loaded cost model path=%s symbols=%d sha256=%s", path, len(model._state), digest[:12])
        return model
