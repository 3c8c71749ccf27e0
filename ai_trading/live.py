"""The live/paper loop: ``python -m ai_trading.live`` trades the champion model bar by bar through the OMS.

By default the venue is the durable paper venue (``oms.paper_venue``) fed by the bundled bars replayed as a live
feed, so it runs on a fresh machine without a broker account. Each start

1. refuses an OMS or venue database that is not at the migrations' head (the ``alembic upgrade head`` message);
2. reconciles the OMS with the venue and refuses to trade if that fails (reconciliation findings are alerts);
3. loads ``model`` through the verified loader, expecting this job's ``feature_schema_hash`` and
   ``cost_model_hash`` (a tampered manifest or another feature schema: a typed error, exit 2, nothing traded).

Then, for each bar the venue has not processed yet: the one feature builder on a trailing window of bars (the
spec's warm-up plus the bar: the same values as on the whole history), its schema hash checked against the
manifest, the policy's target weights (:class:`~ai_trading.artifacts.pyfunc.PolicyModel`, bound to the loop's
symbols and feature columns once) turned into units (equity x weight / close), the engine's intents through the
OMS (the kill switch consulted first), the venue moves one bar, fills are synced and learned by the cost model,
and the alert rules run through the router: each new fill's realised cost against the cost model's prediction for
its order (cost spike, simulated-vs-live slippage drift), then the equity's drawdown from its running peak
(restored from the stored fills on restart).
The paper venue fills with its own preset (``venue_simulator``, by default the job's ``simulator``).

The venue's clock is the loop's durable cursor: a bar is done when the venue has processed the next one. A
restart after a crash re-derives the interrupted bar's intents with the same client order ids (the engine's
ids are a function of the bar and the targets), so nothing is sent twice. SIGTERM or Ctrl-C finish the bar,
then the process exits (143 / 130) with one line.

On a critical model alert (live drawdown breach) with ``live.rollback_on_critical`` and a ``models:/<name>@...``
model, ``@champion`` goes back to ``@previous`` through a new signed version
(:mod:`ai_trading.tracking.rollback`), the loop reloads it through the verified loader and an alert says so.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ai_trading.artifacts.config import SigningConfig
from ai_trading.artifacts.loader import Expectations, load_model
from ai_trading.artifacts.pyfunc import PolicyModel
from ai_trading.cli import run_reported
from ai_trading.data import Bars, DataConfig, load
from ai_trading.data.schema import BAR_COLUMNS
from ai_trading.errors import ConfigError, FeatureSchemaMismatch, ReconciliationError
from ai_trading.execution import EwmaCostModel, EwmaCostModelConfig, SimulatorConfig, build_execution
from ai_trading.execution.engine import ExecutionEngine, units_from_weights
from ai_trading.features import FeatureBuilder, FeatureSpec
from ai_trading.interrupts import StopFlag, graceful_interrupts
from ai_trading.monitoring.alerts import Router
from ai_trading.monitoring.config import AlertsConfig
from ai_trading.monitoring.killswitch import KillSwitch
from ai_trading.monitoring.model import Alert, AlertState, Severity
from ai_trading.monitoring.rules import (
    BPS,
    CostObservation,
    CostSpikeRule,
    DrawdownRule,
    ReconciliationFinding,
    SlippageDriftRule,
    alert_from_reconciliation,
)
from ai_trading.oms.brokers.paper import PaperBroker
from ai_trading.oms.config import OmsConfig
from ai_trading.oms.db import make_engine, require_head
from ai_trading.oms.intent_store import IntentStore
from ai_trading.oms.models import OrderIntent, Side
from ai_trading.oms.reconcile import reconcile
from ai_trading.oms.submission import OrderManager
from ai_trading.tracking import TrackingConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveSettings:
    """``conf/live.yaml`` ``live``: ``start`` the first bar (row of the replayed market) the loop trades, at
    least the features' warm-up; ``bars`` how many bars this process trades at most (None: to the end of the
    feed); ``equity`` the starting capital (quote currency); ``state_dir`` where the learned cost-model versions
    go; ``progress_every`` a progress line every so many bars (0: only at the end); ``rollback_on_critical``
    roll the champion back on a critical model alert."""

    start: int
    bars: int | None
    equity: float
    state_dir: str
    progress_every: int
    rollback_on_critical: bool

    def __post_init__(self) -> None:
        for key in ("start", "progress_every"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"live.{key}={value!r}: an integer >= 0")
        if self.bars is not None and (isinstance(self.bars, bool) or not isinstance(self.bars, int) or self.bars < 1):
            raise ConfigError(f"live.bars={self.bars!r}: an integer >= 1 or null")
        if isinstance(self.equity, bool) or not isinstance(self.equity, int | float) or not self.equity > 0:
            raise ConfigError(f"live.equity={self.equity!r}: a number > 0")
        if not isinstance(self.state_dir, str) or not self.state_dir:
            raise ConfigError("live.state_dir: a directory path")
        if not isinstance(self.rollback_on_critical, bool):
            raise ConfigError(f"live.rollback_on_critical={self.rollback_on_critical!r}: true or false")


@dataclass(frozen=True)
class LiveConfig:
    """Every group of ``conf/live.yaml``, typed."""

    model: str
    data: DataConfig
    features: FeatureSpec
    simulator: SimulatorConfig
    venue_simulator: SimulatorConfig
    cost_model: EwmaCostModelConfig
    oms: OmsConfig
    alerts: AlertsConfig
    signing: SigningConfig
    tracking: TrackingConfig
    live: LiveSettings


def live_config(cfg: DictConfig) -> LiveConfig:
    """``conf/live.yaml`` composed -> :class:`LiveConfig` (through the wiring layer's group builders)."""
    from ai_trading.wiring import _group, alerts_config, oms_config, signing_config

    if OmegaConf.is_missing(cfg, "model"):
        raise ConfigError("model is required: model=models:/<name>@champion (or models:/<name>/<version>, "
                          "runs:/<run_id>/model, a model directory)")
    model = cfg.get("model")
    if not isinstance(model, str) or not model:
        raise ConfigError(f"model={model!r}: models:/<name>@champion, models:/<name>/<version>, runs:/<id>/model "
                          "or a model directory")
    values = OmegaConf.to_container(cfg.live, resolve=True)
    if not isinstance(values, dict):
        raise ConfigError("live: a mapping")
    try:
        settings = LiveSettings(**{str(k): v for k, v in values.items()})
    except TypeError as exc:
        raise ConfigError(f"live: {exc}") from None
    return LiveConfig(model=model, data=_group(cfg, "data"), features=_group(cfg, "features"),
                      simulator=_group(cfg, "simulator"), venue_simulator=_group(cfg, "venue_simulator"),
                      cost_model=_group(cfg, "cost_model"), oms=oms_config(cfg),
                      alerts=alerts_config(cfg), signing=signing_config(cfg), tracking=_group(cfg, "tracking"),
                      live=settings)


@dataclass
class LiveStats:
    """What the loop did in this process, and the per-bar timings (seconds) of its parts."""

    bars: int = 0
    orders: int = 0
    fills: int = 0
    alerts: int = 0
    rollbacks: int = 0
    pnl: float = 0.0
    features_s: list[float] = field(default_factory=list)
    policy_s: list[float] = field(default_factory=list)
    commit_s: list[float] = field(default_factory=list)
    decide_s: list[float] = field(default_factory=list)  # bar arrival to orders committed (venue excluded)
    send_s: list[float] = field(default_factory=list)  # the committed orders sent to the venue

    def line(self) -> str:
        return (f"bars={self.bars} orders={self.orders} fills={self.fills} pnl={self.pnl:,.2f} "
                f"alerts={self.alerts} rollbacks={self.rollbacks}")


class LiveLoop:
    """The loop of the module docstring over an opened venue, engine, router and verified model."""

    def __init__(self, config: LiveConfig, bars: Bars, venue: PaperBroker, engine: ExecutionEngine, router: Router,
                 policy: PolicyModel, expected: Expectations) -> None:
        self.config, self.bars, self.venue, self.engine, self.router = config, bars, venue, engine, router
        self.policy, self.expected = policy, expected
        self.builder = FeatureBuilder(config.features)
        self.symbols = list(venue.market.symbols)
        self._column = {s: i for i, s in enumerate(self.symbols)}
        rules, strategy = config.alerts.rules, config.oms.engine.strategy
        self.drawdown = DrawdownRule(rules, strategy=strategy)
        self.cost_spike, self.slippage_drift = CostSpikeRule(rules), SlippageDriftRule(rules, key=strategy)
        self.stats = LiveStats()
        self._fills_at_start = engine.fills_seen
        self._closed: tuple[int, dict[str, Decimal], float, float] | None = None  # the last book(t) taken
        # Each symbol's bars of the feed as one contiguous array (validated once at load), and the row of each
        # feed bar in it (-1: the symbol has no bar then): a bar's trailing window is a slice, no frame per bar.
        frame, feed = bars.frame, pd.DatetimeIndex(venue.market.timestamps)
        self._ohlcv: list[np.ndarray] = []
        self._row_of = np.full((len(feed), len(self.symbols)), -1, dtype=np.int64)
        for i, symbol in enumerate(self.symbols):
            own = frame.xs(symbol, level="symbol")
            self._ohlcv.append(own.to_numpy(np.float64)[:, :len(BAR_COLUMNS)])
            self._row_of[:, i] = pd.DatetimeIndex(own.index).get_indexer(feed)
        self.window = self.builder.spec.warmup + 1
        # Built once: a frame's labels made per bar cost more than the policy's arithmetic.
        self._index = pd.Index(self.symbols, dtype=object, name="symbol")
        self._columns = pd.Index(self.builder.spec.columns, dtype=object)
        self._policy_rows = policy.rows(self.symbols, self.builder.spec.columns)  # names checked once, here
        self._schema_checked: tuple[FeatureSpec, str] | None = None

    # ---- books -------------------------------------------------------------------------------------------
    def book(self, t: int) -> tuple[dict[str, Decimal], float, float]:
        """Filled positions, cash and equity at bar ``t``'s close: the engine's book of the strategy's fills."""
        positions, flow = self.engine.book()
        cash = float(self.config.live.equity) + float(flow)
        self.stats.fills = self.engine.fills_seen - self._fills_at_start
        close = self.venue.market.close[t]
        value = sum(float(q) * float(close[self._column[s]]) for s, q in positions.items())
        self._closed = (t, positions, cash, cash + value)
        return positions, cash, cash + value

    def _book_at_decision(self, t: int) -> tuple[dict[str, Decimal], float, float]:
        # The previous step closed bar t's book and nothing trades between two steps of one loop: no read on
        # the decision path (a fresh loop, or another bar, reads it).
        if self._closed is not None and self._closed[0] == t:
            return self._closed[1], self._closed[2], self._closed[3]
        return self.book(t)

    def restore_peak(self) -> float | None:
        """Replay the drawdown rule over the equity of the bars traded before this process (``live.start`` + 1
        to the venue's clock), from the stored fills and the feed's closes: a restart forgets neither the peak
        nor a breach already raised (it is not raised again, so it cannot roll the model back twice, and it
        resolves when the equity recovers). Returns the peak (None: no bar traded yet)."""
        first, last = self.config.live.start + 1, self.venue.cursor
        if last < first:
            return None
        market = self.venue.market
        moves = np.zeros((last + 1, len(self.symbols)))
        paid = np.zeros(last + 1)
        for stored in self.engine.manager.store.fills_after(0, self.config.oms.engine.strategy):
            # a fill belongs to the first bar at or after its time: the book at that bar's close holds it
            k = int(market.timestamps.searchsorted(pd.Timestamp(stored.fill.timestamp), side="left"))
            if k > last:
                raise ReconciliationError(f"fill {stored.fill.trade_id} at {stored.fill.timestamp} is after the "
                                          f"venue's clock (bar {last}): the OMS and the venue disagree")
            signed = float(stored.fill.quantity) * (1.0 if stored.side is Side.BUY else -1.0)
            moves[k, self._column[stored.symbol]] += signed
            paid[k] += signed * float(stored.fill.price) + float(stored.fill.fee)
        cash = float(self.config.live.equity) - np.cumsum(paid)
        equity = cash + (np.cumsum(moves, axis=0) * market.close[:last + 1]).sum(axis=1)
        for k in range(first, last + 1):
            self.drawdown.observe(float(equity[k]), at=market.timestamps[k].to_pydatetime())
        breach = self.drawdown.firing
        if breach is not None and self.router.outbox.state(breach.dedup_key) is not AlertState.FIRED:
            self.raise_alert(breach)  # the breach came before the crash, its alert did not
        return self.drawdown.peak

    # ---- one bar -----------------------------------------------------------------------------------------
    def features_at(self, t: int) -> pd.DataFrame | None:
        """Feature rows (one per symbol) at bar ``t`` from each symbol's trailing window of the feed; None
        while warming up or when a symbol has no bar at ``t``."""
        values = self._feature_values(t)
        return None if values is None else pd.DataFrame(values, index=self._index, columns=self._columns)

    def _feature_values(self, t: int) -> np.ndarray | None:
        spec, expected = self.builder.spec, self.policy.manifest.feature_schema_hash
        # A spec is immutable: its hash (a digest of its canonical form, dearer than the bar's features) is
        # taken once per spec and model, and compared again whenever either is another object.
        if self._schema_checked is None or self._schema_checked[0] is not spec or self._schema_checked[1] != expected:
            if spec.schema_hash != expected:
                raise FeatureSchemaMismatch("feature_schema_hash", expected, spec.schema_hash)
            self._schema_checked = (spec, expected)
        rows = self._row_of[t]
        if t + 1 < self.window or (rows < self.window - 1).any():
            return None
        window = np.stack([own[r - self.window + 1:r + 1] for own, r in zip(self._ohlcv, rows, strict=True)])
        return self.builder.build_last(window, self.symbols)

    def _decide(self, t: int, ts: datetime, *, dry: bool = False) -> list[OrderIntent] | None:
        """The orders of the decision at bar ``t`` (its close at ``ts``), committed in the OMS and not yet sent;
        None while the features are still warming up. ``dry``: decided the same way, nothing stored or timed
        (:meth:`prime`)."""
        market = self.venue.market
        arrived = time.perf_counter()
        rows = self._feature_values(t)
        built = time.perf_counter()
        if rows is None:
            if not dry:
                self.stats.features_s.append(built - arrived)
            return None
        positions, _cash, equity = self._book_at_decision(t)
        prices = {s: float(market.close[t, i]) for i, s in enumerate(self.symbols)}
        held = np.array([float(positions.get(s, 0)) * prices[s] / equity for s in self.symbols])
        if self._policy_rows.policy is not self.policy:  # another model (a rollback): bound again
            self._policy_rows = self.policy.rows(self.symbols, self.builder.spec.columns)
        weights = self._policy_rows.weights(
            rows, held, equity / float(self.config.live.equity) - 1.0,
            max(0.0, 1.0 - equity / max(self.drawdown.peak or equity, equity)))
        decided = time.perf_counter()
        targets = units_from_weights({s: float(w) for s, w in zip(self.symbols, weights, strict=True)}, equity,
                                     prices)
        if dry:
            return self.engine.preview(targets, prices, ts)
        intents = self.engine.commit(targets, prices, ts)
        committed = time.perf_counter()
        stats = self.stats
        stats.features_s.append(built - arrived)
        stats.policy_s.append(decided - built)
        stats.commit_s.append(committed - decided)
        stats.decide_s.append(committed - arrived)
        return intents

    def prime(self) -> list[OrderIntent] | None:
        """Decide once at the venue's clock without storing, sending or timing an order, before the next bar's
        decision (fills already committed are taken into the books, as any read of them does): the first run of
        the decide path pays what is paid once per process (modules imported on first use, statements
        compiled, caches of the model and the libraries filled), which would otherwise land on that bar's
        latency. Returns the intents that decision would commit now (None: warming up or no bar left)."""
        t = self.venue.cursor
        if t + 1 >= len(self.venue.market.timestamps):
            return None
        return self._decide(t, self.venue.market.timestamps[t].to_pydatetime(), dry=True)

    def step(self) -> bool:
        """Decide at the venue's last processed bar ``t`` (its close), then move the venue to ``t + 1``; False
        when the feed has no bar left."""
        market = self.venue.market
        t = self.venue.cursor
        if t + 1 >= len(market.timestamps):
            return False
        ts = market.timestamps[t].to_pydatetime()
        # No collection between the bar's arrival and its orders' commit: one that falls due waits until the
        # commit, and the send that follows, the venue and the bookkeeping take it.
        collecting = gc.isenabled()
        gc.disable()
        try:
            intents = self._decide(t, ts)
        finally:
            if collecting:
                gc.enable()
        if intents is not None:
            sent = time.perf_counter()
            self.stats.orders += len(self.engine.send(intents, ts))
            self.stats.send_s.append(time.perf_counter() - sent)
        self.venue.advance(1)
        self.engine.manager.sync()
        if self.engine.cost_model is not None:
            self.engine.learn_costs()
        _positions, _cash, equity = self.book(t + 1)
        self.stats.pnl = equity - float(self.config.live.equity)
        self.stats.bars += 1
        self.evaluate_rules(equity, market.timestamps[t + 1].to_pydatetime())
        return True

    # ---- alerts and rollback -------------------------------------------------------------------------------
    def raise_alert(self, alert: Alert) -> None:
        self.router.raise_alert(alert, dispatch=False)
        self.stats.alerts += 1

    def evaluate_rules(self, equity: float, at: Any) -> None:
        """The live rules on the bar just closed: each new fill's cost against the cost model's prediction for
        its order (cost spike, simulated-vs-live slippage drift), then the equity's drawdown."""
        for cost in self.engine.last_fill_costs if self.engine.cost_model is not None else ():
            observed = CostObservation(cost.client_order_id, cost.symbol, cost.notional,
                                       cost.realised_bps * cost.notional / BPS,
                                       cost.predicted_bps * cost.notional / BPS)
            for fill_alert in (self.cost_spike.check(observed),
                               self.slippage_drift.observe(cost.simulated_slippage_bps, cost.live_slippage_bps,
                                                           at=at)):
                if fill_alert is not None:
                    self.raise_alert(fill_alert)
        alert = self.drawdown.observe(equity, at=at)
        if alert is not None:
            self.raise_alert(alert)
            if alert.severity is Severity.CRITICAL and alert.state is AlertState.FIRED:
                self.on_critical_model_alert(alert)
        self.router.dispatch()

    def on_critical_model_alert(self, alert: Alert) -> None:
        cfg = self.config
        if not cfg.live.rollback_on_critical:
            return
        if not cfg.model.startswith("models:/") or "@" not in cfg.model:
            log.error("critical model alert %s: model=%s is not a registry alias; nothing to roll back", alert.name,
                      cfg.model)
            return
        from ai_trading.artifacts.keys import load_signer
        from ai_trading.tracking.rollback import rollback_champion

        name = cfg.model[len("models:/"):].split("@", 1)[0]
        try:
            done = rollback_champion(cfg.tracking, name, reason=f"{alert.name}: {alert.summary}",
                                     signer=load_signer(cfg.signing), config=cfg.signing, expected=self.expected)
        except ConfigError as exc:
            self.raise_alert(Alert(name="live.rollback_failed", severity=Severity.CRITICAL, source="live",
                                   dedup_key=f"rollback_failed:{name}", summary=f"{name}: rollback failed: {exc}",
                                   payload={"model": name, "trigger": alert.name}))
            return
        self.policy = load_policy(cfg, self.expected)
        self.stats.rollbacks += 1
        self.raise_alert(Alert(name="live.model_rolled_back", severity=Severity.CRITICAL, source="live",
                               dedup_key=f"rollback:{name}:{done.version}",
                               summary=f"{name}: champion v{done.replaced} rolled back to the files of "
                                       f"v{done.restored} as v{done.version} after {alert.name}",
                               payload={"model": name, "replaced": done.replaced, "restored": done.restored,
                                        "version": done.version, "trigger": alert.name}))

    def run(self, stop: StopFlag | None = None) -> LiveStats:
        """Step until the feed ends, ``live.bars`` more bars, or a stop signal (the bar in hand is finished);
        the stats count over the loop's life."""
        stop = StopFlag() if stop is None else stop
        every, limit, done = self.config.live.progress_every, self.config.live.bars, 0
        stop.check("opening the live loop")  # asked while the loop opened: no bar is traded, nothing decided
        self.prime()  # the first decision's one-off costs paid now, not on the first bar's latency
        # What start-up built (modules, the model, the bars) lives as long as the loop: frozen out of the
        # collector's generations, a full collection during a bar scans only what the bars allocate.
        # Thawed when the loop ends, so a process that goes on (a test run, a notebook) collects them again.
        gc.collect()
        gc.freeze()
        try:
            while (limit is None or done < limit) and self.step():
                done += 1
                if every and self.stats.bars % every == 0:
                    log.info("live progress %s venue_bar=%d", self.stats.line(), self.venue.cursor)
                stop.check(f"the live loop after bar {self.venue.cursor - 1}")
        finally:
            gc.unfreeze()
        log.info("live done %s", self.stats.line())
        return self.stats


def load_policy(config: LiveConfig, expected: Expectations) -> PolicyModel:
    loaded = load_model(config.model, config.signing, expected, tracking=config.tracking)
    return PolicyModel(loaded.manifest, loaded.model)


def open_loop(config: LiveConfig) -> LiveLoop:
    """Check the databases, open the venue and the OMS, reconcile, load and verify the model: a loop ready to
    trade, or a typed error and nothing traded."""
    oms_db, venue_db = make_engine(config.oms.dsn), make_engine(config.oms.paper_venue.dsn)
    require_head(oms_db, "oms database")
    require_head(venue_db, "paper venue database")
    bars = load(config.data)
    cost_model = EwmaCostModel.from_config(config.cost_model, config.simulator)
    expected = Expectations(feature_schema_hash=config.features.schema_hash, cost_model_hash=cost_model.cost_hash,
                            dataset_fingerprint=None)
    policy = load_policy(config, expected)
    market, _params = build_execution(bars.frame, config.simulator, cost_model, bars.frequency)
    venue = PaperBroker(venue_db, config.venue_simulator, bars.frame, seed=config.oms.paper_venue.seed,
                        frequency=bars.frequency)
    manager = OrderManager(IntentStore(oms_db), venue)
    state_dir = Path(config.live.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    engine = ExecutionEngine(manager, config.oms.engine, cost_model=cost_model, market=market, quotes=venue.market,
                             cost_state_path=state_dir / "cost_state.json", kill_switch=KillSwitch(oms_db))
    router = Router.build(config.alerts, oms_db)
    findings: list[ReconciliationFinding] = []

    def sink(event: Any) -> None:
        findings.append(ReconciliationFinding(event.kind, Severity(event.severity.value), event.cid,
                                              {"detail": event.detail}))
    try:
        report = reconcile(manager, config.oms.foreign_orders, sink=sink)
    finally:
        for finding in findings:
            router.raise_alert(alert_from_reconciliation(finding), dispatch=False)
        router.dispatch()
    if not report.ok:
        raise ReconciliationError(f"reconciliation found critical mismatches {report.counts()}: not trading")
    engine.check_positions()
    loop = LiveLoop(config, bars, venue, engine, router, policy, expected)
    if config.live.start < loop.window - 1:
        raise ConfigError(f"live.start={config.live.start}: the features need {loop.window - 1} bars of warm-up "
                          "before the first traded bar")
    if venue.cursor < config.live.start:
        venue.advance(config.live.start - venue.cursor)  # the bars before the start only warm the features up
    loop.restore_peak()
    log.info("live ready model=%s version=%s venue_bar=%d of %d reconciliation=%s", config.model,
             policy.manifest.version, venue.cursor, len(venue.market.timestamps), report.counts())
    return loop


def run_live(config: LiveConfig, stop: StopFlag | None = None) -> LiveStats:
    loop = open_loop(config)
    stats = loop.run(stop)
    print(f"live: {stats.line()}")
    return stats


@hydra.main(version_base="1.3", config_path="../conf", config_name="live")
def main(cfg: DictConfig) -> float:
    def job() -> float:
        # From the start: a stop asked while the loop opens (reconciliation, model load) trades no bar.
        with graceful_interrupts() as stop:
            return run_live(live_config(cfg), stop).pnl

    return run_reported(job)


if __name__ == "__main__":
    main()
