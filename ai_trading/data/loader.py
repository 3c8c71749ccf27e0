"""Select, validate and fingerprint bars: the one entry point for every consumer of market data."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ai_trading.data.fingerprint import dataset_fingerprint, selection_of
from ai_trading.data.frequency import BarFrequency, infer_frequency
from ai_trading.data.quality import DataQualityReport, QualityConfig, check_quality, quality_report
from ai_trading.data.schema import canonicalize, symbols_of
from ai_trading.data.sources import BUNDLED, DirectorySource, bundled_source, check_bundled, read_bundled
from ai_trading.data.validation import validate_bars
from ai_trading.errors import ConfigError, DataValidationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    """Which bars to load. ``source`` is ``"bundled"`` or a directory of per-symbol files.

    ``periods_per_year`` overrides the annualisation inferred from the timestamps (see
    :func:`~ai_trading.data.frequency.infer_frequency`); ``quality`` sets the data-quality rule.
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


def check_available(config: DataConfig) -> None:
    """Every selected symbol is in the source (a bundled symbol, a file in the directory), without reading a
    bar: what a job checks before it opens anything."""
    if (remote := _remote(config)) is not None:
        return remote.check_available()
    if config.source == "bundled":
        for symbol in config.symbols:
            check_bundled(symbol)
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


def load(config: DataConfig) -> Bars:
    """Load, select and validate bars; raises :class:`DataValidationError` naming rule and place."""
    if (remote := _remote(config)) is not None:
        config = remote.fetch()
    start, end = _bound(config.start, "data.start"), _bound(config.end, "data.end")
    if config.source == "bundled":
        reader, file_of = read_bundled, bundled_source
    else:
        directory = DirectorySource(config.source, config.columns, config.timestamp_format, config.timezone)
        reader, file_of = directory.read, lambda symbol: str(directory.file_for(symbol))
    parts = []
    for symbol in dict.fromkeys(config.symbols):
        bars = reader(symbol)
        ts = bars.index.get_level_values("timestamp")
        keep = np.ones(len(bars), dtype=bool)
        if start is not None:
            keep &= ts >= start
        if end is not None:
            keep &= ts <= end
        selected = bars[keep]
        if selected.empty:
            raise DataValidationError("empty_selection", f"no bars between {config.start} and {config.end}",
                                      symbol=symbol, source=config.source)
        parts.append(validate_bars(selected, source=file_of(symbol)))  # every defect of the file at once
    frame = validate_bars(canonicalize(pd.concat(parts)), source=config.source)
    frequency = infer_frequency(pd.DatetimeIndex(frame.index.get_level_values("timestamp")), config.periods_per_year)
    quality = quality_report(frame, frequency)
    for entry in quality.symbols:
        log.info("data quality symbol=%s bars=%d open_equals_prev_close=%.3f zero_volume_bars=%d "
                 "longest_zero_volume_run=%d gaps=%d", entry.symbol, entry.bars, entry.open_equals_prev_close,
                 entry.zero_volume_bars, entry.longest_zero_volume_run, entry.gaps)
    check_quality(quality, config.quality, source=config.source)
    fingerprint = dataset_fingerprint(frame)
    log.info("loaded bars rows=%d symbols=%s frequency=%s periods_per_year=%g fingerprint=%s", len(frame),
             ",".join(sorted(set(config.symbols))), frequency.label, frequency.periods_per_year, fingerprint[:12])
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
