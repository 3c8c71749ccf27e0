"""Every credential variable set to a marker value (tests/secret_markers.py), the real entrypoints run as a user
runs them, and the markers found nowhere they wrote or sent:

- ``python -m ai_trading.live`` on the paper venue, its OMS and venue databases named by AI_TRADING_OMS_DSN /
  AI_TRADING_PAPER_DSN (PostgreSQL: DSNs with marker passwords), a champion signed with the HMAC key, a drawdown
  breach raising critical alerts and rolling the champion back (re-signed in that process), the alerts delivered
  to a signed webhook (answering 503 with Retry-After first) and by e-mail over STARTTLS with AUTH, both real
  servers on 127.0.0.1 needing those credentials;
- ``python -m ai_trading.train`` (tiny budget) signing its model with the Ed25519 key file of
  AI_TRADING_SIGNING_KEY, the DSN variables holding marker passwords.

Scanned: stdout and stderr, every file under the test's directory (Hydra outputs, logs, live state, the SQLite
files, the MLflow store and its artifacts) and AI_TRADING_HOME, each database's rows, MLflow's runs and registry
through its API, every webhook request body and header (the signature header must verify with the secret and
not be the secret), and every e-mail. The webhook secret, the SMTP login and the HMAC and Ed25519 keys are
checked to have been used, so a clean scan is not a scan of a run that never read them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from ai_trading.artifacts.signing import Ed25519Signer
from ai_trading.monitoring.sinks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_webhook_signature
from ai_trading.oms.db import make_engine
from tests.live.conftest import migrate
from tests.live.helpers import fit_strategy, live_cfg, live_overrides, register
from tests.monitoring.servers import make_certificates, tls_smtp_server, webhook_receiver
from tests.secret_markers import (
    CREDENTIAL_ENV,
    OMS_DB_PASSWORD,
    PAPER_DB_PASSWORD,
    SIGNING_SEED,
    SMTP_PASSWORD,
    SMTP_USER,
    WEBHOOK_SECRET,
    SecretScan,
    write_signing_key,
)
from tests.test_train_entrypoint import TINY

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def credentials(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every credential variable set to its marker, in this process and so in the entrypoints it starts; the
    signing key file lives outside the scanned directory (it is the secret). Returns the key file."""
    key = write_signing_key(tmp_path_factory.mktemp("secret_keys") / "signing.key")
    for name, value in CREDENTIAL_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AI_TRADING_SIGNING_KEY", str(key))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    return key


