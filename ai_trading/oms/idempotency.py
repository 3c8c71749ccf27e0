"""Client order ids: the CIDv2 standard and the broker-safe id sent to venues.

CIDv2
-----
``CIDv2:{strategy}:{symbol}:{side}:{session}:{horizon}:{signal_hash}:{qty}:{version}``, built only from
the intent's content, so the same intent gets the same id in any process, before or after a crash, and
re-creating it finds the stored one instead of sending a second order.

- ``strategy``, ``symbol``, ``session``, ``horizon``: 1 to 64 characters of ``A-Z a-z 0-9 . _ - / = ^ +``
  (no ``:``, no whitespace, so a field can never shift another's position).
- ``side``: ``buy`` or ``sell``.
- ``signal_hash``: 8 to 64 lowercase hex digits (the hash of the signal that produced the intent).
- ``qty``: the quantity in canonical form: positive, plain decimal, no exponent, no trailing zeros, no
  trailing point (``10``, ``10.0`` and ``1E+1`` are all ``10``; ``0.50`` is ``0.5``); at most 8 places.
- ``version``: a positive integer without leading zeros; bump it to send the same content again on purpose.

``parse_cid`` accepts only ids ``make_cid`` could have produced (``parse_cid(c)`` rebuilt is ``c``) and
raises ``ClientOrderIdError`` naming the field otherwise.

Broker-safe id
--------------
Venues cap client order ids (Alpaca's older API at 48 characters, some venues at 36) and some treat them
case-insensitively, so the venue gets ``broker_safe_id(cid)``: ``"c2"`` followed by the first
``max_len - 2`` characters (26 by default, at most 52) of the lowercase RFC 4648 base32 encoding (``a-z``,
``2-7``, no padding) of ``sha256(cid)``. The default is 28 characters and carries 130 bits of the hash.

Collisions: for n distinct CIDs the chance that any two share a broker-safe id is about n^2 / 2^(b+1) with
b = 5 * (max_len - 2) bits; at the default b = 130 that is 4e-22 for a billion ids, and ``max_len`` may not
go below 18 (80 bits: 4e-7 for a billion ids). A collision could not go unnoticed anyway: the store keeps
the broker-safe id unique and refuses (``IntentConflict``) a second CID mapping onto a stored one. The
mapping is one way; the store keeps both ids, so an order the venue reports is found by its broker-safe id.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal

from ai_trading.errors import ClientOrderIdError, OrderValidationError
from ai_trading.oms.models import DECIMAL_PLACES, Side, to_decimal

PREFIX = "CIDv2"
BROKER_SAFE_PREFIX = "c2"
DEFAULT_BROKER_ID_LEN = 28
MIN_BROKER_ID_LEN = len(BROKER_SAFE_PREFIX) + 16
MAX_BROKER_ID_LEN = len(BROKER_SAFE_PREFIX) + 52  # a sha256 digest is 52 base32 characters

_NAME = re.compile(r"[A-Za-z0-9._\-/=^+]{1,64}")
_HASH = re.compile(r"[0-9a-f]{8,64}")
_VERSION = re.compile(r"[1-9][0-9]{0,8}")
_QTY = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]*[1-9])?")
_FIELDS = ("strategy", "symbol", "side", "session", "horizon", "signal_hash", "qty", "version")


@dataclass(frozen=True)
class CIDParts:
    """The fields of a CIDv2, validated."""

    strategy: str
    symbol: str
    side: Side
    session: str
    horizon: str
    signal_hash: str
    quantity: Decimal
    version: int


def canonical_quantity(quantity: object) -> str:
    """The CIDv2 form of a quantity: 10, 10.0, "10.000" and Decimal("1E+1") all give "10"."""
    try:
        number = to_decimal(quantity, "qty")
    except OrderValidationError as exc:
        raise ClientOrderIdError("qty", quantity, str(exc)) from None
    text = format(number.normalize(), "f")
    return text


def _check_name(field: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ClientOrderIdError(field, value, "1 to 64 characters of A-Z a-z 0-9 . _ - / = ^ +")
    return value


def _check_side(value: object) -> Side:
    if isinstance(value, str) and value in Side._value2member_map_:
        return Side(value)
    raise ClientOrderIdError("side", value, "buy or sell")


def _check_hash(value: object) -> str:
    if not isinstance(value, str) or not _HASH.fullmatch(value):
        raise ClientOrderIdError("signal_hash", value, "8 to 64 lowercase hex digits")
    return value


def _check_version(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not _VERSION.fullmatch(str(value)):
        raise ClientOrderIdError("version", value, "a positive integer (at most 9 digits)")
    return value


def make_cid(*, strategy: str, symbol: str, side: Side | str, session: str, horizon: str, signal_hash: str,
             quantity: object, version: int) -> str:
    """The CIDv2 of an intent's content; ``ClientOrderIdError`` names the first bad field."""
    parts = [PREFIX, _check_name("strategy", strategy), _check_name("symbol", symbol), _check_side(side).value,
             _check_name("session", session), _check_name("horizon", horizon), _check_hash(signal_hash),
             canonical_quantity(quantity), str(_check_version(version))]
    return ":".join(parts)


