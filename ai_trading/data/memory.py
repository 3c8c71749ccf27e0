"""Memory pre-flight: how much a bars selection will take in memory, checked against a budget before loading.

The estimate counts what :func:`~ai_trading.data.loader.load` holds at its peak (one symbol's read
buffers, the assembled canonical frame and its scratch column) as a multiple of the frame's
bytes a row; the feature matrix built afterwards is not included. Rows come from Parquet footers, so no
data page is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from ai_trading.errors import ConfigError, MemoryBudgetExceeded

# Bytes one bar takes in the canonical frame: 5 float64 columns, int64 timestamp, symbol code (int64 worst case).
BAR_BYTES: Final = 5 * 8 + 8 + 8
# Peak of a load over the frame it returns: one symbol's Arrow read buffers, the shared column block and its one
# scratch column. benchmarks/bench_scale.py measures the load's peak RSS over the bar columns; this keeps the
# estimate above what it measured, so the check errs towards refusing.
PEAK_FACTOR: Final = 2.0
# Without data.max_memory_gb, a load may take this share of the memory available when it starts.
DEFAULT_AVAILABLE_SHARE: Final = 0.5


def available_memory_bytes() -> int:
    """Memory the kernel says is available now (``MemAvailable`` of /proc/meminfo; elsewhere free pages)."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError) as exc:
        raise ConfigError("cannot tell the available memory on this system: set data.max_memory_gb") from exc


def memory_budget_bytes(max_memory_gb: float | None) -> tuple[int, str]:
    """The budget in bytes and how it was set."""
    if max_memory_gb is not None:
        return int(max_memory_gb * 1e9), f"data.max_memory_gb={max_memory_gb:g}"
    available = available_memory_bytes()
    return int(available * DEFAULT_AVAILABLE_SHARE), (
        f"{DEFAULT_AVAILABLE_SHARE:.0%} of {available / 1e9:.2f} GB available, data.max_memory_gb=null")


def estimate_load_bytes(rows: int, n_features: int = 0) -> int:
    """Peak bytes of loading ``rows`` bars, plus ``n_features`` float32 features on them when given."""
    return int(rows * (BAR_BYTES * PEAK_FACTOR + n_features * 4))


def check_memory(rows: int, max_memory_gb: float | None, *, what: str) -> int:
    """Raise :class:`~ai_trading.errors.MemoryBudgetExceeded` when ``rows`` bars do not fit the budget;
    returns the estimate in bytes."""
    needed = estimate_load_bytes(rows)
    budget, how = memory_budget_bytes(max_memory_gb)
    if needed > budget:
        raise MemoryBudgetExceeded(needed, budget, f"{rows:,} bars of {what} x {BAR_BYTES} bytes x "
                                   f"{PEAK_FACTOR:g} at the peak; budget: {how}")
    return needed


__all__ = ["BAR_BYTES", "PEAK_FACTOR", "available_memory_bytes", "check_memory", "estimate_load_bytes",
           "memory_budget_bytes"]
