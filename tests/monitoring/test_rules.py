"""Rules and adapters: each source becomes one alert type with the right name, severity, source and dedup key;
live rules fire on a breach, stay quiet below it and resolve once. The composed ``alerts`` group builds the typed
config whose defaults it equals, and a critical alert engages the kill switch when configured."""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import UTC, datetime

import pytest
from omegaconf import OmegaConf
from sqlalchemy import Engine

from ai_trading.errors import ConfigError
from ai_trading.evaluation.slo import EvaluationEvent, EventKind
from ai_trading.evaluation.slo import Severity as SloSeverity
from ai_trading.monitoring.alerts import (
    Acceptance,
    Alert,
    AlertState,
    CostObservation,
    CostSpikeRule,
    DrawdownRule,
    ReconciliationFinding,
    Router,
    Severity,
    SlippageDriftRule,
    alert_from_governance_event,
    alert_from_reconciliation,
    alert_from_slo_event,
)
from ai_trading.monitoring.config import (
    AlertsConfig,
    DeliveryConfig,
    KillSwitchHookConfig,
    LogSinkConfig,
    RouteConfig,
    RulesConfig,
    alerts_config_from_mapping,
)
from ai_trading.monitoring.killswitch import KillSwitch, KillSwitchMode
from ai_trading.rl.governance import GovernanceEvent
from ai_trading.wiring import alerts_config
from tests.conftest import compose_config

RULES = RulesConfig(cost_spike_max_excess_bps=10.0, cost_spike_max_ratio=3.0, slippage_window=4,
                    slippage_min_samples=3, slippage_max_drift_bps=5.0, max_drawdown=0.2)


def test_slo_event_becomes_an_evaluation_alert() -> None:
    event = EvaluationEvent(EventKind.NAN_METRIC, SloSeverity.CRITICAL, "sharpe", math.nan, math.nan,
                            {"result": "ppo"})
    alert = alert_from_slo_event(event, run_id="r1")
    assert (alert.name, alert.severity, alert.source) == ("slo.nan_metric", Severity.CRITICAL, "evaluation")
    assert alert.dedup_key == "slo:nan_metric:sharpe:ppo:r1"
    assert alert.payload["value"] == "nan" and alert.payload["run_id"] == "r1"


def test_governance_failed_becomes_a_governance_alert() -> None:
    event = GovernanceEvent(kind="governance_failed", severity="warning", sweep_id="sw1",
                            reasons=("too few seeds", "pbo 0.6"), decision={"passed": False})
    alert = alert_from_governance_event(event)
    assert (alert.name, alert.severity, alert.source, alert.dedup_key) == (
        "governance_failed", Severity.WARNING, "governance", "governance_failed:sw1")
    assert "too few seeds | pbo 0.6" in alert.summary and alert.payload["decision"] == {"passed": False}


def test_reconciliation_findings_become_oms_alerts() -> None:
    foreign = alert_from_reconciliation(ReconciliationFinding("foreign_order", Severity.CRITICAL, None,
                                                              {"broker_order_id": "B9"}))
    assert (foreign.name, foreign.source, foreign.dedup_key) == ("reconcile.foreign_order", "oms",
                                                                 "reconcile:foreign_order:B9")
    mismatch = alert_from_reconciliation(ReconciliationFinding("state_mismatch", Severity.WARNING, "CIDv2:x",
                                                               {"oms": "ACKED", "broker": "filled"}))
    assert mismatch.dedup_key == "reconcile:state_mismatch:CIDv2:x" and mismatch.payload["detail"]["broker"] == "filled"


@pytest.mark.parametrize(("realised", "predicted", "fires"), [
    (30.0, 5.0, True),     # 30 bps vs 5: +25 bps and 6x
    (14.0, 5.0, False),    # +9 bps: below the excess margin
    (40.0, 20.0, False),   # +20 bps but only 2x
    (11.0, 0.0, True),     # nothing predicted, 11 bps paid
    (-3.0, 5.0, False),    # a price improvement: paid less than nothing
])
def test_cost_spike_needs_both_the_excess_and_the_ratio(realised: float, predicted: float, fires: bool) -> None:
    notional = 1_000_000.0
    obs = CostObservation("cid1", "NVDA", notional, realised * notional / 1e4, predicted * notional / 1e4)
    alert = CostSpikeRule(RULES).check(obs)
    assert (alert is not None) is fires
    if alert is not None:
        assert alert.payload["realised_bps"] == pytest.approx(realised) and alert.source == "execution"


@pytest.mark.parametrize(("key", "value"), [("notional", 0.0), ("notional", -1.0), ("predicted_cost", -1.0),
                                            ("realised_cost", float("nan"))])
def test_cost_observation_refuses_what_no_fill_can_have(key: str, value: float) -> None:
    fields = {"notional": 1_000.0, "realised_cost": 1.0, "predicted_cost": 1.0, key: value}
    with pytest.raises(ConfigError, match=key):
        CostObservation("cid1", "NVDA", **fields)


def test_slippage_drift_fires_once_over_the_window_and_resolves_once() -> None:
    rule = SlippageDriftRule(RULES)
    assert rule.observe(1.0, 9.0) is None and rule.observe(1.0, 9.0) is None  # below min_samples
    fired = rule.observe(1.0, 9.0)
    assert fired is not None and fired.state is AlertState.FIRED and fired.payload["drift_bps"] == pytest.approx(8.0)
    assert rule.observe(1.0, 9.0) is None  # still firing: not raised again
    assert rule.observe(1.0, 1.0) is None  # mean of (8, 8, 8, 0) = 6 > 5
    resolved = rule.observe(1.0, 1.0)  # mean of (8, 8, 0, 0) = 4
    assert resolved is not None and resolved.state is AlertState.RESOLVED and resolved.dedup_key == fired.dedup_key


