"""Multi-seed promotion gates: does a sweep's agent deserve to be promoted?

A sweep trains one configuration under several seeds (and maybe other configurations too). Each seed's run
logged its out-of-sample backtest net of costs (``eval/rl/net/<metric>``) next to buy-and-hold on the same
window, costs and execution draws (``eval/buy_and_hold/net/<metric>``). :func:`evaluate_governance` checks
the seeds against :class:`GovernanceConfig`'s thresholds and returns a :class:`GovernanceDecision`: pass or
fail, every criterion with its measured value, threshold, comparison and verdict, and the reasons for a
rejection in words a desk reads.

Rules that are decisions, not accidents:

* **Failed seeds** (a run not FINISHED: FAILED, KILLED, still RUNNING) count as seeds that did not deliver:
  ``min_seeds`` counts FINISHED seeds only, the fraction beating buy-and-hold has every seed in its
  denominator, and each failed seed is listed with its error. A sweep whose seeds crash half the time is not
  a model a desk can retrain; averaging only the survivors would hide that. The other statistics (means,
  spread, drawdown, turnover) are over the finished seeds: a failed seed has no backtest to measure.
* **Fewer seeds than ``min_seeds``** is a failed criterion, never a skipped one.
* **The best seed** (the one a passing sweep promotes) is the FINISHED seed with the highest net Sharpe;
  ties go to the smaller max drawdown, then to the lower seed number.
* **The deflated Sharpe ratio** (Bailey and Lopez de Prado, 2014) is that of the best seed's held-out net
  returns against the expected maximum Sharpe of ``n_trials`` zero-skill trials, whose Sharpe variance is
  the sample variance (ddof=1) of the per-period net Sharpe ratios of the trials (every finished run of the
  sweep): picking the best of many backtests inflates its Sharpe, and the DSR is the probability that it is
  real after that selection.
* **Against buy-and-hold** the comparison is on net Sharpe, not on return: the agent's exposure differs from
  buy-and-hold's (it holds cash, or shorts), so a return difference rewards leverage and punishes de-risking;
  the Sharpe difference compares the reward per unit of risk taken, and the absolute money is already gated
  by the mean net return.
* A measured value that is NaN (a metric the runs did not log, a Sharpe undefined on a flat curve) fails its
  criterion and says so.

MLflow is reached only through :mod:`ai_trading.tracking`: :func:`read_sweep` reads a sweep's runs,
:func:`log_decision` and :func:`emit_governance_failed` write to a run through the small sink protocols here.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from ai_trading.errors import ConfigError, EvaluationError
from ai_trading.evaluation.metrics import deflated_sharpe_ratio, returns_from_equity
from ai_trading.tracking.runs import RunRecord, TrackingConfig, child_runs, read_artifact_text
from ai_trading.tracking.summary import AGENT

log = logging.getLogger(__name__)

BENCHMARK = "buy_and_hold"
EQUITY_ARTIFACT = "eval/equity.csv"
DECISION_ARTIFACT = "governance/decision.json"
EVENT_ARTIFACT = "governance/event.json"
METRIC_PREFIX = "governance/"
TAG_PREFIX = "governance."

Comparison = Literal[">=", ">", "<="]


@dataclass(frozen=True)
class GovernanceConfig:
    """The promotion gates' thresholds (``conf/governance/default.yaml`` says why each value). Sharpe ratios
    are annualised and net of costs on the held-out window; returns and drawdowns are fractions; turnover is
    annualised, in multiples of equity traded per year; the deflated Sharpe ratio is a probability."""

    min_seeds: int = 5
    min_mean_sharpe: float = 0.5
    max_sharpe_std: float = 0.5
    min_mean_net_return: float = 0.0
    max_worst_drawdown: float = 0.25
    min_turnover: float = 0.5
    max_turnover: float = 50.0
    min_deflated_sharpe: float = 0.95
    min_excess_sharpe_vs_buy_and_hold: float = 0.0
    min_fraction_beating_buy_and_hold: float = 0.8

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"governance.{f.name}={value!r}: must be a finite number")
        if isinstance(self.min_seeds, float) or self.min_seeds < 1:
            raise ConfigError(f"governance.min_seeds={self.min_seeds!r}: must be an integer >= 1")
        if self.max_sharpe_std < 0:
            raise ConfigError(f"governance.max_sharpe_std={self.max_sharpe_std!r}: must be >= 0")
        if not 0 < self.max_worst_drawdown <= 1:
            raise ConfigError(f"governance.max_worst_drawdown={self.max_worst_drawdown!r}: must be a fraction "
                              "in (0, 1]")
        if not 0 <= self.min_turnover <= self.max_turnover:
            raise ConfigError(f"governance.min_turnover={self.min_turnover!r} and governance.max_turnover="
                              f"{self.max_turnover!r}: need 0 <= min_turnover <= max_turnover")
        for name in ("min_deflated_sharpe", "min_fraction_beating_buy_and_hold"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"governance.{name}={getattr(self, name)!r}: must be a probability in [0, 1]")


def _metric(metrics: Mapping[str, float], strategy: str, name: str) -> float:
    return float(metrics.get(f"eval/{strategy}/net/{name}", math.nan))


@dataclass(frozen=True)
class SeedResult:
    """One seed of the candidate configuration as its run recorded it. ``net_returns`` are the agent's
    held-out per-period net returns (for the deflated Sharpe ratio); ``error`` says why a seed that is not
    FINISHED ended."""

    seed: int | None
    run_id: str
    status: str
    net_sharpe: float = math.nan
    net_return: float = math.nan
    max_drawdown: float = math.nan
    turnover: float = math.nan
    benchmark_sharpe: float = math.nan
    periods_per_year: float = math.nan
    net_returns: tuple[float, ...] = field(default=(), repr=False)
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"

    @property
    def label(self) -> str:
        return f"seed {self.seed}" if self.seed is not None else f"run {self.run_id}"

    @property
    def beats_benchmark(self) -> bool:
        return self.finished and math.isfinite(self.net_sharpe) and math.isfinite(self.benchmark_sharpe) \
            and self.net_sharpe > self.benchmark_sharpe

    @classmethod
    def from_metrics(cls, *, seed: int | None, run_id: str, status: str, metrics: Mapping[str, float],
                     net_returns: Sequence[float] = (), error: str | None = None) -> SeedResult:
        """A seed from the metric names the training job logs (``eval/rl/net/sharpe``, ...)."""
        return cls(seed=seed, run_id=run_id, status=status, net_sharpe=_metric(metrics, AGENT, "sharpe"),
                   net_return=_metric(metrics, AGENT, "total_return"),
                   max_drawdown=_metric(metrics, AGENT, "max_drawdown"), turnover=_metric(metrics, AGENT, "turnover"),
                   benchmark_sharpe=_metric(metrics, BENCHMARK, "sharpe"),
                   periods_per_year=_metric(metrics, AGENT, "periods_per_year"),
                   net_returns=tuple(float(r) for r in net_returns), error=error)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the return series (the run keeps it in ``eval/equity.csv``); NaN as null."""
        return {f.name: _clean(getattr(self, f.name)) for f in fields(self) if f.name != "net_returns"}

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> SeedResult:
        known = {f.name for f in fields(cls)} - {"net_returns"}
        values: dict[str, Any] = {k: (math.nan if v is None and k not in ("seed", "error") else v)
                                  for k, v in payload.items() if k in known}
        return cls(**values)


