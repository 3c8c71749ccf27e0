"""Select, validate and fingerprint bars: the one entry point for every consumer of market data."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from ai_trading.data import fingerprint_cache
from ai_trading.data.fingerprint import FingerprintStream, selection_of
from ai_trading.data.frequency import BarFrequency, infer_frequency
from ai_trading.data.memory import check_memory
from ai_trading.data.quality import DataQualityReport, QualityConfig, check_quality, quality_report
from ai_trading.data.schema import BAR_COLUMNS, INDEX_NAMES, symbols_of
from ai_trading.data.sources import BUNDLED, DirectorySource, bundled_source, check_bundled, read_bundled
from ai_trading.data.store import ParquetStore
from ai_trading.data.validation import validate_bars
from ai_trading.errors import ConfigError, DataValidationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    """Which bars to load. ``source`` is ``"bundled"`` or a directory: of per-symbol files
    (``layout="files"``) or a hive-partitioned Parquet store (``layout="parquet_dataset"``, see
    :mod:`ai_trading.data.store`).

    ``max_memory_gb`` caps the memory a load may need (estimated before loading from Parquet footers; null:
    half the memory available when the load starts); ``periods_per_year`` overrides the annualisation
    inferred from the timestamps (see :func:`~ai_trading.data.frequency.infer_frequency`); ``quality`` sets
    the data-quality rule.
    """

    symbols: Sequence[str]
    start: str | None = None
    end: str | None = None
    source: str = "bundled"
    columns: Mapping[str, str] = field(default_factory=dict)
    timestamp_format: str | None = None
    timezone: str = "UTC"
    periods_per_year: float | None = None
    quality: QualityConfig = field(default_factory=QualityConfig)
    layout: Literal["files", "parquet_dataset"] = "files"
    max_memory_gb: float | None = None

    def __post_init__(self) -> None:
        # Everything checkable without reading a bar is checked here, so a mistake fails before data loads.
        if isinstance(self.symbols, str) or not all(isinstance(s, str) for s in self.symbols):
            raise ConfigError(f"data.symbols={self.symbols!r}: must be a list of symbols, e.g. [SP500]")
        if not self.symbols:
            raise DataValidationError("empty_selection", "data.symbols is empty: no symbols selected")
        start, end = _bound(self.start, "data.start"), _bound(self.end, "data.end")
        if start is not None and end is not None and start > end:
            raise DataValidationError("bad_range", f"data.start={self.start} is after data.end={self.end}")
        if self.periods_per_year is not None and not (
                isinstance(self.periods_per_year, int | float) and self.periods_per_year > 0):
            raise ConfigError(f"data.periods_per_year={self.periods_per_year!r}: must be a number > 0 or null")
        if self.layout not in ("files", "parquet_dataset"):
            raise ConfigError(f"data.layout={self.layout!r}: must be files or parquet_dataset")
        if self.layout == "parquet_dataset" and self.source == "bundled":
            raise ConfigError("data.layout=parquet_dataset needs data.source=<store directory>, not bundled (build a "
                              "store with `python -m ai_trading.data.ingest`)")
        if self.max_memory_gb is not None and not (
                isinstance(self.max_memory_gb, int | float) and not isinstance(self.max_memory_gb, bool)
                and self.max_memory_gb > 0):
            raise ConfigError(f"data.max_memory_gb={self.max_memory_gb!r}: must be a number of GB > 0 or null")


def check_available(config: DataConfig) -> None:
    """Every selected symbol is in the source (a bundled symbol, a file in the directory), without reading a
    bar: what a job checks before it opens anything."""
    if (remote := _remote(config)) is not None:
        return remote.check_available()
    if config.source == "bundled":
        for symbol in config.symbols:
            check_bundled(symbol)
    elif config.layout == "parquet_dataset":
        store = ParquetStore(config.source)
        for symbol in config.symbols:
            store.check_symbol(symbol)
    else:
        source = DirectorySource(config.source, config.columns, config.timestamp_format, config.timezone)
        for symbol in config.symbols:
            source.file_for(symbol)


@dataclass(frozen=True)
class Bars:
    """Validated canonical bars with their fingerprint, bar frequency and data-quality report."""

    frame: pd.DataFrame
    fingerprint: str
    frequency: BarFrequency
    quality: DataQualityReport

    @property
    def symbols(self) -> list[str]:
        return symbols_of(self.frame)

    @property
    def selection(self) -> dict[str, Any]:
        return selection_of(self.frame)


def _bound(value: str | None, name: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise DataValidationError("bad_range", f"{name}={value!r} is not a date") from None
    if pd.isna(stamp):
        raise DataValidationError("bad_range", f"{name}={value!r} is not a date")
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


def _stamps_ns(frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(frame.index.get_level_values("timestamp")).as_unit("ns").asi8)


class _ColumnBuffer:
    """Validated bars of each symbol appended one after the other: the five float64 bar columns as the rows of
    one block (which becomes the frame's values, reordered in place) and the int64 ns UTC timestamps apart (freed
    once the rows are placed). A capacity known up front (the row count of Parquet footers) avoids any growth;
    pages past the rows written are never touched, so a capacity above the rows costs no memory."""

    def __init__(self, capacity: int) -> None:
        self.n = 0
        self.ns: npt.NDArray[np.int64] = np.empty(capacity, dtype=np.int64)
        self.block: npt.NDArray[np.float64] = np.empty((len(BAR_COLUMNS), capacity))
        self.segments: dict[str, tuple[int, int]] = {}

    def append(self, symbol: str, part: pd.DataFrame) -> None:
        a, b = self.n, self.n + len(part)
        if b > len(self.ns):
            size = max(b, 2 * len(self.ns))
            ns, block = np.empty(size, dtype=np.int64), np.empty((len(BAR_COLUMNS), size))
            ns[:a], block[:, :a] = self.ns[:a], self.block[:, :a]
            self.ns, self.block = ns, block
        self.ns[a:b] = _stamps_ns(part)
        self.block[:, a:b] = part.to_numpy(dtype=np.float64).T  # validated: the bar columns in order
        self.n = b
        self.segments[symbol] = (a, b)

    def feed(self, stream: FingerprintStream) -> None:
        """Every symbol's bars into ``stream`` in canonical order, as views of the buffers."""
        for symbol in sorted(self.segments):
            a, b = self.segments[symbol]
            stream.update(symbol, self.ns[a:b], self.block[:, a:b])


