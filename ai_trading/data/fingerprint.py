"""``dataset_fingerprint``: a full SHA-256 over the canonical column buffers of validated bars.

Format ``ai_trading.bars/2``. Bars are hashed symbol by symbol (symbols sorted, timestamps ascending),
each column as one contiguous little-endian buffer: per symbol, one SHA-256 over its timestamps (int64 ns
UTC) and one over each of ``open, high, low, close, volume`` (float64). The outer SHA-256 takes a format
tag, then per symbol its name, row count and those six digests, then a JSON trailer (columns, dtypes, row
count and the selection: symbols, first and last timestamp, bar frequency). Any changed cell changes it;
the input's row and column order do not, and neither does how the bars are cut into chunks, so a store far
larger than memory hashes in one pass (:class:`FingerprintStream`) to the value of the in-memory path
(:func:`dataset_fingerprint`). Hashing whole column buffers (rather than per-row formatting, sorting and a
row-major copy) is what lets it run near raw SHA-256 speed.

Format 1 (one digest over row-major values in timestamp-then-symbol order) could not be streamed by
symbol; every source moved to format 2 together, so fingerprints recorded before it differ.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ai_trading.data.frequency import frequency_label
from ai_trading.data.schema import BAR_COLUMNS, INDEX_NAMES
from ai_trading.errors import DataValidationError

FORMAT = "ai_trading.bars/2"


def canonical_json(payload: Any) -> bytes:
    """Compact, key-sorted UTF-8 JSON: the same bytes for equal payloads on any machine."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def selection_of(frame: pd.DataFrame) -> dict[str, Any]:
    """What a canonical frame spans: sorted symbols, first and last timestamp (ISO, UTC), frequency."""
    stamps = pd.DatetimeIndex(frame.index.get_level_values("timestamp"))
    return {
        "symbols": sorted(pd.unique(frame.index.get_level_values("symbol")).tolist()),
        "start": stamps.min().isoformat(),
        "end": stamps.max().isoformat(),
        "frequency": frequency_label(stamps),
    }