def _pg_url(server: str, role: str, password: str, database: str) -> str:
    return make_url(server).set(username=role, password=password, database=database) \
        .render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live_dsns(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(OMS, venue) DSNs at head: SQLite files, or PostgreSQL databases owned by roles whose passwords are the
    markers (the DSNs carry them)."""
    if request.param == "sqlite":
        oms, venue = f"sqlite:///{tmp_path}/oms.db", f"sqlite:///{tmp_path}/venue.db"
        migrate(oms, venue)
        yield oms, venue
        return
    server = str(request.getfixturevalue("postgres_server"))
    admin = make_url(server).set(drivername="postgresql").render_as_string(hide_password=False)
    tag = uuid.uuid4().hex[:10]
    made = [(f"sec_oms_{tag}", OMS_DB_PASSWORD), (f"sec_venue_{tag}", PAPER_DB_PASSWORD)]
    with psycopg.connect(admin, autocommit=True) as conn:
        for name, password in made:
            conn.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")
            conn.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
    try:
        oms, venue = (_pg_url(server, name, password, name) for name, password in made)
        migrate(oms, venue)
        yield oms, venue
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name, _ in made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def _sink_overrides(hook_url: str, smtp_port: int, ca_file: Path) -> list[str]:
    fast = "{max_attempts:3,backoff_initial_seconds:0.05,backoff_max_seconds:2.0,jitter:0.0}"
    return [f"+alerts.sinks.hook={{type:webhook,url:'{hook_url}',retry:{fast}}}",
            f"+alerts.sinks.mail={{type:email,host:'127.0.0.1',port:{smtp_port},security:starttls,"
            f"from_addr:'alerts@desk.test',to_addrs:['oncall@desk.test'],ca_file:'{ca_file}',retry:{fast}}}",
            "alerts.routes=[{sinks:[log,hook,mail],min_severity:info}]"]


def _scan_common(scan: SecretScan, done: subprocess.CompletedProcess[str], tmp_path: Path, mlflow_uri: str) -> None:
    scan.text("stdout", done.stdout)
    scan.text("stderr", done.stderr)
    assert scan.tree(tmp_path) > 0
    assert list((tmp_path / "outputs").glob("*/*.log")), "the job's log file is among what was scanned"
    scan.tree(Path(os.environ["AI_TRADING_HOME"]))  # keyring, accepted versions
    assert scan.mlflow(mlflow_uri) > 0


@pytest.mark.slow
def test_live_loop_and_alert_delivery_leak_no_credential(credentials: Path, live_dsns: tuple[str, str],
                                                         tmp_path: Path, mlflow_uri: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    oms_dsn, venue_dsn = live_dsns
    monkeypatch.setenv("AI_TRADING_OMS_DSN", oms_dsn)
    monkeypatch.setenv("AI_TRADING_PAPER_DSN", venue_dsn)
    certs = make_certificates(tmp_path / "tls")
    with webhook_receiver([(503, {"Retry-After": "1"})]) as hook, \
            tls_smtp_server(SMTP_USER, SMTP_PASSWORD, certs, "starttls") as mail:
        overrides = [o for o in live_overrides(tmp_path, mlflow_uri) if not o.startswith(("oms.dsn=",
                                                                                            "oms.paper_venue.dsn="))]
        overrides += ["signing.algorithm=hmac-sha256", "alerts.rules.drawdown.max_drawdown=0.0001", "live.bars=40",
                      "alerts.group_window_seconds=0", *_sink_overrides(hook.url, mail.port, certs.ca_file)]
        cfg = live_cfg(overrides)
        assert cfg.oms.dsn == oms_dsn  # from the environment, as a desk sets it
        register(cfg, fit_strategy(cfg, seed=0), run_name="first")
        register(cfg, fit_strategy(cfg, seed=1, gain=2.0), run_name="second")
        done = subprocess.run([sys.executable, "-m", "ai_trading.live", *overrides,
                               f"hydra.run.dir={tmp_path}/outputs/live"], cwd=tmp_path, env=dict(os.environ),
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-4000:]
        # The champion loaded (its HMAC signature verified with the key) and was rolled back (re-signed with it).
        assert "rollbacks=1" in done.stdout
        requests, envelopes = list(hook.requests), list(mail.envelopes)
        assert mail.logins and all(mail.auth_over_tls)
    assert [r.status for r in requests[:2]] == [503, 200] and len(requests) >= 3
    assert len(envelopes) >= 2

    scan = SecretScan()
    _scan_common(scan, done, tmp_path, mlflow_uri)
    assert scan.database(oms_dsn, "oms database") > 0 and scan.database(venue_dsn, "venue database") > 0
    for n, request in enumerate(requests):
        signature = request.headers[SIGNATURE_HEADER]
        assert signature != WEBHOOK_SECRET
        assert verify_webhook_signature(WEBHOOK_SECRET.encode(), request.body, request.headers[TIMESTAMP_HEADER],
                                        signature)  # the secret was used, and only to sign
        scan.bytes(f"webhook request {n} body", request.body)
        scan.text(f"webhook request {n} headers", json.dumps({k: v for k, v in request.headers.items()
                                                              if k != SIGNATURE_HEADER}) + request.path)
    for n, envelope in enumerate(envelopes):
        scan.bytes(f"e-mail {n}", envelope.original_content or b"")
        scan.text(f"e-mail {n} envelope", f"{envelope.mail_from} {envelope.rcpt_tos}")
    scan.assert_clean()


@pytest.mark.slow
def test_training_run_leaks_no_credential(credentials: Path, tmp_path: Path, mlflow_uri: str) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri,
           # never connected by training, but composed into its config (oms.dsn) and so into what it logs
           "AI_TRADING_OMS_DSN": f"postgresql+psycopg://ops:{OMS_DB_PASSWORD}@127.0.0.1:5432/oms",
           "AI_TRADING_PAPER_DSN": f"postgresql+psycopg://ops:{PAPER_DB_PASSWORD}@127.0.0.1:5432/venue"}
    done = subprocess.run([sys.executable, "-m", "ai_trading.train", *TINY, "algo.total_timesteps=512",
                           "algo.hyperparams.n_steps=64", "algo.hyperparams.batch_size=64",
                           f"hydra.run.dir={tmp_path}/outputs/train"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    scan = SecretScan()
    _scan_common(scan, done, tmp_path, mlflow_uri)
    scan.assert_clean()
    key_id = Ed25519Signer(SIGNING_SEED).key_id
    assert f"key_id={key_id} algorithm=ed25519" in done.stderr + done.stdout  # signed with the marker key


def test_the_scan_finds_each_marker_in_files_rows_and_text(tmp_path: Path) -> None:
    """The scanner itself: a marker in a nested file, a database row or a text is found and named."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "run.log").write_text(f"dsn=postgresql://u:{OMS_DB_PASSWORD}@h/db\n")
    (tmp_path / "clean.txt").write_text("nothing here")
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text("create table t (v text)"))
        conn.execute(text("insert into t values (:v)"), {"v": f"x{SMTP_PASSWORD}x"})
    engine.dispose()
    scan = SecretScan()
    assert scan.tree(tmp_path) == 3
    assert scan.database(f"sqlite:///{tmp_path / 'db.sqlite'}", "db") == 1
    scan.text("stderr", f"signature {WEBHOOK_SECRET}")
    scan.bytes("key", SIGNING_SEED)
    found = "\n".join(scan.findings)
    assert "oms dsn password in " + str(tmp_path / "a" / "b" / "run.log") in found
    assert "smtp password in db table t" in found and "webhook secret in stderr" in found
    assert "signing key seed in key" in found
    with pytest.raises(AssertionError, match="secrets leaked"):
        scan.assert_clean()