@dataclass(frozen=True)
class Criterion:
    """One gate: ``value`` measured, ``comparison`` against ``threshold``, ``passed`` or not, and ``reason``
    saying it in desk words."""

    name: str
    value: float
    threshold: float
    comparison: Comparison
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _clean(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> Criterion:
        return cls(name=str(payload["name"]), value=_float(payload["value"]), threshold=_float(payload["threshold"]),
                   comparison=payload["comparison"], passed=bool(payload["passed"]), reason=str(payload["reason"]))


def _clean(value: Any) -> Any:
    """JSON without NaN (not valid JSON): null instead."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class GovernanceDecision:
    """Whether a sweep's agent passes the promotion gates, and why."""

    passed: bool
    criteria: tuple[Criterion, ...]
    seeds: tuple[SeedResult, ...]
    best_seed: int | None
    best_run_id: str | None
    n_trials: int
    config: GovernanceConfig
    sweep_id: str = ""
    decided_at: str = ""

    @property
    def reasons(self) -> list[str]:
        """Why the sweep was rejected: the reason of every failed criterion (empty when it passed)."""
        return [c.reason for c in self.criteria if not c.passed]

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    @property
    def n_finished(self) -> int:
        return sum(s.finished for s in self.seeds)

    @property
    def failed_seeds(self) -> list[SeedResult]:
        return [s for s in self.seeds if not s.finished]

    def criterion(self, name: str) -> Criterion:
        for c in self.criteria:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The decision as JSON-ready data (NaN as null); :meth:`from_dict` reads it back."""
        return {"passed": self.passed, "sweep_id": self.sweep_id, "decided_at": self.decided_at,
                "n_seeds": self.n_seeds, "n_finished": self.n_finished, "n_trials": self.n_trials,
                "best_seed": self.best_seed, "best_run_id": self.best_run_id, "reasons": self.reasons,
                "criteria": [c.to_dict() for c in self.criteria], "seeds": [s.to_dict() for s in self.seeds],
                "thresholds": asdict(self.config)}

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> GovernanceDecision:
        return cls(passed=bool(payload["passed"]), criteria=tuple(Criterion.from_dict(c) for c in payload["criteria"]),
                   seeds=tuple(SeedResult.from_dict(s) for s in payload["seeds"]), best_seed=payload["best_seed"],
                   best_run_id=payload["best_run_id"], n_trials=int(payload["n_trials"]),
                   config=GovernanceConfig(**payload["thresholds"]), sweep_id=str(payload.get("sweep_id", "")),
                   decided_at=str(payload.get("decided_at", "")))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def table(self) -> str:
        """The decision as the sweep and ``ai_trading.promote`` print it: every criterion with its value,
        threshold and verdict, then the failed seeds and the reasons."""
        verdict = "PASSED" if self.passed else f"REJECTED ({len(self.reasons)} of {len(self.criteria)} criteria failed)"
        best = f"best seed {self.best_seed} (run {self.best_run_id})" if self.best_run_id else "no best seed"
        lines = [f"governance {self.sweep_id or '(sweep)'}: {verdict}; {self.n_finished} of {self.n_seeds} seeds "
                 f"finished, {self.n_trials} trials; {best}",
                 f"{'criterion':<34}{'value':>12}  {'threshold':<14}verdict"]
        for c in self.criteria:
            threshold = f"{c.comparison} {_fmt(c.name, c.threshold)}"
            lines.append(f"{c.name:<34}{_fmt(c.name, c.value):>12}  {threshold:<14}{'pass' if c.passed else 'FAIL'}")
        for s in self.failed_seeds:
            lines.append(f"{s.label} {s.status} (run {s.run_id}): {s.error or 'no error recorded'}")
        lines.extend(f"- {reason}" for reason in self.reasons)
        return "\n".join(lines)


_PERCENT = ("mean_net_return", "worst_max_drawdown", "fraction_beating_buy_and_hold")


def _fmt(name: str, value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    if name == "seeds_finished":
        return f"{value:.0f}"
    return f"{value * 100:.1f}%" if name in _PERCENT else f"{value:.3f}"


def _check(value: float, comparison: Comparison, threshold: float) -> bool:
    if not math.isfinite(value):
        return False
    if comparison == ">=":
        return value >= threshold
    if comparison == ">":
        return value > threshold
    return value <= threshold


def _gate(name: str, value: float, comparison: Comparison, threshold: float, ok: str, bad: str,
          missing: str) -> Criterion:
    passed = _check(value, comparison, threshold)
    reason = (ok if passed else bad) if math.isfinite(value) else missing
    return Criterion(name, float(value), float(threshold), comparison, passed, reason)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def best_seed(seeds: Sequence[SeedResult]) -> SeedResult | None:
    """The seed a passing sweep promotes: the FINISHED one with the highest net Sharpe (ties: the smaller max
    drawdown, then the lower seed); None when no finished seed has a Sharpe."""
    candidates = [s for s in seeds if s.finished and math.isfinite(s.net_sharpe)]
    if not candidates:
        return None
    return min(candidates, key=lambda s: (-s.net_sharpe, s.max_drawdown if math.isfinite(s.max_drawdown) else math.inf,
                                          s.seed if s.seed is not None else math.inf))


def _deflated_sharpe(best: SeedResult | None, n_trials: int, trial_sharpes: Sequence[float]) -> tuple[float, str]:
    """The best seed's DSR, or NaN and why it could not be measured."""
    if best is None:
        return math.nan, "no finished seed with a net Sharpe"
    if len(best.net_returns) < 3:
        return math.nan, f"{best.label} has no held-out net return series ({EQUITY_ARTIFACT})"
    if not (math.isfinite(best.periods_per_year) and best.periods_per_year > 0):
        return math.nan, f"{best.label} did not log eval/{AGENT}/net/periods_per_year"
    per_period = [s / math.sqrt(best.periods_per_year) for s in trial_sharpes if math.isfinite(s)]
    variance = float(np.var(per_period, ddof=1)) if len(per_period) > 1 else 0.0
    return deflated_sharpe_ratio(np.asarray(best.net_returns), n_trials, variance), ""


def evaluate_governance(config: GovernanceConfig, seeds: Sequence[SeedResult], n_trials: int, *,
                        trial_sharpes: Sequence[float] | None = None, sweep_id: str = "") -> GovernanceDecision:
    """Check the seeds of one configuration against every gate. ``n_trials`` is how many backtests the
    selection chose among (at least the seeds); ``trial_sharpes`` their annualised net Sharpe ratios (default:
    the finished seeds'), whose spread sets the deflated Sharpe ratio's hurdle."""
    finished = [s for s in seeds if s.finished]
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < max(1, len(seeds)):
        raise EvaluationError(f"n_trials={n_trials!r}: must be an integer >= the {len(seeds)} seeds (and >= 1)")
    sharpes = [s.net_sharpe for s in finished]
    trial_sharpes = list(sharpes if trial_sharpes is None else trial_sharpes)
    n_fin, n_all = len(finished), len(seeds)
    across = f"across {n_fin} seeds"
    nan_note = "; a finished seed did not log it" if any(not math.isfinite(v) for v in sharpes) else ""
    criteria: list[Criterion] = []

    failed_list = ", ".join(f"{s.label} {s.status}" for s in seeds if not s.finished)
    criteria.append(_gate(
        "seeds_finished", float(n_fin), ">=", float(config.min_seeds),
        f"{n_fin} of {n_all} seeds finished, meeting the {config.min_seeds} minimum",
        f"{n_fin} of {n_all} seeds finished, below the {config.min_seeds} minimum"
        + (f" (failed: {failed_list})" if failed_list else ""), "no seeds"))

    mean_sharpe = _mean(sharpes)
    criteria.append(_gate(
        "mean_net_sharpe", mean_sharpe, ">=", config.min_mean_sharpe,
        f"mean net Sharpe {mean_sharpe:.2f} {across} meets the {config.min_mean_sharpe:.2f} minimum",
        f"mean net Sharpe {mean_sharpe:.2f} {across} is below the {config.min_mean_sharpe:.2f} minimum",
        f"mean net Sharpe not measured: no finished seed with a Sharpe{nan_note}"))

    std = float(np.std(sharpes, ddof=1)) if n_fin > 1 else math.nan
    criteria.append(_gate(
        "net_sharpe_std", std, "<=", config.max_sharpe_std,
        f"net Sharpe spread (std) {std:.2f} {across} is within the {config.max_sharpe_std:.2f} maximum",
        f"net Sharpe spread (std) {std:.2f} {across} is above the {config.max_sharpe_std:.2f} maximum: "
        "the result depends on the seed",
        f"net Sharpe spread not measured: needs two finished seeds with a Sharpe, {n_fin} finished{nan_note}"))

    mean_return = _mean([s.net_return for s in finished])
    criteria.append(_gate(
        "mean_net_return", mean_return, ">", config.min_mean_net_return,
        f"mean net return {mean_return:.2%} after costs {across} is above {config.min_mean_net_return:.2%}",
        f"mean net return {mean_return:.2%} after costs {across} is not above {config.min_mean_net_return:.2%}",
        "mean net return not measured: no finished seed logged it"))

    drawdowns = [(s.max_drawdown, s) for s in finished]
    worst_dd, worst_seed = max(drawdowns, key=lambda p: p[0] if math.isfinite(p[0]) else math.inf,
                               default=(math.nan, None))
    where = f" ({worst_seed.label})" if worst_seed is not None else ""
    criteria.append(_gate(
        "worst_max_drawdown", worst_dd, "<=", config.max_worst_drawdown,
        f"worst max drawdown {worst_dd:.1%}{where} is within the {config.max_worst_drawdown:.1%} limit",
        f"worst max drawdown {worst_dd:.1%}{where} exceeds the {config.max_worst_drawdown:.1%} limit",
        f"worst max drawdown not measured{where}: a finished seed did not log it" if n_fin else
        "worst max drawdown not measured: no finished seed"))

    turnovers = [(s.turnover, s) for s in finished]
    low, low_seed = min(turnovers, key=lambda p: p[0] if math.isfinite(p[0]) else -math.inf, default=(math.nan, None))
    high, high_seed = max(turnovers, key=lambda p: p[0] if math.isfinite(p[0]) else math.inf, default=(math.nan, None))
    low_at = f" ({low_seed.label})" if low_seed is not None else ""
    high_at = f" ({high_seed.label})" if high_seed is not None else ""
    criteria.append(_gate(
        "lowest_turnover", low, ">=", config.min_turnover,
        f"lowest turnover {low:.2f}x equity a year{low_at} meets the {config.min_turnover:.2f}x minimum",
        f"lowest turnover {low:.2f}x equity a year{low_at} is below the {config.min_turnover:.2f}x minimum: "
        "the agent barely trades, its result is a static position's",
        f"turnover not measured{low_at}: a finished seed did not log it" if n_fin else
        "turnover not measured: no finished seed"))
    criteria.append(_gate(
        "highest_turnover", high, "<=", config.max_turnover,
        f"highest turnover {high:.2f}x equity a year{high_at} is within the {config.max_turnover:.2f}x maximum",
        f"highest turnover {high:.2f}x equity a year{high_at} is above the {config.max_turnover:.2f}x maximum: "
        "its costs rest on the cost model far beyond what it was fitted on",
        f"turnover not measured{high_at}: a finished seed did not log it" if n_fin else
        "turnover not measured: no finished seed"))

    best = best_seed(seeds)
    dsr, why = _deflated_sharpe(best, n_trials, trial_sharpes)
    of_best = f"of the best seed ({best.label})" if best is not None else "of the best seed"
    criteria.append(_gate(
        "deflated_sharpe", dsr, ">=", config.min_deflated_sharpe,
        f"deflated Sharpe ratio {dsr:.2f} {of_best} given {n_trials} trials meets the "
        f"{config.min_deflated_sharpe:.2f} minimum",
        f"deflated Sharpe ratio {dsr:.2f} {of_best} given {n_trials} trials is below the "
        f"{config.min_deflated_sharpe:.2f} minimum: its Sharpe may be the luck of picking the best of {n_trials}",
        f"deflated Sharpe ratio not measured: {why or 'its Sharpe is undefined (flat returns)'}"))

    excess = _mean([s.net_sharpe - s.benchmark_sharpe for s in finished])
    criteria.append(_gate(
        "excess_sharpe_vs_buy_and_hold", excess, ">", config.min_excess_sharpe_vs_buy_and_hold,
        f"mean net Sharpe excess over buy-and-hold {excess:+.2f} {across} is above "
        f"{config.min_excess_sharpe_vs_buy_and_hold:+.2f}",
        f"mean net Sharpe excess over buy-and-hold {excess:+.2f} {across} is not above "
        f"{config.min_excess_sharpe_vs_buy_and_hold:+.2f}: holding the index does as well",
        "net Sharpe excess over buy-and-hold not measured: a finished seed did not log its or buy-and-hold's "
        "Sharpe" if n_fin else "net Sharpe excess over buy-and-hold not measured: no finished seed"))

    beating = sum(s.beats_benchmark for s in seeds)
    fraction = beating / n_all if n_all else math.nan
    criteria.append(_gate(
        "fraction_beating_buy_and_hold", fraction, ">=", config.min_fraction_beating_buy_and_hold,
        f"{beating} of {n_all} seeds ({fraction:.0%}) beat buy-and-hold's net Sharpe, meeting the "
        f"{config.min_fraction_beating_buy_and_hold:.0%} minimum",
        f"{beating} of {n_all} seeds ({fraction:.0%}) beat buy-and-hold's net Sharpe, below the "
        f"{config.min_fraction_beating_buy_and_hold:.0%} minimum", "no seeds"))

    passed = all(c.passed for c in criteria)
    return GovernanceDecision(passed=passed, criteria=tuple(criteria), seeds=tuple(seeds),
                              best_seed=best.seed if best is not None else None,
                              best_run_id=best.run_id if best is not None else None, n_trials=n_trials,
                              config=config, sweep_id=sweep_id, decided_at=datetime.now(UTC).isoformat())


# ----------------------------------------------------------------------------------------------------
# reading a sweep's runs
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepSeeds:
    """What governance needs of one sweep: the candidate configuration's seeds, and how many trials (every
    run of the sweep) the candidate was chosen among, with their net Sharpe ratios."""

    seeds: tuple[SeedResult, ...]
    n_trials: int
    trial_sharpes: tuple[float, ...]
    configuration: str  # the candidate's overrides other than the seed ("" when the sweep varies only seeds)


def _configuration(run: RunRecord) -> str:
    overrides = run.tags.get("hydra_overrides", "").split()
    return " ".join(sorted(o for o in overrides if o.lstrip("+~").partition("=")[0] != "seed"))


def _error(run: RunRecord) -> str | None:
    if run.status == "FINISHED":
        return None
    if run.status == "KILLED":
        return f"stopped: {run.tags.get('stop_reason', 'no reason recorded')}"
    if run.status == "RUNNING":
        return "still RUNNING: its job ended without closing the run"
    return f"{run.tags.get('error_type', 'error')}: {run.tags.get('error_message', 'no message recorded')}"


def _net_returns(tracking: TrackingConfig, run: RunRecord) -> tuple[float, ...]:
    try:
        text = read_artifact_text(tracking, run.run_id, EQUITY_ARTIFACT)
        equity = pd.read_csv(io.StringIO(text), index_col="timestamp")[f"{AGENT}/net"]
        returns = returns_from_equity(equity.to_numpy(dtype=float))
    except Exception as exc:  # MLflow's, pandas' and the metrics' own errors, named with the run they came from
        raise EvaluationError(f"run {run.run_id} ({run.name}): cannot read its {EQUITY_ARTIFACT} column "
                              f"{AGENT}/net: {type(exc).__name__}: {exc}") from exc
    return tuple(float(r) for r in returns)


def _seed(run: RunRecord) -> int | None:
    seed = run.tags.get("seed")
    return int(seed) if seed is not None and seed.lstrip("-").isdigit() else None


def read_sweep(tracking: TrackingConfig, parent_run_id: str) -> SweepSeeds:
    """The seeds of a sweep's candidate configuration, read from the runs nested under its parent. When the
    sweep varies more than the seed, the runs group by their other overrides (tag ``hydra_overrides``) and the
    candidate is the configuration with the highest mean net Sharpe over its finished seeds; every run of the
    sweep, failed ones too, counts as a trial (each was a backtest the selection could have kept)."""
    runs = child_runs(tracking, parent_run_id)
    if not runs:
        return SweepSeeds(seeds=(), n_trials=1, trial_sharpes=(), configuration="")
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(_configuration(run), []).append(run)

    def score(name: str) -> float:
        values = [_metric(r.metrics, AGENT, "sharpe") for r in groups[name] if r.status == "FINISHED"]
        finite = [v for v in values if math.isfinite(v)]
        return float(np.mean(finite)) if finite else -math.inf

    candidate = max(sorted(groups), key=score)
    seeds = []
    for run in sorted(groups[candidate], key=lambda r: (_seed(r) if _seed(r) is not None else -1, r.name)):
        returns = _net_returns(tracking, run) if run.status == "FINISHED" else ()
        seeds.append(SeedResult.from_metrics(seed=_seed(run), run_id=run.run_id, status=run.status,
                                             metrics=run.metrics, net_returns=returns, error=_error(run)))
    sharpes = tuple(_metric(r.metrics, AGENT, "sharpe") for r in runs if r.status == "FINISHED")
    return SweepSeeds(seeds=tuple(seeds), n_trials=len(runs), trial_sharpes=sharpes, configuration=candidate)


# ----------------------------------------------------------------------------------------------------
# logging, the governance_failed event, promotion
# ----------------------------------------------------------------------------------------------------


class DecisionSink(Protocol):
    """What logging a decision needs of a run (:class:`~ai_trading.tracking.TrackedRun` provides it)."""

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def log_dict(self, payload: dict[str, Any], artifact_file: str) -> None: ...


def log_decision(run: DecisionSink, decision: GovernanceDecision, artifact_file: str = DECISION_ARTIFACT) -> None:
    """The decision on a run (the sweep's parent): the JSON artifact, tags ``governance.passed``,
    ``governance.best_run_id`` (``none`` without one), ``governance.decision`` (the artifact's path) and
    ``governance.reasons``, and metrics ``governance/passed`` plus each criterion's measured value."""
    run.log_dict(decision.to_dict(), artifact_file)
    run.set_tags({f"{TAG_PREFIX}passed": str(decision.passed).lower(),
                  f"{TAG_PREFIX}best_run_id": decision.best_run_id or "none",
                  f"{TAG_PREFIX}decision": artifact_file,
                  f"{TAG_PREFIX}reasons": "; ".join(decision.reasons)[:5000] or "none"})
    metrics = {f"{METRIC_PREFIX}passed": float(decision.passed), f"{METRIC_PREFIX}n_trials": float(decision.n_trials),
               f"{METRIC_PREFIX}criteria_failed": float(len(decision.reasons))}
    metrics.update({f"{METRIC_PREFIX}{c.name}": c.value for c in decision.criteria if math.isfinite(c.value)})
    run.log_metrics(metrics)


class EventSink(Protocol):
    def log_dict(self, payload: dict[str, Any], artifact_file: str) -> None: ...


@dataclass(frozen=True)
class GovernanceEvent:
    """A structured event for the alerts router: ``governance_failed`` when a sweep is rejected. Severity
    ``warning``: nothing trades differently (the champion stays), but the desk asked for a model and did not
    get one."""

    kind: Literal["governance_failed"]
    severity: Literal["warning"]
    sweep_id: str
    reasons: tuple[str, ...]
    decision: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "sweep_id": self.sweep_id,
                "reasons": list(self.reasons), "decision": dict(self.decision)}


