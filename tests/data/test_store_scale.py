"""A run on 20 symbols of a 500-symbol Parquet store opens exactly their files in the date window, counted by
the kernel (inotify sees every open, whichever library makes it)."""

from __future__ import annotations

import ctypes
import os
import struct
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ai_trading.data import dataset_fingerprint, load
from ai_trading.data.schema import BAR_COLUMNS, INDEX_NAMES
from ai_trading.data.store import FILE_SCHEMA, PART_NAME
from ai_trading.wiring import train_config
from tests.conftest import compose_config

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="counts file opens with Linux inotify")

SYMBOLS = [f"S{i:03d}" for i in range(500)]
YEARS = (2019, 2020, 2021)
IN_OPEN, IN_Q_OVERFLOW, IN_ISDIR = 0x20, 0x4000, 0x40000000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name


def write_store(root: Path, seed: int = 0) -> tuple[pd.DatetimeIndex, dict[str, np.ndarray]]:
    """``symbol=<S>/year=<Y>/part-0.parquet`` for every symbol and year: business-day bars with valid OHLC,
    written with pyarrow in the store's file schema. Returns the days and each column as (symbol, day)."""
    days = pd.bdate_range(f"{YEARS[0]}-01-01", f"{YEARS[-1]}-12-31", tz="UTC", unit="ns")
    rng = np.random.default_rng(seed)
    shape = (len(SYMBOLS), len(days))
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, shape), axis=1))
    open_ = close * np.exp(rng.normal(0.0, 0.003, shape))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, shape))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, shape))
    volume = rng.integers(1_000, 100_000, shape).astype(np.float64)
    columns = dict(zip(BAR_COLUMNS, (open_, high, low, close, volume), strict=True))
    cuts = np.searchsorted(days.year, (*YEARS, YEARS[-1] + 1))
    stamps = pa.array(days.asi8, type=pa.int64()).cast(FILE_SCHEMA.field("timestamp").type)
    for i, symbol in enumerate(SYMBOLS):
        for year, a, b in zip(YEARS, cuts[:-1], cuts[1:], strict=True):
            folder = root / f"symbol={symbol}" / f"year={year}"
            folder.mkdir(parents=True)
            table = pa.table([stamps[a:b], *(pa.array(columns[c][i, a:b]) for c in BAR_COLUMNS)], schema=FILE_SCHEMA)
            pq.write_table(table, folder / PART_NAME, compression="none")
    return days, columns


@contextmanager
def opened_files(folders: list[Path]) -> Iterator[Counter[Path]]:
    """Every file opened in ``folders`` while the block runs, with how often, whoever opens it (the Parquet
    reader opens files in C++, out of reach of Python's audit hooks). Directory listings are not counted."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    opened: Counter[Path] = Counter()
    try:
        watched = {}
        for folder in folders:
            wd = libc.inotify_add_watch(fd, str(folder).encode(), IN_OPEN)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder}")
            watched[wd] = folder
        yield opened
        while True:
            try:
                buffer = os.read(fd, 1 << 20)
            except BlockingIOError:
                break
            at = 0
            while at < len(buffer):
                wd, mask, _cookie, size = _EVENT.unpack_from(buffer, at)
                name = buffer[at + _EVENT.size:at + _EVENT.size + size].rstrip(b"\0").decode()
                at += _EVENT.size + size
                if mask & IN_Q_OVERFLOW:
                    raise AssertionError("inotify queue overflowed: opens were lost")
                if mask & IN_OPEN and not mask & IN_ISDIR and name:
                    opened[watched[wd] / name] += 1
    finally:
        os.close(fd)


def test_run_on_20_of_500_symbols_opens_only_their_files_in_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AI_TRADING_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "store"
    days, columns = write_store(root)
    files = sorted(root.glob("symbol=*/year=*/*.parquet"))
    assert len(files) == len(SYMBOLS) * len(YEARS) == 1500
    wanted = SYMBOLS[7::25]  # 20 symbols spread over the store
    start, end = "2020-02-03", "2020-11-30"  # inside the middle year: both year bounds prune
    cfg = compose_config(["data=parquet_dataset", f"data.source={root}", f"data.symbols=[{','.join(wanted)}]",
                          f"data.start={start}", f"data.end={end}"])
    with opened_files(sorted({f.parent for f in files})) as opened:
        data = train_config(cfg).research.data  # what the entrypoint builds: checks the symbols exist
        loaded = load(data)

    expected_files = {root / f"symbol={s}" / "year=2020" / PART_NAME for s in wanted}
    assert len(expected_files) == 20
    assert set(opened) == expected_files, (
        f"opened {len(opened)} files: {len(set(opened) - expected_files)} outside the selection, "
        f"{len(expected_files - set(opened))} of it never")
    keep = (days >= pd.Timestamp(start, tz="UTC")) & (days <= pd.Timestamp(end, tz="UTC"))
    picked = [SYMBOLS.index(s) for s in wanted]
    index = pd.MultiIndex.from_product([days[keep], wanted], names=INDEX_NAMES)  # time-major, like the loader
    expected = pd.DataFrame({c: columns[c][picked][:, keep].T.ravel() for c in BAR_COLUMNS}, index=index)
    pd.testing.assert_frame_equal(loaded.frame, expected, check_index_type=False)
    assert loaded.fingerprint == dataset_fingerprint(expected)
