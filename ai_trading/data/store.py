"""A hive-partitioned Parquet store of canonical bars: ``<root>/symbol=<S>/year=<Y>/part-0.parquet``.

Each file holds one symbol's bars of one calendar year (UTC): ``timestamp`` (timestamp[ns, UTC]) and the
five float64 bar columns, sorted by time. Reads go through pyarrow's dataset API with the symbol and the
year range as a partition filter and the date range as a row filter, so a run reads only the files of the
symbols and years it selects. :func:`write_symbol` replaces one symbol's partitions, each atomically (temp
file + rename), and leaves a partition whose bytes would not change untouched (re-runs are idempotent).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ai_trading.data.schema import BAR_COLUMNS
from ai_trading.errors import DataValidationError, UnknownSymbolError

log = logging.getLogger(__name__)

FILE_SCHEMA = pa.schema([("timestamp", pa.timestamp("ns", tz="UTC")), *[(c, pa.float64()) for c in BAR_COLUMNS]])
PARTITIONING = ds.partitioning(pa.schema([("symbol", pa.string()), ("year", pa.int32())]), flavor="hive")
YEAR_PARTITIONING = ds.partitioning(pa.schema([("year", pa.int32())]), flavor="hive")  # within one symbol
# Symbols become directory names: no separators, no '=', nothing a shell or URL would re-encode.
SYMBOL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._^-]*")
PART_NAME = "part-0.parquet"


def check_symbol_name(symbol: str, source: str) -> None:
    """A typed error for a symbol that cannot be a partition directory name."""
    if not SYMBOL_PATTERN.fullmatch(symbol):
        raise DataValidationError("bad_symbol", f"symbol {symbol!r} cannot name a partition: use letters, "
                                  "digits and . _ ^ - (starting with a letter or digit)", symbol=symbol,
                                  source=source)


@dataclass(frozen=True)
class ParquetStore:
    """Bars in a hive-partitioned Parquet directory (see the module docstring)."""

    path: str

    @property
    def root(self) -> Path:
        return Path(self.path)

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise DataValidationError("missing_source", f"Parquet store {self.root} does not exist (build one with "
                                      "`python -m ai_trading.data.ingest`)", source=str(self.root))

    def symbols(self) -> list[str]:
        """Symbols with a partition directory (nothing is read)."""
        self._check_root()
        return sorted(p.name.removeprefix("symbol=") for p in self.root.glob("symbol=*") if p.is_dir())

    def check_symbol(self, symbol: str) -> None:
        """:class:`UnknownSymbolError` when the store holds no file of ``symbol`` (nothing is read)."""
        self._check_root()
        folder = self.root / f"symbol={symbol}"
        if not (SYMBOL_PATTERN.fullmatch(symbol) and any(folder.glob("year=*/*.parquet"))):
            raise UnknownSymbolError("unknown_symbol", f"no partition symbol={symbol} in the Parquet store",
                                     symbol=symbol, source=str(self.root))

    @cached_property
    def _dataset(self) -> ds.Dataset:
        # An explicit schema: discovery lists files but opens none (no schema inference from a first file).
        self._check_root()
        return ds.dataset(self.root, format="parquet", partitioning=PARTITIONING, schema=_dataset_schema())

    def dataset(self) -> ds.Dataset:
        """The store as a pyarrow dataset, its files listed once per :class:`ParquetStore` object."""
        return self._dataset

    @staticmethod
    def partition_filter(symbols: Sequence[str], start: pd.Timestamp | None, end: pd.Timestamp | None) -> ds.Expression:
        """The filter on partition fields alone: which files a selection needs."""
        expr = ds.field("symbol").isin(list(symbols))
        if start is not None:
            expr = expr & (ds.field("year") >= start.year)
        if end is not None:
            expr = expr & (ds.field("year") <= end.year)
        return expr

    def files(self, symbols: Sequence[str], start: pd.Timestamp | None = None,
              end: pd.Timestamp | None = None) -> list[str]:
        """Paths of the files a selection reads, sorted (partition pruning only: nothing is opened)."""
        fragments = self.dataset().get_fragments(filter=self.partition_filter(symbols, start, end))
        return sorted(f.path for f in fragments)

    def rows(self, symbols: Sequence[str], start: pd.Timestamp | None = None,
             end: pd.Timestamp | None = None) -> int:
        """Row count of the selected files from their Parquet footers (no data page is read)."""
        total = 0
        for path in self.files(symbols, start, end):
            try:
                total += pq.ParquetFile(path).metadata.num_rows
            except (pa.ArrowInvalid, OSError) as exc:
                raise DataValidationError("unreadable", f"cannot read the Parquet footer: {exc}",
                                          source=path) from exc
        return total

    def read(self, symbol: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pd.DataFrame:
        """Canonical bars of ``symbol`` between ``start`` and ``end`` (inclusive), unvalidated."""
        self.check_symbol(symbol)
        row_filter = ds.scalar(True)
        if start is not None:
            row_filter = row_filter & (ds.field("year") >= start.year)
        if end is not None:
            row_filter = row_filter & (ds.field("year") <= end.year)
        stamp_type = FILE_SCHEMA.field("timestamp").type
        if start is not None:
            row_filter = row_filter & (ds.field("timestamp") >= pa.scalar(start.as_unit("ns"), stamp_type))
        if end is not None:
            row_filter = row_filter & (ds.field("timestamp") <= pa.scalar(end.as_unit("ns"), stamp_type))
        try:
            # A dataset of the symbol's own directory: the store-wide one keeps what each scan of its fragments
            # read alive for as long as it lives (more than the bars themselves over a whole universe).
            folder = ds.dataset(self.root / f"symbol={symbol}", format="parquet", partitioning=YEAR_PARTITIONING,
                                schema=pa.schema([*FILE_SCHEMA, ("year", pa.int32())]))
            table = folder.to_table(columns=list(FILE_SCHEMA.names), filter=row_filter)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataValidationError("unreadable", f"cannot read the partitions of {symbol}: {exc}", symbol=symbol,
                                      source=str(self.root / f"symbol={symbol}")) from exc
        ns = table.column("timestamp").cast(pa.timestamp("ns")).cast(pa.int64()).to_numpy()
        values = {c: table.column(c).to_numpy() for c in BAR_COLUMNS}
        del table
        if len(ns) > 1 and not bool((ns[1:] >= ns[:-1]).all()):  # files of years read out of order
            order = np.argsort(ns, kind="stable")
            ns = ns[order]
            values = {c: v[order] for c, v in values.items()}
        stamps = pd.DatetimeIndex(ns.view("M8[ns]")).tz_localize("UTC")
        symbols = pd.Index([symbol], dtype=object)
        if len(ns) < 2 or bool((ns[1:] > ns[:-1]).all()):
            # Distinct sorted timestamps are their own level: no hashing of every timestamp to factorize it.
            levels: Any = [stamps, symbols]  # pandas-stubs type levels/codes as plain sequences
            codes: Any = [np.arange(len(ns)), np.zeros(len(ns), dtype=np.int8)]
            index = pd.MultiIndex(levels=levels, codes=codes, names=["timestamp", "symbol"], verify_integrity=False)
        else:  # repeated timestamps: validation names them
            index = pd.MultiIndex.from_arrays([stamps, symbols.repeat(len(ns))], names=["timestamp", "symbol"])
        return pd.DataFrame(values, index=index, columns=list(BAR_COLUMNS))

    def file_identity(self, files: Sequence[str]) -> list[list[object]]:
        """(path relative to the root, size, mtime_ns, ctime_ns, inode) of each file: what the fingerprint
        cache keys on. Any write changes ctime (which no tool can set back), so a changed file never matches."""
        out: list[list[object]] = []
        for path in files:
            st = os.stat(path)
            out.append([os.path.relpath(path, self.root), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
        return out


def _dataset_schema() -> pa.Schema:
    return pa.schema([*FILE_SCHEMA, ("symbol", pa.string()), ("year", pa.int32())])


def _table_bytes(ns: np.ndarray, values: np.ndarray) -> bytes:
    """Parquet bytes of one partition: ``ns`` UTC int64 timestamps, ``values`` the 5 x n bar columns."""
    stamps = pa.array(ns, type=pa.int64()).cast(pa.timestamp("ns")).cast(FILE_SCHEMA.field("timestamp").type)
    table = pa.table([stamps, *(pa.array(np.ascontiguousarray(v)) for v in values)], schema=FILE_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", write_statistics=True)
    return bytes(sink.getvalue())


@dataclass(frozen=True)
class WriteReport:
    """What :func:`write_symbol` did for one symbol."""

    symbol: str
    rows: int
    written: int  # partition files (re)written
    unchanged: int  # partition files already holding the same bytes
    removed: int  # partition files of years no longer in the source
    bytes: int  # size of the symbol's partition files after the write


def write_symbol(root: Path, symbol: str, bars: pd.DataFrame) -> WriteReport:
    """Replace ``symbol``'s partitions under ``root`` by ``bars``: validated canonical bars of that symbol
    alone (:func:`~ai_trading.data.validation.validate_bars`)."""
    check_symbol_name(symbol, str(root))
    index = bars.index
    held = set() if not isinstance(index, pd.MultiIndex) else {
        str(index.levels[1][c]) for c in np.unique(np.asarray(index.codes[1]))}
    if held != {symbol} or tuple(bars.columns) != BAR_COLUMNS:
        raise DataValidationError("schema", f"write_symbol needs canonical bars of {symbol} alone, got symbols "
                                  f"{sorted(held)} and columns {list(bars.columns)}", symbol=symbol, source=str(root))
    ns = np.asarray(pd.DatetimeIndex(index.get_level_values("timestamp")).as_unit("ns").asi8)
    values = bars.to_numpy(dtype=np.float64).T
    years = np.asarray(pd.DatetimeIndex(ns.view("M8[ns]")).year)
    cuts = [0, *(np.flatnonzero(years[1:] != years[:-1]) + 1).tolist(), len(ns)]  # bars are time-sorted
    folder = root / f"symbol={symbol}"
    written = unchanged = size = 0
    kept: set[Path] = set()
    for a, b in itertools.pairwise(cuts):
        part = folder / f"year={int(years[a])}" / PART_NAME
        data = _table_bytes(ns[a:b], values[:, a:b])
        kept.add(part)
        size += len(data)
        if part.is_file() and part.stat().st_size == len(data) and part.read_bytes() == data:
            unchanged += 1
            continue
        part.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".part-", suffix=".tmp", dir=part.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, part)  # atomic: a reader sees the old file or the new one, never half of one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written += 1
    removed = 0
    for stale in sorted(folder.glob("year=*/*.parquet")):
        if stale not in kept:
            stale.unlink()
            removed += 1
            if not any(stale.parent.iterdir()):
                stale.parent.rmdir()
    return WriteReport(symbol, len(bars), written, unchanged, removed, size)


__all__ = ["FILE_SCHEMA", "PARTITIONING", "ParquetStore", "WriteReport", "check_symbol_name", "write_symbol"]