def _assemble(buffer: _ColumnBuffer) -> pd.DataFrame:
    """The canonical frame (sorted by timestamp then symbol) of the buffer's validated symbols. Each row's
    place comes from counting bars per timestamp (no sort of the rows) and the buffer's block is reordered in
    place, one column at a time through one scratch column: besides the bars, only the row placement, the
    codes and that scratch are alive (the peak stays near 1.5 times the bar columns)."""
    names = sorted(buffer.segments)
    n = buffer.n
    distinct = np.sort(buffer.ns[:n])  # the union of timestamps, each once
    keep = np.empty(n, dtype=bool)
    keep[:1] = True
    np.not_equal(distinct[1:], distinct[:-1], out=keep[1:])
    distinct = distinct[keep]
    del keep
    stamp_code_type = np.int32 if len(distinct) < 2**31 else np.int64
    sym_code_type = np.int16 if len(names) < 2**15 else np.int32
    # A symbol's bars at one timestamp land after those of the symbols before it (names are sorted).
    start = np.zeros(len(distinct) + 1, dtype=np.int64)
    for symbol in names:
        a, b = buffer.segments[symbol]
        start[1:] += np.bincount(np.searchsorted(distinct, buffer.ns[a:b]), minlength=len(distinct))
    np.cumsum(start, out=start)
    source = np.empty(n, dtype=np.int64)  # output row -> buffer row
    stamp_codes = np.empty(n, dtype=stamp_code_type)
    sym_codes = np.empty(n, dtype=sym_code_type)
    for k, symbol in enumerate(names):
        a, b = buffer.segments[symbol]
        codes = np.searchsorted(distinct, buffer.ns[a:b])
        rows = start[codes]  # validated bars hold each timestamp once per symbol
        start[codes] += 1
        source[rows] = np.arange(a, b)
        stamp_codes[rows] = codes
        sym_codes[rows] = k
        del rows, codes
    del start
    buffer.ns = np.empty(0, dtype=np.int64)
    values = buffer.block[:, :n]
    scratch = np.empty(n)
    for j in range(len(BAR_COLUMNS)):
        np.take(values[j], source, out=scratch)
        values[j] = scratch
    del scratch, source
    stamps = pd.DatetimeIndex(distinct.view("M8[ns]")).tz_localize("UTC")
    levels: Any = [stamps, pd.Index(names).astype(str)]  # pandas-stubs type levels/codes as plain sequences
    codes_: Any = [stamp_codes, sym_codes]
    index = pd.MultiIndex(levels=levels, codes=codes_, names=list(INDEX_NAMES), verify_integrity=False)
    return pd.DataFrame(values.T, index=index, columns=list(BAR_COLUMNS), copy=False)