def parse_cid(cid: str) -> CIDParts:
    """The validated fields of ``cid``; only canonical ids parse (``make_cid`` of the result is ``cid``)."""
    if not isinstance(cid, str):
        raise ClientOrderIdError("cid", cid, "a string")
    head, *fields = cid.split(":")
    if head != PREFIX:
        raise ClientOrderIdError("prefix", head, f"must be {PREFIX!r}")
    if len(fields) != len(_FIELDS):
        raise ClientOrderIdError("cid", cid, f"{len(fields)} fields after {PREFIX}, expected {len(_FIELDS)}: "
                                 + ":".join(_FIELDS))
    strategy, symbol, side, session, horizon, signal_hash, qty, version = fields
    if not _QTY.fullmatch(qty) or qty == "0":
        raise ClientOrderIdError("qty", qty, "a positive decimal in canonical form (no exponent, no trailing zeros)")
    if "." in qty and len(qty.split(".")[1]) > DECIMAL_PLACES:
        raise ClientOrderIdError("qty", qty, f"more than {DECIMAL_PLACES} decimal places")
    if not _VERSION.fullmatch(version):
        raise ClientOrderIdError("version", version, "a positive integer without leading zeros (at most 9 digits)")
    return CIDParts(strategy=_check_name("strategy", strategy), symbol=_check_name("symbol", symbol),
                    side=_check_side(side), session=_check_name("session", session),
                    horizon=_check_name("horizon", horizon), signal_hash=_check_hash(signal_hash),
                    quantity=Decimal(qty), version=int(version))


def broker_safe_id(cid: str, max_len: int = DEFAULT_BROKER_ID_LEN) -> str:
    """The deterministic short id a venue gets for ``cid`` (see the module docstring for the mapping)."""
    if isinstance(max_len, bool) or not isinstance(max_len, int) or not (
            MIN_BROKER_ID_LEN <= max_len <= MAX_BROKER_ID_LEN):
        raise ClientOrderIdError("max_len", max_len, f"an integer from {MIN_BROKER_ID_LEN} to {MAX_BROKER_ID_LEN}")
    if not isinstance(cid, str) or not cid.startswith(PREFIX + ":"):
        raise ClientOrderIdError("cid", cid, f"a {PREFIX} client order id")
    chars = max_len - len(BROKER_SAFE_PREFIX)
    # base32 turns each 5 bytes into 8 characters on their own: the blocks that cover ``chars`` give the same
    # leading characters as the whole digest, for less of the standard library's pure-Python encoding
    digest = hashlib.sha256(cid.encode()).digest()[: -(-chars // 8) * 5]
    return BROKER_SAFE_PREFIX + base64.b32encode(digest).decode()[:chars].lower()
