"""Readers that turn raw files into canonical bars: the bundled real data and user directories.

Each reader parses one file into a canonical frame for one symbol; selection by date range and
validation happen in :mod:`ai_trading.data.loader`.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ai_trading.data.schema import BAR_COLUMNS, canonicalize
from ai_trading.data.validation import Defect, bar_defects, raise_defects
from ai_trading.errors import DataValidationError, UnknownSymbolError


@dataclass(frozen=True)
class BundledFile:
    """How one bundled file is laid out."""

    filename: str
    date_format: str
    timezone: str = "UTC"
    # The 1-minute file's header names 7 columns while its rows carry 8 fields (date and time
    # split): the exact header is pinned here so a change upstream fails loudly instead of
    # shifting columns by luck.
    quirky_header: tuple[str, ...] | None = None
    row_fields: tuple[str, ...] | None = None


_DAILY_HEADER = ("Date", "Open", "High", "Low", "Close", "Adj Close", "Volume")

BUNDLED: Mapping[str, BundledFile] = {
    "SP500": BundledFile("sp500_index_daily.csv.gz", "%m/%d/%Y"),
    "NASDAQ": BundledFile("nasdaq_index_daily.csv.gz", "%m/%d/%Y"),
    "NVDA": BundledFile("nvda_daily.csv.gz", "%Y-%m-%d"),
    "ORCL": BundledFile("orcl_daily.csv.gz", "%Y-%m-%d"),
    "YHOO": BundledFile("yhoo_daily.csv.gz", "%Y-%m-%d"),
    "STOXX50F": BundledFile(
        "stoxx50_future_1min_2006.csv.gz",
        "%Y-%m-%d %H:%M:%S",
        timezone="Europe/Berlin",
        quirky_header=("Date", "Open", "High", "Low", "Close", "Volume", "OpenInterest"),
        row_fields=("date", "time", "open", "high", "low", "close", "volume", "open_interest"),
    ),
}


def bundled_symbols() -> list[str]:
    """Symbols shipped with the package."""
    return sorted(BUNDLED)


def _bundled_bytes(filename: str) -> bytes:
    return resources.files("ai_trading.data").joinpath("bundled", filename).read_bytes()


def _to_canonical(raw: pd.DataFrame, timestamps: pd.DatetimeIndex, symbol: str, source: str) -> pd.DataFrame:
    try:
        numeric = raw.loc[:, list(BAR_COLUMNS)].apply(pd.to_numeric, errors="raise")
    except (ValueError, TypeError) as exc:
        raise DataValidationError("non_numeric", str(exc), symbol=symbol, source=source) from exc
    index = pd.MultiIndex.from_arrays(
        [timestamps, pd.Index([symbol] * len(raw), dtype=object)], names=["timestamp", "symbol"]
    )
    return canonicalize(pd.DataFrame(numeric.to_numpy(dtype="float64"), index=index, columns=list(BAR_COLUMNS)))


def _parse_timestamps(text: pd.Series, fmt: str, tz: str, source: str | None) -> pd.DatetimeIndex:
    try:
        parsed = pd.DatetimeIndex(pd.to_datetime(text, format=fmt))
    except (ValueError, TypeError) as exc:
        raise DataValidationError("bad_timestamp", f"cannot parse timestamps as {fmt!r}: {exc}",
                                  source=source) from exc
    localized = parsed.tz_localize(tz, ambiguous="raise", nonexistent="raise") if parsed.tz is None else parsed
    return localized.tz_convert("UTC")


def check_bundled(symbol: str) -> BundledFile:
    """How a bundled symbol's file is laid out; :class:`UnknownSymbolError` when it is not bundled."""
    if symbol not in BUNDLED:
        raise UnknownSymbolError("unknown_symbol", f"not bundled; known: {bundled_symbols()}", symbol=symbol,
                                 source="bundled")
    return BUNDLED[symbol]


def bundled_source(symbol: str) -> str:
    """How errors name a bundled symbol's file."""
    return f"bundled:{check_bundled(symbol).filename}"


def read_bundled(symbol: str) -> pd.DataFrame:
    """Canonical bars of one bundled symbol, unvalidated."""
    spec = check_bundled(symbol)
    text = gzip.decompress(_bundled_bytes(spec.filename)).decode("utf-8")
    source = bundled_source(symbol)
    if spec.quirky_header is None:
        raw = read_csv_checked(io.StringIO(text), source)
        if tuple(raw.columns) != _DAILY_HEADER:
            raise DataValidationError("header_mismatch", f"expected header {_DAILY_HEADER}, got "
                                      f"{tuple(raw.columns)}", source=source)
        raw = raw.rename(columns=str.lower)
        stamps = _parse_timestamps(raw["date"], spec.date_format, spec.timezone, source)
        return _to_canonical(raw, stamps, symbol, source)
    assert spec.row_fields is not None
    header, _, body = text.partition("\n")
    if tuple(header.strip().split(",")) != spec.quirky_header:
        raise DataValidationError("header_mismatch", f"expected the known header {spec.quirky_header}, got "
                                  f"{header.strip()!r}", source=source)
    raw = read_csv_checked(io.StringIO(body), source, names=list(spec.row_fields), first_line=2)
    stamps = _parse_timestamps(raw["date"] + " " + raw["time"], spec.date_format, spec.timezone, source)
    return _to_canonical(raw, stamps, symbol, source)