def _reader(config: DataConfig, start: pd.Timestamp | None, end: pd.Timestamp | None) -> tuple[Any, Any]:
    if config.source == "bundled":
        return read_bundled, bundled_source
    if config.layout == "parquet_dataset":
        store = ParquetStore(config.source)
        return (lambda symbol: store.read(symbol, start, end)), (lambda symbol: f"{config.source}/symbol={symbol}")
    directory = DirectorySource(config.source, config.columns, config.timestamp_format, config.timezone)
    return directory.read, lambda symbol: str(directory.file_for(symbol))


def _store_cache_payload(config: DataConfig, start: pd.Timestamp | None,
                         end: pd.Timestamp | None) -> tuple[dict[str, Any], int]:
    """What the fingerprint cache keys a store selection on, and the selection's row count (footers only)."""
    store = ParquetStore(config.source)
    symbols = sorted(set(config.symbols))
    files = store.files(symbols, start, end)
    payload = {"root": str(Path(config.source).resolve()), "symbols": symbols,
               "start": None if start is None else start.isoformat(), "end": None if end is None else end.isoformat(),
               "files": store.file_identity(files)}
    return payload, store.rows(symbols, start, end)


def _preflight_rows(config: DataConfig) -> int | None:
    """Rows a directory of Parquet files holds for the selection (footers only); None when any file is CSV."""
    if config.source == "bundled":
        return None
    directory = DirectorySource(config.source, config.columns, config.timestamp_format, config.timezone)
    paths = [directory.file_for(symbol) for symbol in dict.fromkeys(config.symbols)]
    if any(p.suffix != ".parquet" for p in paths):
        return None
    import pyarrow.parquet as pq  # only Parquet directories need it here

    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def load(config: DataConfig) -> Bars:
    """Load, select and validate bars symbol by symbol; raises :class:`DataValidationError` naming rule and
    place, and :class:`~ai_trading.errors.MemoryBudgetExceeded` before reading when a Parquet selection would
    not fit ``data.max_memory_gb``."""
    if (remote := _remote(config)) is not None:
        config = remote.fetch()
    start, end = _bound(config.start, "data.start"), _bound(config.end, "data.end")
    cached: str | None = None
    payload: dict[str, Any] | None = None
    if config.layout == "parquet_dataset":
        payload, rows = _store_cache_payload(config, start, end)
        check_memory(rows, config.max_memory_gb, what=f"{len(set(config.symbols))} symbols of {config.source}")
        cached = fingerprint_cache.lookup(payload)
        capacity = rows
    else:
        rows_known = _preflight_rows(config)
        if rows_known is not None:
            check_memory(rows_known, config.max_memory_gb, what=f"{len(set(config.symbols))} files of {config.source}")
        capacity = rows_known if rows_known is not None else 0
    reader, file_of = _reader(config, start, end)
    buffer = _ColumnBuffer(capacity)
    for symbol in dict.fromkeys(config.symbols):
        bars = reader(symbol)
        ts = bars.index.get_level_values("timestamp")
        keep = np.ones(len(bars), dtype=bool)
        if start is not None:
            keep &= ts >= start
        if end is not None:
            keep &= ts <= end
        selected = bars[keep] if not keep.all() else bars
        if selected.empty:
            raise DataValidationError("empty_selection", f"no bars between {config.start} and {config.end}",
                                      symbol=symbol, source=config.source)
        # every defect of the file at once; the symbol's frame is dropped once its columns are copied
        buffer.append(symbol, validate_bars(selected, source=file_of(symbol)))
        del bars, ts, keep, selected
    stream = None if cached is not None else FingerprintStream()
    if stream is not None:
        buffer.feed(stream)
    # Every symbol was validated above, and the assembly puts each (timestamp, symbol) once in canonical order:
    # no rule can break across symbols, so the frame is not validated again (that pass would about double the
    # load's peak memory).
    frame = _assemble(buffer)
    del buffer
    index = frame.index
    assert isinstance(index, pd.MultiIndex)
    # The timestamp level holds each timestamp of the frame once: what the frequency counts, without a row-length
    # copy of the timestamps.
    frequency = infer_frequency(pd.DatetimeIndex(index.levels[0]), config.periods_per_year)
    quality = quality_report(frame, frequency)
    for entry in quality.symbols:
        log.info("data quality symbol=%s bars=%d open_equals_prev_close=%.3f zero_volume_bars=%d "
                 "longest_zero_volume_run=%d gaps=%d", entry.symbol, entry.bars, entry.open_equals_prev_close,
                 entry.zero_volume_bars, entry.longest_zero_volume_run, entry.gaps)
    check_quality(quality, config.quality, source=config.source)
    if stream is not None:
        fingerprint = stream.hexdigest()
        if payload is not None:
            fingerprint_cache.store(payload, fingerprint)
    else:
        assert cached is not None
        fingerprint = cached
    log.info("loaded bars rows=%d symbols=%s frequency=%s periods_per_year=%g fingerprint=%s cached=%s", len(frame),
             ",".join(sorted(set(config.symbols))), frequency.label, frequency.periods_per_year, fingerprint[:12],
             cached is not None)
    return Bars(frame=frame, fingerprint=fingerprint, frequency=frequency, quality=quality)


