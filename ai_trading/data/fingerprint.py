"""``dataset_fingerprint``: a full SHA-256 over a canonical serialization of validated bars.

The digest covers a JSON header (index names, columns, dtypes, row count, the selection) and then
every timestamp (int64 ns, little-endian), every symbol (UTF-8, NUL-separated) and every value
(float64, little-endian, row-major). The frame is canonicalised first, so the input's row and
column order do not matter, while any changed cell does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ai_trading.data.schema import canonicalize


def canonical_json(payload: Any) -> bytes:
    """Compact, key-sorted UTF-8 JSON: the same bytes for equal payloads on any machine."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def dataset_fingerprint(frame: pd.DataFrame, selection: Mapping[str, Any] | None = None) -> str:
    """Hex SHA-256 of the canonical bars frame plus the selection (symbols, range, frequency)."""
    canon = canonicalize(frame)
    header = {
        "format": "ai_trading.bars/1",
        "index": list(canon.index.names),
        "columns": list(canon.columns),
        "dtypes": [str(t) for t in canon.dtypes],
        "rows": len(canon),
        "selection": dict(selection or {}),
    }
    digest = hashlib.sha256()
    digest.update(canonical_json(header))
    stamps = canon.index.get_level_values("timestamp").asi8
    digest.update(np.ascontiguousarray(stamps, dtype="<i8").tobytes())
    symbols = canon.index.get_level_values("symbol")
    codes, uniques = pd.factorize(symbols)
    digest.update("\0".join(str(u) for u in uniques).encode("utf-8") + b"\0\0")
    digest.update(np.ascontiguousarray(codes, dtype="<i4").tobytes())
    digest.update(np.ascontiguousarray(canon.to_numpy(), dtype="<f8").tobytes())
    return digest.hexdigest()