def read_csv_checked(
    handle: io.StringIO | Path, source: str, *, names: list[str] | None = None, first_line: int = 1
) -> pd.DataFrame:
    """Read a CSV whose every row must have as many fields as its header (or ``names``).

    pandas would silently take an extra leading field as the index; this reads strictly instead and
    names the first line whose field count differs.
    """
    if isinstance(handle, Path):
        opener = gzip.open if handle.suffix == ".gz" else open
        with opener(handle, "rt", newline="") as fh:
            return read_csv_checked(io.StringIO(fh.read()), source, names=names, first_line=first_line)
    rows = list(csv.reader(handle))
    if names is None:
        if not rows:
            raise DataValidationError("empty", "file has no header", source=source)
        names, rows, first_line = rows[0], rows[1:], first_line + 1
    for offset, row in enumerate(rows):
        if len(row) != len(names):
            raise DataValidationError(
                "header_mismatch",
                f"line {first_line + offset} has {len(row)} fields, the header names {len(names)}: {names}",
                source=source,
            )
    return pd.DataFrame(rows, columns=names)


@dataclass(frozen=True)
class DirectorySource:
    """A directory of per-symbol files (``<SYMBOL>.csv``, ``.csv.gz`` or ``.parquet``).

    ``columns`` maps canonical names (``timestamp``, optional ``time``, ``open`` ... ``volume``) to
    the file's column names; ``timezone`` applies to naive timestamps.
    """

    path: str
    columns: Mapping[str, str] = field(default_factory=dict)
    timestamp_format: str | None = None
    timezone: str = "UTC"

    def file_for(self, symbol: str) -> Path:
        """The file holding ``symbol``'s bars; a typed error when the directory or the file is missing."""
        base = Path(self.path)
        if not base.is_dir():
            raise DataValidationError("missing_source", f"data directory {base} does not exist", source=str(base))
        for suffix in (".parquet", ".csv", ".csv.gz"):
            candidate = base / f"{symbol}{suffix}"
            if candidate.is_file():
                return candidate
        raise UnknownSymbolError("unknown_symbol", f"no {symbol}.parquet/.csv/.csv.gz in {base}",
                                 symbol=symbol, source=str(base))

    def symbols(self) -> list[str]:
        base = Path(self.path)
        return sorted({p.name.split(".")[0] for p in base.iterdir() if p.is_file()}) if base.is_dir() else []

    def read(self, symbol: str) -> pd.DataFrame:
        """Canonical bars of ``symbol``'s file; a file whose columns are missing, not numbers, or whose
        timestamps do not parse fails with every such defect and every row defect of its other columns."""
        path = self.file_for(symbol)
        source = str(path)
        raw = pd.read_parquet(path) if path.suffix == ".parquet" else read_csv_checked(path, source)
        mapping = {"timestamp": "timestamp", **{c: c for c in BAR_COLUMNS}, **dict(self.columns)}
        wanted = ["timestamp", *BAR_COLUMNS] + (["time"] if "time" in mapping else [])
        missing = [mapping[c] for c in wanted if mapping[c] not in raw.columns]
        defects: list[Defect] = []
        if missing:
            defects.append(Defect("missing_column", f"columns {missing} not in {list(raw.columns)}", symbol))
        frame = pd.DataFrame({c: raw[mapping[c]] for c in wanted if mapping[c] in raw.columns})
        absent = [c for c in BAR_COLUMNS if mapping[c] not in raw.columns]
        for c in BAR_COLUMNS:
            if c in frame:
                numbers = pd.to_numeric(frame[c], errors="coerce")
                bad = numbers.isna() & frame[c].notna()
                if bad.any():  # formatting every cell as text is slow: only where a value did not parse
                    bad &= frame[c].astype(str).str.strip() != ""
                if bad.any():
                    line = int(np.flatnonzero(bad.to_numpy())[0])
                    more = int(bad.sum()) - 1
                    defects.append(Defect("non_numeric", f"column {mapping[c]} holds {frame[c].iloc[line]!r} (data row "
                                          f"{line + 1})" + (f" and {more} more non-numbers" if more else ""), symbol))
                    absent.append(c)
                frame[c] = numbers
        if "timestamp" not in frame or ("time" in mapping and "time" not in frame):
            raise_defects(defects, source)
        try:
            stamps = self._stamps(frame)
        except DataValidationError as exc:  # raised without a source: named once, below
            raise_defects([*defects, Defect(exc.rule, str(exc).removeprefix(f"[{exc.rule}] "), symbol)], source)
            raise
        if defects:
            for c in absent:
                frame[c] = np.nan
            bars = _to_canonical(frame, stamps, symbol, source)
            raise_defects([*defects, *bar_defects(bars, absent=absent)], source)
        return _to_canonical(frame, stamps, symbol, source)

    def _stamps(self, frame: pd.DataFrame) -> pd.DatetimeIndex:
        if pd.api.types.is_datetime64_any_dtype(frame["timestamp"]) and "time" not in frame:
            stamps = pd.DatetimeIndex(frame["timestamp"])
            return (stamps.tz_localize(self.timezone) if stamps.tz is None else stamps).tz_convert("UTC")
        text = frame["timestamp"].astype(str)
        if "time" in frame:
            text = text + " " + frame["time"].astype(str)
        return _parse_timestamps(text, self.timestamp_format or "ISO8601", self.timezone, None)
