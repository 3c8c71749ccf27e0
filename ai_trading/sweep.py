"""The start and end of a seed sweep: a Hydra callback around one multirun.

``on_multirun_start`` prepares the MLflow store once, before (possibly parallel) jobs write to it, and opens
the sweep's parent run, tagged ``sweep_id`` and ``sweep_role=parent``. Each job finds it by that tag
(:func:`ai_trading.tracking.runs.sweep_parent`, a look-up in the tracking store, which every launcher's
workers share: no file or environment variable has to reach them) and nests its run under it.

The sweep's end reads the seeds back from MLflow, prints the summary table (each seed's agent next to the
baselines on the same window and costs; failed seeds with their error) and logs it to the parent run: the
``summary/`` metrics, ``summary/table.csv`` and ``summary/summary.txt``, and the plots
``plots/equity_seeds.png`` and ``plots/sharpe_seeds.png``. Hydra skips ``on_multirun_end`` when a job
failed (its sweeper re-raises the first job error, or a job ends the process), so the same end also runs at
the process's exit if it has not run yet.

After the summary the same end decides promotion (:mod:`ai_trading.rl.governance`): it checks the seeds
against the ``governance`` group's gates, prints the decision (each criterion's value, threshold and
verdict), logs it to the parent (``governance/decision.json``, tags ``governance.passed`` and
``governance.best_run_id``, ``governance/`` metrics) and acts on it: a passing sweep registers its best seed's
model (:func:`register_best_model`), a failing one registers nothing and emits ``governance_failed``. A
rejection is the sweep's result, not an error of its process; a typed error while reading the runs is
logged with its cause and tagged ``governance.error`` on the parent.
"""

from __future__ import annotations

import atexit
import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ai_trading.artifacts.config import SigningConfig
from ai_trading.artifacts.keys import load_signer
from ai_trading.artifacts.loader import Expectations
from ai_trading.errors import AiTradingError, ProvenanceMismatch
from ai_trading.evaluation.plots import equity_figure, seed_sharpe_figure
from ai_trading.rl.governance import (
    DECISION_ARTIFACT,
    GovernanceConfig,
    GovernanceDecision,
    Register,
    evaluate_governance,
    log_decision,
    promote_best,
    read_sweep,
)
from ai_trading.secrets import mask_override, mask_text
from ai_trading.tracking import TrackingConfig, prepare_store
from ai_trading.tracking.naming import run_name, run_note
from ai_trading.tracking.registry import RegisteredModel, register_champion
from ai_trading.tracking.runs import (
    RunRecord,
    child_runs,
    end_run,
    open_run,
    open_sweep_parent,
    read_artifact_text,
    record_failed_run,
    run_record,
    sweep_parent,
)
from ai_trading.tracking.summary import AGENT, BASELINES, SeedOutcome, SweepTable, summarise
from ai_trading.wiring import expected_provenance, governance_config, signing_config

log = logging.getLogger(__name__)


def sweep_id_of(sweep_dir: str | Path) -> str:
    """The id that tags every run of one multirun: the sweep output folder's name."""
    path = Path(sweep_dir)
    return f"{path.parent.name}__{path.name}"


def _tracking(config: DictConfig) -> TrackingConfig:
    return TrackingConfig(str(config.tracking.tracking_uri), str(config.experiment_name))


def _algo(config: DictConfig) -> str:
    return str(OmegaConf.select(config, "algo.name", default=""))


def _outcome(run: RunRecord) -> SeedOutcome:
    seed = run.tags.get("seed")
    error = None
    if run.status == "KILLED":
        error = f"stopped: {run.tags.get('stop_reason', 'no reason recorded')}"
    elif run.status == "RUNNING":
        error = "still RUNNING at the sweep's end: its job ended without closing the run"
    elif run.status != "FINISHED":
        error = f"{run.tags.get('error_type', 'error')}: {run.tags.get('error_message', 'no message recorded')}"
    return SeedOutcome(name=run.name, status=run.status, metrics=run.metrics, error=error,
                       seed=int(seed) if seed is not None and seed.lstrip("-").isdigit() else None)


def sweep_outcomes(tracking: TrackingConfig, parent_run_id: str) -> list[tuple[RunRecord, SeedOutcome]]:
    """The parent's nested runs and their outcomes, by seed."""
    pairs = [(run, _outcome(run)) for run in child_runs(tracking, parent_run_id)]
    return sorted(pairs, key=lambda p: (p[1].seed if p[1].seed is not None else -1, p[1].name))


