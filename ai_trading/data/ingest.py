"""Convert bars from a supported source into a hive-partitioned Parquet store, validating on the way.

    python -m ai_trading.data.ingest --source bundled --out /data/store
    python -m ai_trading.data.ingest --source /data/csv --symbols AAPL MSFT --out /data/store \\
        --column timestamp=Date --timezone America/New_York

Each symbol is read, validated with the same rules as every load (a defect stops that symbol with the
error naming rule, symbol and file; nothing of it is written) and written symbol by symbol, one year per
file, each file atomically (temp file + rename). Re-running over unchanged input rewrites nothing.
Afterwards ``data=parquet_dataset data.source=/data/store data.symbols=[...]`` reads the store.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ai_trading.data.sources import DirectorySource, bundled_symbols, read_bundled
from ai_trading.data.store import WriteReport, check_symbol_name, write_symbol
from ai_trading.data.validation import validate_bars
from ai_trading.errors import AiTradingError, ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestReport:
    """What one ingest did, per symbol and in total."""

    out: Path
    symbols: tuple[WriteReport, ...]

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.symbols)

    @property
    def files_written(self) -> int:
        return sum(s.written for s in self.symbols)

    @property
    def files_unchanged(self) -> int:
        return sum(s.unchanged for s in self.symbols)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.symbols)

    def summary(self) -> str:
        lines = [f"{s.symbol}: {s.rows} rows, {s.written} files written, {s.unchanged} unchanged, "
                 f"{s.removed} removed, {s.bytes} bytes" for s in self.symbols]
        lines.append(f"ingested {len(self.symbols)} symbols, {self.rows} rows into {self.out}: "
                     f"{self.files_written} files written, {self.files_unchanged} unchanged, "
                     f"{sum(s.removed for s in self.symbols)} removed, {self.bytes} bytes")
        return "\n".join(lines)


def ingest(source: str, out: str | Path, symbols: Sequence[str] | None = None, *,
           columns: dict[str, str] | None = None, timestamp_format: str | None = None,
           timezone: str = "UTC") -> IngestReport:
    """Read ``symbols`` (default: every symbol) of ``source`` (``"bundled"`` or a directory of per-symbol
    CSV/Parquet files), validate each and write it into the store at ``out``."""
    if source == "bundled":
        reader, available, name_of = read_bundled, bundled_symbols(), (lambda s: f"bundled:{s}")
    else:
        directory = DirectorySource(source, columns or {}, timestamp_format, timezone)
        if not Path(source).is_dir():
            raise ConfigError(f"--source {source}: not a directory (and not 'bundled')")
        reader, available = directory.read, directory.symbols()
        name_of = lambda s: str(directory.file_for(s))  # noqa: E731
    chosen = list(dict.fromkeys(symbols)) if symbols else available
    if not chosen:
        raise ConfigError(f"--source {source}: no symbols to ingest")
    root = Path(out)
    for symbol in chosen:  # every name is checked before anything is written
        check_symbol_name(symbol, str(root))
    root.mkdir(parents=True, exist_ok=True)
    reports = []
    for symbol in chosen:
        bars = validate_bars(reader(symbol), source=name_of(symbol))
        report = write_symbol(root, symbol, bars)
        log.info("ingested symbol=%s rows=%d written=%d unchanged=%d removed=%d bytes=%d", symbol, report.rows,
                 report.written, report.unchanged, report.removed, report.bytes)
        reports.append(report)
    return IngestReport(root, tuple(reports))


def _parse_columns(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"--column {pair!r}: expected canonical=header, e.g. timestamp=Date")
        out[key] = value
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ai_trading.data.ingest",
        description="Convert bars into a hive-partitioned Parquet store (symbol=<S>/year=<Y>/part-0.parquet), "
                    "validating every symbol; read it with `data=parquet_dataset data.source=<out>`.",
        epilog="examples:\n"
               "  python -m ai_trading.data.ingest --source bundled --out ~/stores/bundled\n"
               "  python -m ai_trading.data.ingest --source ./csv --symbols AAPL MSFT --out ./store "
               "--column timestamp=Date --timezone America/New_York",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, help="'bundled' or a directory of <SYMBOL>.csv/.csv.gz/.parquet")
    p.add_argument("--out", required=True, help="the store's directory (created if missing)")
    p.add_argument("--symbols", nargs="+", default=None, help="symbols to ingest (default: all in the source)")
    p.add_argument("--column", action="append", default=[], metavar="CANONICAL=HEADER",
                   help="map a canonical column (timestamp, time, open, high, low, close, volume) to the file's "
                        "header; repeat per column")
    p.add_argument("--timestamp-format", default=None, help="strptime format of the timestamps (default: ISO 8601)")
    p.add_argument("--timezone", default="UTC", help="timezone of naive timestamps (default: UTC)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = ingest(args.source, args.out, args.symbols, columns=_parse_columns(args.column),
                        timestamp_format=args.timestamp_format, timezone=args.timezone)
    except AiTradingError as exc:
        print(f"ingest failed: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