def test_drawdown_breach_is_critical_and_resolves_on_recovery() -> None:
    rule = DrawdownRule(RULES, strategy="momo")
    assert rule.check([100.0, 110.0, 90.0]) is None  # 18.2% < 20%
    fired = rule.check([100.0, 110.0, 87.0])
    assert fired is not None and fired.severity is Severity.CRITICAL
    assert fired.payload["drawdown"] == pytest.approx(1 - 87 / 110)
    assert rule.check([100.0, 110.0, 86.0]) is None
    resolved = rule.check([100.0, 110.0, 86.0, 100.0])
    assert resolved is not None and resolved.state is AlertState.RESOLVED
    with pytest.raises(ConfigError, match="equity"):
        rule.check([100.0, math.nan])


def test_alert_payload_is_masked_and_json_safe() -> None:
    alert = Alert(name="n", severity=Severity.INFO, source="s", dedup_key="k", summary="x",
                  payload={"dsn": "postgresql://u:hunter2@h/db", "api_key": "abc", "v": math.inf, "t": (1, 2)})
    assert alert.payload == {"dsn": "postgresql://u:***@h/db", "api_key": "***", "v": "inf", "t": [1, 2]}
    assert Alert.from_dict(alert.to_dict()) == alert
    with pytest.raises(ConfigError, match="dedup_key"):
        Alert(name="n", severity=Severity.INFO, source="s", dedup_key="", summary="x")
    with pytest.raises(ConfigError, match="timezone"):
        Alert(name="n", severity=Severity.INFO, source="s", dedup_key="k", summary="x", raised_at=datetime(2026, 1, 1))


def test_composed_alerts_group_builds_the_typed_config_with_python_defaults_equal_to_the_yaml() -> None:
    built = alerts_config(compose_config())  # what an entrypoint builds
    defaults = AlertsConfig(sinks={"log": LogSinkConfig()}, routes=(RouteConfig(sinks=("log",)),))
    assert built == defaults
    assert asdict(built.rules) == asdict(RulesConfig()) and built.delivery == DeliveryConfig()


def test_composed_config_with_a_webhook_sink_and_route() -> None:
    cfg = compose_config(["+alerts.sinks.hook={type:webhook,url:'https://hooks.example.com/x'}",
                          "alerts.routes=[{sinks:[log,hook],min_severity:warning,sources:[live]}]"])
    built = alerts_config(cfg)
    assert built.sinks["hook"].type == "webhook" and built.routes[0].sources == ("live",)
    assert built.routes[0].min_severity is Severity.WARNING


@pytest.mark.parametrize(("patch", "match"), [
    ({"routes": [{"sinks": ["nope"]}]}, "alerts.routes"),
    ({"sinks": {"x": {"type": "pager"}}}, "webhook, email or log"),
    ({"sinks": {"x": {"type": "webhook", "url": "https://h", "secret": "inline"}}}, "unknown key"),
    ({"rules": {"drawdown": {"max_drawdown": 1.5}}}, "max_drawdown"),
    ({"repeat_interval_seconds": -1}, "repeat_interval_seconds"),
    ({"routes": [{"sinks": ["log"], "min_severity": "fatal"}]}, "min_severity"),
])
def test_bad_alerts_config_names_the_key(patch: dict[str, object], match: str) -> None:
    data = OmegaConf.to_container(compose_config().alerts, resolve=True)
    assert isinstance(data, dict)
    with pytest.raises(ConfigError, match=match):
        alerts_config_from_mapping({**data, **patch})


def test_critical_alert_engages_the_kill_switch_when_configured(db_engine: Engine) -> None:
    cfg = AlertsConfig(sinks={"log": LogSinkConfig()}, routes=(RouteConfig(sinks=("log",)),),
                       group_window_seconds=0.0,
                       kill_switch=KillSwitchHookConfig(engage_on_critical=True, mode="reduce_only"))
    router = Router.build(cfg, db_engine, environ={})
    warning = Alert(name="w", severity=Severity.WARNING, source="live", dedup_key="w", summary="s")
    assert router.raise_alert(warning) is Acceptance.QUEUED
    switch = KillSwitch(db_engine)
    assert not switch.state().engaged
    rule = DrawdownRule(RULES, strategy="momo")
    breach = rule.check([100.0, 70.0], at=datetime.now(UTC))
    assert breach is not None
    router.raise_alert(breach)
    state = switch.state()
    assert state.engaged and state.mode is KillSwitchMode.REDUCE_ONLY and state.last is not None
    assert state.last.who == "alerts-router" and "live.drawdown_breach" in state.last.reason
    assert not switch.allow_new_order(reduces_position=False)


def test_critical_alert_leaves_the_switch_alone_by_default(db_engine: Engine) -> None:
    cfg = AlertsConfig(sinks={"log": LogSinkConfig()}, routes=(RouteConfig(sinks=("log",)),))
    Router.build(cfg, db_engine, environ={}).raise_alert(
        Alert(name="c", severity=Severity.CRITICAL, source="live", dedup_key="c", summary="s"))
    assert not KillSwitch(db_engine).state().engaged