def log_summary(tracking: TrackingConfig, parent_run_id: str, summary: SweepTable,
                runs: list[tuple[RunRecord, SeedOutcome]]) -> None:
    """The summary on the parent run: metrics, the table as CSV and text, and the comparison plots."""
    parent = open_run(tracking, parent_run_id)
    parent.log_metrics(summary.metrics)
    parent.log_text(summary.table.to_csv(index=False), "summary/table.csv")
    parent.log_text(summary.text + "\n", "summary/summary.txt")
    finished = [(run, o) for run, o in runs if o.status == "FINISHED"]
    if not finished:
        return
    label = {run.run_id: f"seed{o.seed}" if o.seed is not None else o.name for run, o in finished}
    curves: dict[str, pd.Series] = {}
    baselines: dict[str, pd.Series] = {}
    for run, _ in finished:
        equity = pd.read_csv(io.StringIO(read_artifact_text(tracking, run.run_id, "eval/equity.csv")),
                             index_col="timestamp", parse_dates=True)
        curves[f"{label[run.run_id]} ({AGENT} net)"] = equity[f"{AGENT}/net"]
        for baseline in BASELINES:
            baselines.setdefault(f"{baseline} (net)", equity[f"{baseline}/net"])
    parent.log_figure(equity_figure({**curves, **baselines}, title="Held-out equity per seed against the baselines"),
                      "plots/equity_seeds.png")
    first = finished[0][1].metrics
    parent.log_figure(seed_sharpe_figure(
        {label[run.run_id]: o.metrics.get(f"eval/{AGENT}/net/sharpe", float("nan")) for run, o in finished},
        {b: first.get(f"eval/{b}/net/sharpe", float("nan")) for b in BASELINES}), "plots/sharpe_seeds.png")


def register_best_model(tracking: TrackingConfig, signing: SigningConfig, expected: Expectations, run_id: str,
                        decision: dict[str, Any]) -> RegisteredModel:
    """Register the model of a passing sweep's best seed (run ``run_id``) with its governance ``decision`` as the
    next version of ``ai_trading_{experiment}_{algo}`` (``signing.model_name``), moving ``@champion`` to it and
    ``@previous`` to the former champion: the one place where the sweep's end and ``ai_trading.promote`` hand a
    passing decision to the registry. The model's manifest must verify and show the ``expected`` provenance."""
    tags = run_record(tracking, run_id).tags
    name = signing.registered_name(tags.get("experiment", tracking.experiment_name), tags.get("algo", "model"))
    registered = register_champion(tracking, run_id, model_name=name, decision=decision,
                                   signer=load_signer(signing), config=signing, expected=expected)
    previous = f"v{registered.previous}" if registered.previous is not None else "none"
    print(f"registered models:/{registered.name}@champion = version {registered.version} (run {run_id}; "
          f"@previous = {previous}); its signed manifest is registry/{registered.name}/v{registered.version}/"
          "manifest.json on that run")
    return registered


def check_provenance(tracking: TrackingConfig, parent_run_id: str, expected: Expectations) -> None:
    """Fail fast, before anything is logged, when a finished run of the sweep was trained on other features or
    costs than the job deciding it expects (its ``feature_schema_hash`` / ``cost_model_hash`` tags)."""
    for run in child_runs(tracking, parent_run_id):
        if run.status != "FINISHED":
            continue
        for field, want in (("feature_schema_hash", expected.feature_schema_hash),
                            ("cost_model_hash", expected.cost_model_hash)):
            have = run.tags.get(field, "<not tagged>")
            if want is not None and have != want:
                raise ProvenanceMismatch(field, want, have, where=f"run {run.run_id} ({run.name}): give the "
                                         "features/simulator/cost_model groups the sweep ran with")


def decide(tracking: TrackingConfig, governance: GovernanceConfig, sweep_id: str, parent_run_id: str, *,
           expected: Expectations, register: Register, show: Callable[[str], None],
           artifact_file: str = DECISION_ARTIFACT) -> GovernanceDecision:
    """Governance over a sweep's runs: check their provenance, read the seeds, evaluate the gates, log the
    decision to the parent run (``artifact_file``) and ``show`` its table, then hand a passing decision's best
    run to ``register`` or emit ``governance_failed``. A registration that fails is tagged on the parent
    (``governance.registered=false`` with the error) and raised."""
    check_provenance(tracking, parent_run_id, expected)
    sweep = read_sweep(tracking, parent_run_id)
    decision = evaluate_governance(governance, sweep.seeds, sweep.n_trials, trial_sharpes=sweep.trial_sharpes,
                                   sweep_id=sweep_id)
    if sweep.configuration:
        log.info("governance candidate configuration of sweep %s: %s (of %d trials)", sweep_id, sweep.configuration,
                 sweep.n_trials)
    parent = open_run(tracking, parent_run_id)
    log_decision(parent, decision, artifact_file)
    show(decision.table())
    try:
        promote_best(decision, register=register, run=parent)
    except AiTradingError as exc:
        parent.set_tags({"governance.registered": "false",
                         "governance.registration_error": f"{type(exc).__name__}: {mask_text(str(exc))}"[:5000]})
        raise
    if decision.passed:
        parent.set_tags({"governance.registered": "true"})
    return decision


