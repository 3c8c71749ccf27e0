"""Historical bars from Alpaca's market-data API v2, cached as Parquet and then loaded like any directory.

``data=alpaca data.symbols=[SPY] data.start=2024-01-01 data.end=2024-07-01`` (or ``data.source=alpaca`` on
another preset, with these settings at their defaults) downloads each symbol's bars
that the cache lacks (``GET {data_url}/v2/stocks/bars?symbols=SPY&timeframe=1Day&start=...&end=...``, paged by
``next_page_token``, retried on timeouts, 5xx and 429 as :mod:`ai_trading.rest` describes), writes them to

    {cache_dir}/bars/{feed}/{adjustment}/{timeframe}/{start}_{end}/{SYMBOL}.parquet

(start and end as ``YYYYMMDDTHHMMSSZ``; columns ``timestamp`` (UTC), ``open`` ... ``volume``, ``trade_count``,
``vwap``), and hands that directory to the loader, which validates and fingerprints it exactly as it would a
user's directory of Parquet files. A cached file is never fetched again, so the range must be closed:
``data.start`` and ``data.end`` are required and ``data.end`` must be before today (UTC). A file is written
whole (temporary file, then rename) so an interrupted download leaves nothing behind. Deleting the cache is
always safe.

``cache_dir`` null means ``$AI_TRADING_CACHE_DIR/alpaca``, else ``$XDG_CACHE_HOME/ai_trading/alpaca``, else
``~/.cache/ai_trading/alpaca``. Keys are needed only to download: ``APCA_API_KEY_ID`` and
``APCA_API_SECRET_KEY`` unless ``key_id_env`` / ``secret_key_env`` name other variables.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from ai_trading.data.loader import DataConfig, RemoteDataConfig
from ai_trading.errors import ConfigError, DataValidationError
from ai_trading.rest import RestClient, RestError, check_rest_settings, credentials_from_env

log = logging.getLogger(__name__)

PAGE_LIMIT = 10_000  # Alpaca's maximum bars per page
_TIMEFRAME = re.compile(r"[1-9][0-9]*(Min|Hour|Day|Week|Month)")
_FIELDS = {"t": "timestamp", "o": "open", "h": "high", "l": "low", "c": "close", "v": "volume",
           "n": "trade_count", "vw": "vwap"}
_REQUIRED = ("t", "o", "h", "l", "c", "v")


def default_cache_dir() -> Path:
    """Where downloaded bars live when ``data.cache_dir`` is null."""
    explicit = os.environ.get("AI_TRADING_CACHE_DIR")
    if explicit:
        return Path(explicit) / "alpaca"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ai_trading" / "alpaca"


def _utc(value: str | None, name: str) -> pd.Timestamp:
    if value is None:
        raise ConfigError(f"{name} is required for data=alpaca: the cache holds closed ranges (e.g. {name}=2024-01-01)")
    stamp = pd.Timestamp(value)  # DataConfig already refused a value that is not a date
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


def _compact(stamp: pd.Timestamp) -> str:
    return stamp.strftime("%Y%m%dT%H%M%SZ")


def _rfc3339(stamp: pd.Timestamp) -> str:
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class AlpacaDataConfig(RemoteDataConfig):
    """Bars of US stocks from Alpaca (``conf/data/alpaca.yaml``; see the module docstring for the cache).

    ``timeframe`` is Alpaca's (``1Day``, ``1Hour``, ``15Min``, ...); ``feed`` ``sip`` (all US exchanges; free
    accounts get it except the latest 15 minutes) or ``iex`` (one exchange's trades only); ``adjustment`` ``raw``,
    ``split``, ``dividend`` or ``all``.
    """

    source: str = "alpaca"
    timeframe: str = "1Day"
    feed: Literal["sip", "iex"] = "sip"
    adjustment: Literal["raw", "split", "dividend", "all"] = "split"
    cache_dir: str | None = None
    data_url: str = "https://data.alpaca.markets"
    key_id_env: str = "APCA_API_KEY_ID"
    secret_key_env: str = "APCA_API_SECRET_KEY"
    connect_timeout: float = 3.05
    read_timeout: float = 30.0
    max_retries: int = 5
    backoff_seconds: float = 0.5
    max_wait_seconds: float = 60.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source != "alpaca":
            raise ConfigError(f"data.source={self.source!r}: the alpaca preset reads from Alpaca (source: alpaca); "
                              "for a directory use data=directory")
        _utc(self.start, "data.start")
        end = _utc(self.end, "data.end")
        today = pd.Timestamp.now(tz="UTC").normalize()
        if end >= today:
            raise ConfigError(f"data.end={self.end}: must be before today ({today.date()} UTC), so the cached range "
                              "is complete and never needs fetching again")
        if not isinstance(self.timeframe, str) or not _TIMEFRAME.fullmatch(self.timeframe):
            raise ConfigError(f"data.timeframe={self.timeframe!r}: an Alpaca timeframe such as 1Day, 1Hour, 15Min, "
                              "1Week, 1Month")
        if self.feed not in ("sip", "iex"):
            raise ConfigError(f"data.feed={self.feed!r}: must be sip or iex")
        if self.adjustment not in ("raw", "split", "dividend", "all"):
            raise ConfigError(f"data.adjustment={self.adjustment!r}: must be raw, split, dividend or all")
        check_rest_settings(self, "data", ("data_url",))

    @classmethod
    def of(cls, config: DataConfig) -> AlpacaDataConfig:
        """``data.source=alpaca`` on another preset: its selection and rules with the Alpaca settings' defaults
        (its file layout keys, ``columns``, ``timestamp_format`` and ``timezone``, do not apply)."""
        shared = {f.name: getattr(config, f.name) for f in fields(DataConfig)
                  if f.name not in ("columns", "timestamp_format", "timezone")}
        return cls(**shared)

    @property
    def range_dir(self) -> Path:
        """The cache directory of this feed, adjustment, timeframe and range (one Parquet file per symbol)."""
        root = Path(self.cache_dir).expanduser() if self.cache_dir is not None else default_cache_dir()
        span = f"{_compact(_utc(self.start, 'data.start'))}_{_compact(_utc(self.end, 'data.end'))}"
        return root / "bars" / self.feed / self.adjustment / self.timeframe / span

    def cached_file(self, symbol: str) -> Path:
        return self.range_dir / f"{symbol}.parquet"

    def missing(self) -> list[str]:
        """Selected symbols the cache does not hold yet."""
        return [s for s in dict.fromkeys(self.symbols) if not self.cached_file(s).is_file()]

    def check_available(self) -> None:
        if self.missing():
            credentials_from_env(self.key_id_env, self.secret_key_env, "data=alpaca (to download "
                                 + ", ".join(self.missing()) + ")")

    def fetch(self) -> DataConfig:
        missing = self.missing()
        log.info("alpaca bars cache=%s hits=%d misses=%s", self.range_dir, len(set(self.symbols)) - len(missing),
                 ",".join(missing) or "-")
        if missing:
            credentials = credentials_from_env(self.key_id_env, self.secret_key_env,
                                               "data=alpaca (to download " + ", ".join(missing) + ")")
            client = RestClient(self.data_url, credentials, connect_timeout=self.connect_timeout,
                                read_timeout=self.read_timeout, max_retries=self.max_retries,
                                backoff_seconds=self.backoff_seconds, max_wait_seconds=self.max_wait_seconds)
            try:
                for symbol in missing:
                    self._write(symbol, self._download(client, symbol))
            finally:
                client.close()
        base = {f.name: getattr(self, f.name) for f in fields(DataConfig)}
        return DataConfig(**{**base, "source": str(self.range_dir), "columns": {}, "timestamp_format": None,
                             "timezone": "UTC"})

    def _download(self, client: RestClient, symbol: str) -> pd.DataFrame:
        start, end = _utc(self.start, "data.start"), _utc(self.end, "data.end")
        params: dict[str, Any] = {"symbols": symbol, "timeframe": self.timeframe, "start": _rfc3339(start),
                                  "end": _rfc3339(end), "limit": PAGE_LIMIT, "adjustment": self.adjustment,
                                  "feed": self.feed, "sort": "asc"}
        where = f"alpaca:{self.feed}"
        rows: list[dict[str, Any]] = []
        tokens: set[str] = set()
        while True:
            try:
                body = client.request("GET", "/v2/stocks/bars", params=params, retry=True).body
            except RestError as exc:
                if exc.status in (401, 403):
                    raise ConfigError(f"Alpaca refused market data for {symbol} (HTTP {exc.status}: {exc.message}): "
                                      f"check the keys in {self.key_id_env} / {self.secret_key_env}, or use "
                                      "data.feed=iex when the plan does not include SIP") from None
                raise
            if not isinstance(body, dict) or not isinstance(body.get("bars") or {}, dict):
                raise DataValidationError("bad_response", f"GET /v2/stocks/bars answered {str(body)[:200]!r}",
                                          symbol=symbol, source=where)
            page = (body.get("bars") or {}).get(symbol) or []
            if not isinstance(page, list):
                raise DataValidationError("bad_response", "bars of a symbol must be a list", symbol=symbol,
                                          source=where)
            rows.extend(page)
            token = body.get("next_page_token")
            if not token:
                break
            if token in tokens:
                raise DataValidationError("bad_response", f"next_page_token {token!r} repeated", symbol=symbol,
                                          source=where)
            tokens.add(token)
            params = {**params, "page_token": token}
        if not rows:
            raise DataValidationError("empty_selection", f"Alpaca holds no {self.timeframe} bars between "
                                      f"{self.start} and {self.end} (feed={self.feed}); is the symbol right?",
                                      symbol=symbol, source=where)
        return self._frame(rows, symbol, where)

    @staticmethod
    def _frame(rows: list[Any], symbol: str, where: str) -> pd.DataFrame:
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or any(k not in row for k in _REQUIRED):
                raise DataValidationError("missing_column", f"bar {i} lacks one of {list(_REQUIRED)}: {row!r}",
                                          symbol=symbol, source=where)
        frame = pd.DataFrame({name: [row.get(key) for row in rows] for key, name in _FIELDS.items()})
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
        for column in frame.columns.drop("timestamp"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        return frame

    def _write(self, symbol: str, frame: pd.DataFrame) -> None:
        target = self.cached_file(symbol)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{symbol}.", suffix=".tmp")
        os.close(handle)
        try:
            frame.to_parquet(temporary, index=False)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        log.info("alpaca bars cached symbol=%s bars=%d file=%s", symbol, len(frame), target)
