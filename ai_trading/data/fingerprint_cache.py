"""A cache of dataset fingerprints keyed by file identity, so an unchanged Parquet store is not re-hashed.

The key is a SHA-256 over the fingerprint format, the store's root, the selection (symbols, start, end) and
each selected file's (relative path, size, mtime_ns, ctime_ns, inode). Any write to a file changes its ctime
and rewriting it by rename changes its inode, and neither can be set back by a tool, so a changed file
misses the cache and is hashed again. Entries live in ``$AI_TRADING_CACHE_DIR/fingerprints`` (default:
``$XDG_CACHE_HOME/ai_trading`` or ``~/.cache/ai_trading``); deleting the folder is always safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from ai_trading.data.fingerprint import FORMAT, canonical_json

log = logging.getLogger(__name__)

CACHE_ENV = "AI_TRADING_CACHE_DIR"


def cache_dir() -> Path:
    """Where cached fingerprints live (``AI_TRADING_CACHE_DIR`` overrides)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit) / "fingerprints"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ai_trading" / "fingerprints"


def cache_key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json({"format": FORMAT, **payload})).hexdigest()


def lookup(payload: dict[str, Any]) -> str | None:
    """The cached fingerprint of ``payload`` (a selection and its file identities), or None."""
    path = cache_dir() / f"{cache_key(payload)}.json"
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # a damaged entry is a miss; the store's bytes stay the truth
        log.warning("ignoring unreadable fingerprint cache entry path=%s error=%s", path, exc)
        return None
    if entry.get("key") != json.loads(canonical_json({"format": FORMAT, **payload})):
        return None
    fingerprint = entry.get("fingerprint")
    return fingerprint if isinstance(fingerprint, str) else None


def store(payload: dict[str, Any], fingerprint: str) -> None:
    """Record ``fingerprint`` for ``payload`` (atomically: temp file + rename)."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    body = {"key": json.loads(canonical_json({"format": FORMAT, **payload})), "fingerprint": fingerprint}
    fd, tmp = tempfile.mkstemp(prefix=".fp-", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(body, fh)
    os.replace(tmp, folder / f"{cache_key(payload)}.json")


__all__ = ["CACHE_ENV", "cache_dir", "lookup", "store"]