def _record_failure(config: DictConfig, error_type: str, message: str) -> None:
    """A FAILED run under the sweep's parent for a job that has no run of its own (it failed before opening
    one); a job whose run recorded the failure itself is left as it is."""
    if OmegaConf.select(config, "hydra.mode") != RunMode.MULTIRUN:
        return
    tracking = _tracking(config)
    sweep_id = sweep_id_of(config.hydra.sweep.dir)
    parent = sweep_parent(tracking, sweep_id)
    if parent is None:
        return
    overrides = [mask_override(str(o)) for o in config.hydra.overrides.task]
    if any(run.tags.get("hydra_overrides") == " ".join(overrides) for run in child_runs(tracking, parent)):
        return
    seed = str(OmegaConf.select(config, "seed", default=""))
    record_failed_run(tracking, run_name=run_name(tracking.experiment_name, _algo(config), f"seed{seed}", overrides),
                      parent_run_id=parent, sweep_id=sweep_id, overrides=overrides, seed=seed,
                      error_type=error_type, message=message)
    log.warning("sweep %s job failed before its run opened overrides=%s error=%s", sweep_id, " ".join(overrides),
                error_type)


class SweepSummary(Callback):
    """Opens the sweep's parent run; at the end prints and logs the seeds against the baselines."""

    def __init__(self) -> None:
        self._pending: tuple[TrackingConfig, str, str] | None = None  # (tracking, sweep_id, parent run id)
        self._governance: GovernanceConfig | None = None
        self._signing: SigningConfig | None = None
        self._expected: Expectations | None = None
        self._running: DictConfig | None = None  # the job under way in this process

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        tracking = _tracking(config)
        self._governance = governance_config(config)  # a bad threshold fails before any seed trains
        self._signing = signing_config(config)
        self._expected = expected_provenance(config)
        prepare_store(tracking)
        sweep_id = sweep_id_of(config.hydra.sweep.dir)
        overrides = [mask_override(str(o)) for o in config.hydra.overrides.task]
        parent = open_sweep_parent(tracking, run_name=run_name(tracking.experiment_name, _algo(config), "sweep",
                                                               overrides),
                                   sweep_id=sweep_id, overrides=overrides, note=run_note(overrides, sweep_id=sweep_id))
        self._pending = (tracking, sweep_id, parent)
        atexit.register(self._finish)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._running = config

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """A job that failed before it opened its run still shows in the sweep, as a FAILED run with its error."""
        self._running = None
        if job_return.status == JobStatus.FAILED:
            error = job_return._return_value  # the job's exception: the public accessor re-raises it
            error = error.__cause__ or error  # a typed error arrives wrapped for Hydra's one-line report
            _record_failure(config, type(error).__name__, mask_text(str(error)))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._finish()

    def _finish(self) -> None:
        if self._pending is None:
            return
        tracking, sweep_id, parent = self._pending
        self._pending = None
        atexit.unregister(self._finish)
        if self._running is not None:  # a job ended the process (a typed error exits with one line on stderr)
            _record_failure(self._running, "SystemExit", "the job ended the sweep's process before Hydra recorded "
                            "its result; its error is the last line it printed")
            self._running = None
        runs = sweep_outcomes(tracking, parent)
        summary = summarise(sweep_id, [o for _, o in runs])
        log.info("sweep summary\n%s", summary.text)
        status = "FINISHED"
        try:
            log_summary(tracking, parent, summary, runs)
            self._decide(tracking, sweep_id, parent)
        except BaseException:
            status = "FAILED"
            raise
        finally:
            if summary.finished == 0:
                status = "KILLED" if any(o.status == "KILLED" for _, o in runs) else "FAILED"
            end_run(tracking, parent, status)

    def _decide(self, tracking: TrackingConfig, sweep_id: str, parent: str) -> None:
        assert self._governance is not None  # set with _pending
        assert self._signing is not None
        assert self._expected is not None
        signing, expected = self._signing, self._expected
        try:
            decide(tracking, self._governance, sweep_id, parent, expected=expected,
                   register=lambda run_id, payload: register_best_model(tracking, signing, expected, run_id, payload),
                   show=lambda table: log.info("governance decision\n%s", table))
        except AiTradingError as exc:  # the sweep ran; what could not be decided or registered is reported
            message = mask_text(str(exc))
            log.error("governance of sweep %s did not complete: %s: %s", sweep_id, type(exc).__name__, message)
            open_run(tracking, parent).set_tags({"governance.error": f"{type(exc).__name__}: {message}"[:5000]})
