"""Select, validate and fingerprint bars: the one entry point for every consumer of market data."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
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


def _assemble(parts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The canonical frame (sorted by timestamp then symbol) of validated per-symbol parts, built column by
    column and freeing each scratch array as soon as it is used, so that besides the parts and the result
    at most three row-length scratch arrays are alive at once."""
    names = sorted(parts)
    ns = np.concatenate([_stamps_ns(parts[s]) for s in names])
    # Parts are time-sorted and concatenated in symbol order: a stable sort by time gives (time, symbol).
    order = np.argsort(ns, kind="stable")
    values = np.empty((len(BAR_COLUMNS), len(ns)), dtype=np.float64)
    for j, column in enumerate(BAR_COLUMNS):
        np.take(np.concatenate([parts[s][column].to_numpy(dtype=np.float64) for s in names]), order, out=values[j])
    ns = ns[order]
    code_type = np.int16 if len(names) < 2**15 else np.int32
    sym_codes = np.repeat(np.arange(len(names), dtype=code_type), [len(parts[s]) for s in names])[order]
    del order
    new_stamp = np.empty(len(ns), dtype=bool)
    new_stamp[:1] = True
    np.not_equal(ns[1:], ns[:-1], out=new_stamp[1:])
    stamps = pd.DatetimeIndex(ns[new_stamp].view("M8[ns]")).tz_localize("UTC")
    del ns
    stamp_codes = np.cumsum(new_stamp, dtype=np.int32 if len(stamps) < 2**31 else np.int64) - 1
    del new_stamp
    levels: Any = [stamps, pd.Index(names).astype(str)]  # pandas-stubs type levels/codes as plain sequences
    codes: Any = [stamp_codes, sym_codes]
    index = pd.MultiIndex(levels=levels, codes=codes, names=list(INDEX_NAMES), verify_integrity=False)
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
    else:
        rows_known = _preflight_rows(config)
        if rows_known is not None:
            check_memory(rows_known, config.max_memory_gb, what=f"{len(set(config.symbols))} files of {config.source}")
    reader, file_of = _reader(config, start, end)
    parts: dict[str, pd.DataFrame] = {}
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
        parts[symbol] = validate_bars(selected, source=file_of(symbol))  # every defect of the file at once
    stream = None if cached is not None else FingerprintStream()
    if stream is not None:
        for symbol in sorted(parts):
            stream.update_frame(parts[symbol])
    frame = _assemble(parts)
    parts.clear()  # the frame holds the bars now; the parts would double the peak of the checks below
    frame = validate_bars(frame, source=config.source)
    frequency = infer_frequency(pd.DatetimeIndex(frame.index.get_level_values("timestamp")), config.periods_per_year)
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
