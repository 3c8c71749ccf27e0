"""Masking of secrets before anything is logged, tracked or sent: passwords in URIs and DSNs, and the values
of keys whose names say they hold a secret."""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<password>[^@\s]*)(?P<at>@)")
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>'[^']*'|\S+)", re.IGNORECASE)
_SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_?key|private_?key|credential)", re.IGNORECASE)


def mask_text(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` URI and every libpq
    ``password=...`` pair replaced by ``***``."""
    text = _URI_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['at']}", text)
    return _KV_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)


def mask_secrets(value: Any, key: str = "") -> Any:
    """A copy of nested mappings, lists and strings with secrets masked: strings by :func:`mask_text`, and
    the whole value of a key whose name says it holds a secret (``password``, ``token``, ``api_key``, ...)."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(v, key) for v in value]
    if key and _SECRET_KEY.search(key) and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    return value


def mask_override(override: str) -> str:
    """A ``key=value`` command-line override with its value masked as :func:`mask_secrets` masks that key."""
    key, sep, value = override.partition("=")
    if not sep:
        return mask_text(override)
    name = key.lstrip("+~").rsplit(".", 1)[-1]
    masked = mask_secrets({name: value})[name]
    return f"{key}={masked}"
