"""Order-management domain types: the vocabulary every OMS module and broker shares.

Pure and immutable: no SQLAlchemy, no I/O.
"""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
