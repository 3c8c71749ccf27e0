"""Every source of alerts becomes an :class:`~ai_trading.monitoring.model.Alert`: adapters for the events other
packages already emit (evaluation SLO breaches, ``governance_failed``, reconciliation findings) and the live
rules (execution cost spike, simulated-vs-live slippage drift, drawdown breach).

Rules return alerts; they send nothing. The caller hands each alert to the router (the one door).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ai_trading.errors import ConfigError
from ai_trading.evaluation.slo import EvaluationEvent
from ai_trading.monitoring.config import RulesConfig
from ai_trading.monitoring.model import Alert, AlertState, Severity, utc_now

BPS = 1e4


# -- adapters of existing events -----------------------------------------------------------------------------
def alert_from_slo_event(event: EvaluationEvent, *, run_id: str | None = None) -> Alert:
    """An evaluation SLO breach or anomaly (``ai_trading.evaluation.slo``) as an alert of source ``evaluation``."""
    result = str(event.context.get("result", ""))
    key = ":".join(p for p in ("slo", str(event.kind), event.metric, result, run_id or "") if p)
    payload: dict[str, Any] = event.to_dict()
    if run_id is not None:
        payload["run_id"] = run_id
    return Alert(name=f"slo.{event.kind}", severity=Severity(str(event.severity)), source="evaluation",
                 dedup_key=key, summary=f"{event.metric}={event.value:.6g} breaches {event.threshold:.6g}"
                 + (f" ({result})" if result else ""), payload=payload)


class GovernanceEventLike(Protocol):
    """What an alert needs of ``ai_trading.rl.governance.GovernanceEvent`` (duck-typed: no MLflow import here)."""

    @property
    def kind(self) -> str: ...

    @property
    def severity(self) -> str: ...

    @property
    def sweep_id(self) -> str: ...

    @property
    def reasons(self) -> tuple[str, ...]: ...

    def to_dict(self) -> dict[str, Any]: ...


def alert_from_governance_event(event: GovernanceEventLike) -> Alert:
    """``governance_failed`` (a sweep was rejected) as an alert of source ``governance``."""
    return Alert(name=str(event.kind), severity=Severity(str(event.severity)), source="governance",
                 dedup_key=f"{event.kind}:{event.sweep_id}",
                 summary=f"sweep {event.sweep_id} rejected: " + " | ".join(event.reasons), payload=event.to_dict())


@dataclass(frozen=True)
class ReconciliationFinding:
    """One reconciliation finding, whatever produced it: ``kind`` (e.g. ``state_mismatch``, ``foreign_order``,
    ``missing_at_broker``), how bad, the client order id it concerns (None for a foreign order without one) and
    the details (what the OMS holds vs what the broker says)."""

    kind: str
    severity: Severity
    cid: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)


def alert_from_reconciliation(finding: ReconciliationFinding) -> Alert:
    """A reconciliation mismatch or foreign order as an alert of source ``oms``."""
    subject = finding.cid or str(finding.detail.get("broker_order_id", "unknown"))
    return Alert(name=f"reconcile.{finding.kind}", severity=Severity(finding.severity), source="oms",
                 dedup_key=f"reconcile:{finding.kind}:{subject}", summary=f"{finding.kind} for {subject}",
                 payload={"kind": finding.kind, "cid": finding.cid, "detail": dict(finding.detail)})


# -- live rules ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CostObservation:
    """A fill's realised execution cost against the cost model's prediction for that order (currency units; the
    prediction >= 0, the realised cost negative for a price improvement), with the fill's notional so both
    become basis points."""

    cid: str
    symbol: str
    notional: float
    realised_cost: float
    predicted_cost: float

    def __post_init__(self) -> None:
        for key in ("notional", "realised_cost", "predicted_cost"):
            value = getattr(self, key)
            if not math.isfinite(value) or (key != "realised_cost" and value < 0) or (key == "notional" and value == 0):
                raise ConfigError(f"cost observation {self.cid} {key}={value!r}: must be finite"
                                  + {"notional": " and > 0", "predicted_cost": " and >= 0"}.get(key, ""))


class CostSpikeRule:
    """Warns when a fill cost more than predicted by both ``max_excess_bps`` and a factor of ``max_ratio``
    (both: a tiny prediction alone does not make a spike, nor does a small excess on a costly order)."""

    def __init__(self, config: RulesConfig) -> None:
        self.max_excess_bps, self.max_ratio = config.cost_spike_max_excess_bps, config.cost_spike_max_ratio

    def check(self, obs: CostObservation) -> Alert | None:
        realised, predicted = obs.realised_cost / obs.notional * BPS, obs.predicted_cost / obs.notional * BPS
        if realised - predicted <= self.max_excess_bps or realised <= self.max_ratio * predicted:
            return None
        return Alert(name="execution.cost_spike", severity=Severity.WARNING, source="execution",
                     dedup_key=f"cost_spike:{obs.cid}",
                     summary=f"{obs.symbol} {obs.cid}: realised {realised:.2f} bps vs predicted {predicted:.2f} bps",
                     payload={"cid": obs.cid, "symbol": obs.symbol, "realised_bps": realised,
                              "predicted_bps": predicted, "max_excess_bps": self.max_excess_bps,
                              "max_ratio": self.max_ratio})


class SlippageDriftRule:
    """Tracks live minus simulated slippage (bps) over the last ``window`` fills; fires once the mean drift's
    magnitude exceeds ``max_drift_bps`` (with at least ``min_samples``), resolves once it is back within."""

    def __init__(self, config: RulesConfig, *, key: str = "all") -> None:
        self._window: deque[float] = deque(maxlen=config.slippage_window)
        self.min_samples, self.max_drift_bps, self.key = config.slippage_min_samples, config.slippage_max_drift_bps, key
        self._firing: Alert | None = None

    def observe(self, simulated_bps: float, live_bps: float, *, at: datetime | None = None) -> Alert | None:
        if not (math.isfinite(simulated_bps) and math.isfinite(live_bps)):
            raise ConfigError(f"slippage drift {self.key}: slippage must be finite, got simulated={simulated_bps!r} "
                              f"live={live_bps!r}")
        self._window.append(live_bps - simulated_bps)
        if len(self._window) < self.min_samples:
            return None
        drift = sum(self._window) / len(self._window)
        breach = abs(drift) > self.max_drift_bps
        if breach and self._firing is None:
            self._firing = Alert(name="execution.slippage_drift", severity=Severity.WARNING, source="execution",
                                 dedup_key=f"slippage_drift:{self.key}",
                                 summary=f"live slippage drifts {drift:+.2f} bps from simulated over "
                                         f"{len(self._window)} fills (limit {self.max_drift_bps} bps)",
                                 payload={"drift_bps": drift, "samples": len(self._window),
                                          "max_drift_bps": self.max_drift_bps}, raised_at=at or utc_now())
            return self._firing
        if not breach and self._firing is not None:
            firing, self._firing = self._firing, None
            return firing.resolved(f"slippage drift back to {drift:+.2f} bps", at)
        return None


class DrawdownRule:
    """Critical when the live equity's drawdown from its running peak exceeds ``max_drawdown``; resolves when it
    recovers within. :meth:`observe` takes one equity value at a time against :attr:`peak` (the running peak,
    None before the first value; a restarted loop seeds it with the peak of the bars it traded before);
    :meth:`check` takes a whole series."""

    def __init__(self, config: RulesConfig, *, strategy: str, peak: float | None = None) -> None:
        self.max_drawdown, self.strategy = config.max_drawdown, strategy
        if peak is not None:
            self._require_positive([peak])
        self.peak = peak
        self._firing: Alert | None = None

    def _require_positive(self, values: Sequence[float]) -> None:
        if not values or any(not math.isfinite(v) or v <= 0 for v in values):
            raise ConfigError(f"drawdown rule {self.strategy}: equity must be a non-empty series of finite values "
                              "> 0")

    @property
    def firing(self) -> Alert | None:
        """The breach alert raised and not yet resolved."""
        return self._firing

    def observe(self, equity: float, *, at: datetime | None = None) -> Alert | None:
        """One more equity value: the running peak moves up to it, then the drawdown from the peak is checked."""
        value = float(equity)
        self._require_positive([value])
        self.peak = value if self.peak is None else max(self.peak, value)
        return self._evaluate(self.peak, value, at)

    def check(self, equity: Sequence[float], *, at: datetime | None = None) -> Alert | None:
        values = [float(v) for v in equity]
        self._require_positive(values)
        return self._evaluate(max(values), values[-1], at)

    def _evaluate(self, peak: float, last: float, at: datetime | None) -> Alert | None:
        drawdown = 1.0 - last / peak
        breach = drawdown > self.max_drawdown
        if breach and self._firing is None:
            self._firing = Alert(name="live.drawdown_breach", severity=Severity.CRITICAL, source="live",
                                 dedup_key=f"drawdown:{self.strategy}",
                                 summary=f"{self.strategy}: drawdown {drawdown:.2%} exceeds {self.max_drawdown:.2%}",
                                 payload={"strategy": self.strategy, "drawdown": drawdown, "peak": peak,
                                          "equity": last, "max_drawdown": self.max_drawdown},
                                 raised_at=at or utc_now())
            return self._firing
        if not breach and self._firing is not None:
            firing, self._firing = self._firing, None
            return firing.resolved(f"{self.strategy}: drawdown back to {drawdown:.2%}", at)
        return None


__all__ = ["AlertState", "CostObservation", "CostSpikeRule", "DrawdownRule", "GovernanceEventLike",
           "ReconciliationFinding", "SlippageDriftRule", "alert_from_governance_event", "alert_from_reconciliation",
           "alert_from_slo_event"]
