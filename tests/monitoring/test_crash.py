"""An alert raised into the outbox and the process SIGKILLed before any delivery is delivered by the next
process, once; a dispatcher killed mid-send leaves its message to be sent again after the lease (at least once).
On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from ai_trading.monitoring.alerts import Alert, Router, Severity
from ai_trading.monitoring.config import DeliveryConfig
from tests.monitoring.servers import webhook_receiver
from tests.monitoring.test_delivery import ENV, Clock, config, webhook

ROOT = Path(__file__).resolve().parents[2]

_RAISE_THEN_HANG = textwrap.dedent("""
    import sys, time
    from ai_trading.monitoring.alerts import Alert, Router, Severity
    from ai_trading.monitoring.config import AlertsConfig, RouteConfig, WebhookConfig
    from ai_trading.oms.db import make_engine

    cfg = AlertsConfig(sinks={"hook": WebhookConfig(url=sys.argv[2])}, routes=(RouteConfig(sinks=("hook",)),),
                       group_window_seconds=0.0)
    router = Router.build(cfg, make_engine(sys.argv[1]))
    router.raise_alert(Alert(name="live.drawdown_breach", severity=Severity.CRITICAL, source="live",
                             dedup_key="drawdown:momo", summary="drawdown 31%"), dispatch=False)
    print("queued", flush=True)
    time.sleep(60)
""")


def test_alert_raised_then_sigkill_before_delivery_is_delivered_after_restart_once(db_dsn: str,
                                                                                    db_engine: Engine) -> None:
    with webhook_receiver() as hook:
        env = {**os.environ, **ENV, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-c", _RAISE_THEN_HANG, db_dsn, hook.url], env=env,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "queued"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        assert hook.requests == []

        restarted = Router.build(config({"hook": webhook(hook.url)}), db_engine, environ=ENV)
        assert restarted.dispatch().delivered == 1
        assert restarted.dispatch().delivered == 0
        second = Router.build(config({"hook": webhook(hook.url)}), db_engine, environ=ENV)  # yet another restart
        assert second.dispatch().delivered == 0
        assert len(hook.requests) == 1
        body = json.loads(hook.requests[0].body)
        assert body["alerts"][0]["dedup_key"] == "drawdown:momo" and body["alerts"][0]["summary"] == "drawdown 31%"
        assert restarted.outbox.counts()["delivered"] == 1


def test_message_claimed_by_a_dead_dispatcher_is_sent_again_after_its_lease(db_engine: Engine) -> None:
    with webhook_receiver() as hook:
        clock = Clock()
        delivery = DeliveryConfig(max_attempts=3, backoff_initial_seconds=1.0, backoff_max_seconds=10.0,
                                  lease_seconds=30.0)
        router = Router.build(config({"hook": webhook(hook.url)}, delivery=delivery), db_engine, environ=ENV,
                              clock=clock)
        router.raise_alert(Alert(name="r", severity=Severity.WARNING, source="oms", dedup_key="k", summary="s"),
                           dispatch=False)
        claimed = router.outbox.claim_due(timedelta(seconds=30))  # a dispatcher claims, then dies before sending
        assert len(claimed) == 1
        assert router.dispatch().delivered == 0  # still leased to the dead dispatcher
        clock.advance(31)
        assert router.dispatch().delivered == 1
        assert len(hook.requests) == 1
        assert router.outbox.rows()[0]["message_id"] == json.loads(hook.requests[0].body)["message_id"]



def test_racing_raisers_queue_one_alert_and_racing_dispatchers_send_it_once(db_engine: Engine) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with webhook_receiver() as hook:
        routers = [Router.build(config({"hook": webhook(hook.url)}), db_engine, environ=ENV) for _ in range(6)]
        same = Alert(name="r", severity=Severity.CRITICAL, source="oms", dedup_key="same", summary="s")
        with ThreadPoolExecutor(len(routers)) as pool:
            outcomes = list(pool.map(lambda r: r.raise_alert(same, dispatch=False), routers))
        assert sorted(outcomes) == sorted(["queued"] + ["repeat"] * 5)
        with ThreadPoolExecutor(len(routers)) as pool:
            delivered = sum(pool.map(lambda r: r.dispatch().delivered, routers))
        assert delivered == 1 and len(hook.requests) == 1