def emit_governance_failed(run: EventSink, decision: GovernanceDecision) -> GovernanceEvent:
    """The one door of the ``governance_failed`` event: written as ``governance/event.json`` to the run (the
    sweep's parent) and logged as one WARNING line."""
    event = GovernanceEvent(kind="governance_failed", severity="warning", sweep_id=decision.sweep_id,
                            reasons=tuple(decision.reasons), decision=decision.to_dict())
    run.log_dict(event.to_dict(), EVENT_ARTIFACT)
    log.warning("governance_failed sweep_id=%s criteria_failed=%d reasons=%s", decision.sweep_id,
                len(decision.reasons), " | ".join(decision.reasons))
    return event


Register = Callable[[str, dict[str, Any]], object]  # what it returns (the registered version) is not used


def promote_best(decision: GovernanceDecision, *, register: Register, run: EventSink) -> GovernanceEvent | None:
    """Act on a decision: a passing one hands the best seed's run id and the decision to ``register`` (the
    registry's promotion); a failing one registers nothing and emits ``governance_failed`` (returned)."""
    if decision.passed:
        if decision.best_run_id is None:  # a passing decision always has one: min_seeds >= 1 finished seeds
            raise EvaluationError(f"sweep {decision.sweep_id}: a passing decision without a best run")
        log.info("governance passed sweep_id=%s best_seed=%s best_run_id=%s: registering", decision.sweep_id,
                 decision.best_seed, decision.best_run_id)
        register(decision.best_run_id, decision.to_dict())
        return None
    return emit_governance_failed(run, decision)