def _distinct_sorted(ns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Distinct values of a non-decreasing array in O(n) (``np.unique`` would sort again)."""
    if len(ns) == 0:
        return ns
    keep = np.empty(len(ns), dtype=bool)
    keep[0] = True
    np.not_equal(ns[1:], ns[:-1], out=keep[1:])
    return ns[keep]


_NAT = np.iinfo(np.int64).min  # what pandas stores for NaT


def _any(mask: npt.NDArray[np.bool_]) -> bool:
    """``mask.any()`` by counting: numpy's any/all/min reductions run AVX-512 code on server CPUs that lower
    the core's clock for the SHA-256 right after them (a third slower on 20 kB columns); counting does not."""
    return bool(np.count_nonzero(mask))


def _timestamps_ns(index: pd.MultiIndex) -> npt.NDArray[np.int64]:
    """The timestamp of each row as int64 ns since the epoch (UTC; a naive level is read as UTC), taken from
    the level's distinct values through its codes: no per-row Timestamp objects, no tz conversion of the
    rows (an instant's ns since the epoch are the same in every time zone)."""
    level = index.levels[0]
    stamps = level if isinstance(level, pd.DatetimeIndex) else pd.DatetimeIndex(level)
    distinct = stamps.asi8 if stamps.unit == "ns" else stamps.as_unit("ns").asi8
    codes = np.asarray(index.codes[0])
    if len(codes) == len(distinct) and len(codes) and codes[0] == 0 and not _any(codes[1:] <= codes[:-1]):
        return distinct  # codes 0, 1, ..., n - 1: the level is the rows (one symbol's bars as a reader builds them)
    if _any(codes < 0):  # code -1: a missing timestamp, which reads the NaT appended last
        distinct = np.append(distinct, _NAT)
    return distinct[codes]


class FingerprintStream:
    """Feed bars chunk by chunk in canonical order (symbols ascending; within a symbol, timestamps
    non-decreasing), then read :meth:`hexdigest`. Memory: six hash states, the distinct timestamps (for the
    bar frequency) and one chunk's timestamps, whatever the number of rows."""

    def __init__(self) -> None:
        self._outer = hashlib.sha256(FORMAT.encode() + b"\0")
        self._symbol: str | None = None
        self._columns: list[Any] = []
        self._rows = 0
        self._symbol_rows = 0
        self._last_ns: int | None = None
        self._symbols: list[str] = []
        self._stamps = np.empty(0, dtype=np.int64)
        self._checked = b""  # the last chunk's stamps found strictly increasing and merged into _stamps
        self._done = False

    def update(self, symbol: str, timestamps_ns: npt.ArrayLike, columns: Any) -> None:
        """One chunk of ``symbol``: its UTC timestamps as int64 ns and ``columns`` (a mapping or sequence of
        the five bar columns, in :data:`~ai_trading.data.schema.BAR_COLUMNS` order when a sequence)."""
        if self._done:
            raise RuntimeError("FingerprintStream.update after hexdigest")
        if symbol != self._symbol:
            if self._symbol is not None and symbol < self._symbol:
                raise DataValidationError("unsorted", f"symbol {symbol!r} fed after {self._symbol!r}: feed "
                                          "symbols in ascending order", symbol=symbol, source="fingerprint")
            self._close_symbol()
            self._symbol, self._symbol_rows, self._last_ns = symbol, 0, None
            self._columns = [hashlib.sha256() for _ in range(1 + len(BAR_COLUMNS))]
            self._symbols.append(symbol)
        ns = np.ascontiguousarray(timestamps_ns, dtype="<i8")
        if len(ns) == 0:
            return
        block = columns if isinstance(columns, np.ndarray) and columns.ndim == 2 else None
        if block is not None and block.dtype == "<f8" and block.flags.c_contiguous:
            if block.shape != (len(BAR_COLUMNS), len(ns)):
                raise DataValidationError("schema", f"a chunk needs {len(BAR_COLUMNS)} columns of {len(ns)} rows, "
                                          f"got an array of shape {block.shape}", symbol=symbol, source="fingerprint")
            # One flat view of the (5, n) block, cut into its rows: no array object per column.
            flat, size = block.data.cast("B"), 8 * len(ns)
            buffers = [flat[i * size:(i + 1) * size] for i in range(len(BAR_COLUMNS))]
        else:
            values = [columns[c] for c in BAR_COLUMNS] if hasattr(columns, "keys") else list(columns)
            if len(values) != len(BAR_COLUMNS) or any(len(v) != len(ns) for v in values):
                raise DataValidationError("schema", f"a chunk needs {len(BAR_COLUMNS)} columns of {len(ns)} rows",
                                          symbol=symbol, source="fingerprint")
            buffers = [np.ascontiguousarray(column, dtype="<f8").data for column in values]
        if self._last_ns is not None and ns[0] < self._last_ns:
            raise DataValidationError("unsorted", "timestamps of a symbol must be fed in ascending order",
                                      symbol=symbol, source="fingerprint")
        stamps = ns.tobytes()
        if stamps != self._checked:  # symbols of one calendar: the previous symbol's stamps, checked and merged
            # One comparison pass answers both checks in the usual case (strictly increasing stamps).
            distinct = ns
            if _any(ns[1:] <= ns[:-1]):
                if _any(ns[1:] < ns[:-1]):
                    raise DataValidationError("unsorted", "timestamps of a symbol must be fed in ascending order",
                                              symbol=symbol, source="fingerprint")
                distinct = _distinct_sorted(ns)
            self._merge_stamps(distinct)
            self._checked = stamps if distinct is ns else b""
        # The buffers go to SHA-256 as they are: C-contiguous float64 columns cost no copy.
        self._columns[0].update(ns.data)
        for digest, buffer in zip(self._columns[1:], buffers, strict=True):
            digest.update(buffer)
        self._last_ns = int(ns[-1])
        self._symbol_rows += len(ns)

    def _merge_stamps(self, distinct: npt.NDArray[np.int64]) -> None:
        known = self._stamps
        if len(known) == 0:
            self._stamps = distinct.copy()  # ``distinct`` may be the caller's buffer
            return
        if (len(known) == len(distinct) and known[0] == distinct[0] and known[-1] == distinct[-1]
                and not _any(known != distinct)):
            return  # symbols of one calendar share their timestamps: nothing new
        if distinct[0] > known[-1]:
            self._stamps = np.concatenate([known, distinct])  # the next chunk of the first symbol
            return
        at = np.searchsorted(known, distinct)
        if not _any(at >= len(known)) and not _any(known[np.minimum(at, len(known) - 1)] != distinct):
            return  # every stamp already known
        # Two sorted runs: a stable sort merges them in linear time (np.union1d would hash every value).
        self._stamps = _distinct_sorted(np.sort(np.concatenate([known, distinct]), kind="stable"))

    def _close_symbol(self) -> None:
        if self._symbol is None:
            return
        if self._symbol_rows == 0:
            raise DataValidationError("empty", "no bars fed for the symbol", symbol=self._symbol,
                                      source="fingerprint")
        self._outer.update(canonical_json({"rows": self._symbol_rows, "symbol": self._symbol}))
        for digest in self._columns:
            self._outer.update(digest.digest())
        self._rows += self._symbol_rows

    def hexdigest(self) -> str:
        """The fingerprint of everything fed (equal to :func:`dataset_fingerprint` of the same bars)."""
        if not self._done:
            self._close_symbol()
            self._done = True
            if self._rows == 0:
                raise DataValidationError("empty", "no bars to fingerprint", source="fingerprint")
            stamps = pd.DatetimeIndex(self._stamps.view("M8[ns]"), tz="UTC")
            trailer = {
                "index": list(INDEX_NAMES),
                "columns": list(BAR_COLUMNS),
                "dtypes": ["float64"] * len(BAR_COLUMNS),
                "rows": self._rows,
                "selection": {"symbols": self._symbols, "start": stamps[0].isoformat(),
                              "end": stamps[-1].isoformat(), "frequency": frequency_label(stamps)},
            }
            self._outer.update(canonical_json(trailer))
            self._hex = self._outer.hexdigest()
        return self._hex


def dataset_fingerprint(frame: pd.DataFrame) -> str:
    """Hex SHA-256 of the bars in ``frame`` (indexed by timestamp and symbol, with the five bar columns)
    and the selection they span.

    The selection is derived from the data, so the same bars give the same fingerprint however
    they were requested (bundled, a directory or a Parquet store, with or without explicit dates).
    """
    if tuple(frame.index.names) != INDEX_NAMES:
        raise DataValidationError("schema", f"index must be {INDEX_NAMES}, got {tuple(frame.index.names)}",
                                  source="fingerprint")
    index = frame.index
    assert isinstance(index, pd.MultiIndex)
    ns = _timestamps_ns(index)
    # The symbol level's codes ranked by symbol name: no per-row string work.
    level = index.levels[1].astype(str)
    order = np.argsort(np.asarray(level), kind="stable")
    rank = np.empty(len(level), dtype=np.int64)
    rank[order] = np.arange(len(level))
    codes = rank[np.asarray(index.codes[1])]
    names = np.asarray(level)[order]
    if len(ns) and bool((ns[1:] >= ns[:-1]).all()):
        # Sorted by time (every loaded frame): a stable sort of the small symbol codes keeps time order.
        small = codes.astype(np.int16) if len(level) < 2**15 else codes
        perm = np.argsort(small, kind="stable")
    else:
        perm = np.lexsort((ns, codes))
    single = len(perm) > 0 and codes[perm[0]] == codes[perm[-1]]
    identity = single and bool((perm[1:] > perm[:-1]).all())
    ns_sorted = ns if identity else ns[perm]
    block = frame.loc[:, list(BAR_COLUMNS)].to_numpy(dtype=np.float64).T  # a view of pandas' column block
    cols = list(block if identity else np.take(block, perm, axis=1))
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(level)))])
    stream = FingerprintStream()
    for code in range(len(level)):
        a, b = int(bounds[code]), int(bounds[code + 1])
        if b > a:
            stream.update(str(names[code]), ns_sorted[a:b], [c[a:b] for c in cols])
    return stream.hexdigest()


__all__ = ["FORMAT", "FingerprintStream", "canonical_json", "dataset_fingerprint", "selection_of"]
