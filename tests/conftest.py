"""Shared fixtures: the composed config, a real MLflow store in tmp, and a real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from pytest_postgresql import factories
from sqlalchemy.engine import make_url

from ai_trading.paths import CONF_DIR

REQUIRE_POSTGRES = os.environ.get("AI_TRADING_REQUIRE_POSTGRES") == "1"
PG_CTL = Path(os.environ.get("AI_TRADING_PG_BIN", "/usr/lib/postgresql/15/bin")) / "pg_ctl"

postgresql_proc = factories.postgresql_proc(executable=str(PG_CTL), port=None)


def compose_config(overrides: list[str] | None = None, config_name: str = "train") -> DictConfig:
    """The real composed config, as the entrypoint sees it."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name=config_name, overrides=overrides or [])


@pytest.fixture(autouse=True)
def _ai_trading_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys, keyring and accepted model versions go to a temp dir per test, never the user's home."""
    monkeypatch.setenv("AI_TRADING_HOME", str(tmp_path_factory.mktemp("ai_trading_home")))
    for name in ("AI_TRADING_SIGNING_KEY", "AI_TRADING_HMAC_KEY", "AI_TRADING_SIGNING_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real MLflow store (SQLite backend) in a temp dir, which is also the working directory so
    MLflow's default artifact root (``./mlruns``) lands there too."""
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _no_server(reason: str) -> None:
    if REQUIRE_POSTGRES:
        pytest.fail(f"AI_TRADING_REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> str:
    """SQLAlchemy URL (psycopg 3) of a PostgreSQL server's admin database.

    ``AI_TRADING_OMS_DSN`` when set (CI starts a throwaway cluster with .ci/start_postgres);
    otherwise a throwaway cluster started here by pytest-postgresql. Without either, PostgreSQL
    tests skip, unless ``AI_TRADING_REQUIRE_POSTGRES=1`` makes that a failure.
    """
    dsn = os.environ.get("AI_TRADING_OMS_DSN", "")
    if dsn.startswith("postgresql"):
        return make_url(dsn).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        _no_server("PostgreSQL will not start as root and AI_TRADING_OMS_DSN is not set "
                   "(eval \"$(.ci/start_postgres)\" starts a cluster as the postgres user)")
    if not request.config.pluginmanager.hasplugin("pytest_postgresql"):
        _no_server("the pytest-postgresql plugin is not loaded (PYTEST_DISABLE_PLUGIN_AUTOLOAD=1) and "
                   "AI_TRADING_OMS_DSN is not set: set it (eval \"$(.ci/start_postgres)\") or add -p pytest_postgresql")
    if not PG_CTL.exists():
        _no_server(f"no PostgreSQL server binaries at {PG_CTL} and AI_TRADING_OMS_DSN is not set")
    proc = request.getfixturevalue("postgresql_proc")
    password = f":{proc.password}" if proc.password else ""
    return f"postgresql+psycopg://{proc.user}{password}@{proc.host}:{proc.port}/postgres"


@pytest.fixture
def postgres_database(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the test server for one test; dropped afterwards."""
    url = make_url(postgres_server)
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how the PostgreSQL-marked tests went, so a CI log shows they ran for real."""
    counts = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        reports = terminalreporter.stats.get(outcome, [])
        counts[outcome] = sum(1 for r in reports if "postgres" in getattr(r, "keywords", {}))
    terminalreporter.write_line(
        "postgres-marked tests: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n) if any(counts.values())
        else "postgres-marked tests: none collected"
    )
