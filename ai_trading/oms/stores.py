"""Imports every module that defines tables, so ``Base.metadata`` holds the whole schema the migrations
must match (``migrations/env.py`` and ``alembic check`` read it from here)."""

import ai_trading.oms.brokers.paper_tables
import ai_trading.oms.tables  # noqa: F401