def load_bars(
    symbols: Sequence[str] | str, start: str | None = None, end: str | None = None, source: str = "bundled"
) -> pd.DataFrame:
    """Notebook helper: the validated canonical bars frame of ``symbols``."""
    names = [symbols] if isinstance(symbols, str) else list(symbols)
    return load(DataConfig(symbols=names, start=start, end=end, source=source)).frame


@dataclass(frozen=True)
class RemoteDataConfig(DataConfig, ABC):
    """A source reached over the network (``ai_trading.data.alpaca``): it caches what it downloads as a directory
    of per-symbol Parquet files, and the loader reads, validates and fingerprints that directory like any other."""

    @abstractmethod
    def check_available(self) -> None:
        """What :func:`check_available` checks: the selection is cached, or can be fetched (credentials set)."""

    @abstractmethod
    def fetch(self) -> DataConfig:
        """Download what the cache lacks; the config of the cached directory that holds the selection."""


def _remote(config: DataConfig) -> RemoteDataConfig | None:
    """The remote source ``config`` names: itself (``data=alpaca``), or ``source: alpaca`` on another preset
    with the Alpaca settings at their defaults (``alpaca`` is a reserved source name, like ``bundled``)."""
    if isinstance(config, RemoteDataConfig):
        return config
    if config.source == "alpaca":
        from ai_trading.data.alpaca import AlpacaDataConfig  # it imports this module

        return AlpacaDataConfig.of(config)
    return None


__all__ = ["BUNDLED", "Bars", "DataConfig", "RemoteDataConfig", "check_available", "load", "load_bars"]
