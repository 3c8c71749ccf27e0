"""``dataset_fingerprint``: a full SHA-256 over a canonical serialization of validated bars.

The digest covers a JSON header (index names, columns, dtypes, row count and the selection the
frame spans: symbols, first and last timestamp, bar frequency) and then
every timestamp (int64 ns, little-endian), every symbol (UTF-8, NUL-separated) and every value
(float64, little-endian, row-major). The frame is canonicalised first, so the input's row and
column order do not matter, while any changed cell does.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd

from ai_trading.data.frequency import frequency_label
from ai_trading.data.schema import canonicalize


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


def dataset_fingerprint(frame: pd.DataFrame) -> str:
    """Hex SHA-256 of the canonical bars frame and the selection it spans.

    The selection is derived from the data, so the same bars give the same fingerprint however
    they were requested (bundled or a directory, with or without explicit dates).
    """
    canon = canonicalize(frame)
    header = {
        "format": "ai_trading.bars/1",
        "index": list(canon.index.names),
        "columns": list(canon.columns),
        "dtypes": [str(t) for t in canon.dtypes],
        "rows": len(canon),
        "selection": selection_of(canon),
    }
    digest = hashlib.sha256()
    digest.update(canonical_json(header))
    stamps = pd.DatetimeIndex(canon.index.get_level_values("timestamp")).asi8
    digest.update(np.ascontiguousarray(stamps, dtype="<i8").tobytes())
    symbols = canon.index.get_level_values("symbol")
    codes, uniques = pd.factorize(symbols)
    digest.update("\0".join(str(u) for u in uniques).encode("utf-8") + b"\0\0")
    digest.update(np.ascontiguousarray(codes, dtype="<i4").tobytes())
    digest.update(np.ascontiguousarray(canon.to_numpy(), dtype="<f8").tobytes())
    return digest.hexdigest()
