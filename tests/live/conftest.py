from __future__ import annotations

from pathlib import Path

import pytest

from ai_trading.oms.db import make_engine, upgrade_to_head
from tests.live.helpers import live_cfg, live_overrides


def migrate(*dsns: str) -> None:
    for dsn in dsns:
        engine = make_engine(dsn)
        upgrade_to_head(engine)
        engine.dispose()


@pytest.fixture
def sqlite_overrides(tmp_path: Path, mlflow_uri: str) -> list[str]:
    overrides = live_overrides(tmp_path, mlflow_uri)
    migrate(f"sqlite:///{tmp_path}/oms.db", f"sqlite:///{tmp_path}/venue.db")
    live_cfg(overrides)  # composes
    return overrides
