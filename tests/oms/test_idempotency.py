"""CIDv2 client order ids and broker-safe ids: content-derived, canonical, validated, short and distinct."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ai_trading.errors import ClientOrderIdError
from ai_trading.oms.idempotency import (
    DEFAULT_BROKER_ID_LEN,
    broker_safe_id,
    canonical_quantity,
    make_cid,
    parse_cid,
)
from ai_trading.oms.models import Side
from tests.oms.conftest import make_intent

ROOT = Path(__file__).resolve().parents[2]
FIELDS = dict(strategy="momo", symbol="AAPL", side="buy", session="2024-01-02", horizon="1d",
              signal_hash="00000000", quantity=10, version=1)


def test_cid_has_the_documented_layout() -> None:
    assert make_cid(**FIELDS) == "CIDv2:momo:AAPL:buy:2024-01-02:1d:00000000:10:1"  # type: ignore[arg-type]


@pytest.mark.parametrize("quantity", [10, 10.0, "10", "10.000", Decimal("1E+1"), Decimal("10.00")])
def test_cid_quantity_forms_give_one_id(quantity: object) -> None:
    assert make_intent(quantity=quantity).client_order_id == make_intent(quantity=10).client_order_id


def test_cid_same_content_same_id_in_another_process() -> None:
    code = ("from datetime import datetime, UTC\nfrom ai_trading.oms.models import OrderIntent\n"
            "i = OrderIntent(strategy='momo', symbol='AAPL', side='buy', quantity=10.0, session='2024-01-02', "
            "horizon='1d', signal_hash='00000007', created_at=datetime(2030, 1, 1, tzinfo=UTC))\n"
            "print(i.client_order_id, i.broker_safe_id)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=ROOT)
    here = make_intent(7)  # another created_at: not part of the id
    assert out.stdout.split() == [here.client_order_id, here.broker_safe_id]


def test_cid_other_content_other_id() -> None:
    base = make_intent(1)
    for changed in (make_intent(2), make_intent(1, quantity=11), make_intent(1, side="sell"),
                    make_intent(1, version=2), make_intent(1, symbol="MSFT"), make_intent(1, session="2024-01-03")):
        assert changed.client_order_id != base.client_order_id
        assert changed.broker_safe_id != base.broker_safe_id


@given(strategy=st.from_regex(r"[A-Za-z0-9._\-/=^+]{1,64}", fullmatch=True),
       symbol=st.from_regex(r"[A-Za-z0-9.]{1,10}", fullmatch=True), side=st.sampled_from(list(Side)),
       quantity=st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(10**9), places=8),
       signal_hash=st.from_regex(r"[0-9a-f]{8,64}", fullmatch=True), version=st.integers(1, 10**9 - 1))
def test_parse_cid_round_trips(strategy: str, symbol: str, side: Side, quantity: Decimal, signal_hash: str,
                               version: int) -> None:
    cid = make_cid(strategy=strategy, symbol=symbol, side=side, session="s1", horizon="5m",
                   signal_hash=signal_hash, quantity=quantity, version=version)
    parts = parse_cid(cid)
    assert (parts.strategy, parts.symbol, parts.side, parts.quantity, parts.signal_hash, parts.version) == (
        strategy, symbol, side, quantity, signal_hash, version)
    assert make_cid(strategy=parts.strategy, symbol=parts.symbol, side=parts.side, session=parts.session,
                    horizon=parts.horizon, signal_hash=parts.signal_hash, quantity=parts.quantity,
                    version=parts.version) == cid


@pytest.mark.parametrize(("field", "value"), [
    ("strategy", "a:b"), ("strategy", ""), ("symbol", "AA PL"), ("symbol", "x" * 65), ("side", "long"),
    ("session", "2024:01"), ("horizon", "1d\n"), ("signal_hash", "DEADBEEF"), ("signal_hash", "abc"),
    ("quantity", 0), ("quantity", -3), ("quantity", "1e400"), ("version", 0), ("version", "1"), ("version", True),
])
def test_make_cid_bad_field_raises_naming_it(field: str, value: object) -> None:
    with pytest.raises(ClientOrderIdError, match=f"field {'qty' if field == 'quantity' else field}="):
        make_cid(**{**FIELDS, field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(("cid", "field"), [
    ("CIDv1:momo:AAPL:buy:s:1d:00000000:10:1", "prefix"),
    ("CIDv2:momo:AAPL:buy:s:1d:00000000:10", "cid"),
    ("CIDv2:momo:AAPL:buy:s:1d:00000000:10:1:extra", "cid"),
    ("CIDv2:momo:AAPL:hold:s:1d:00000000:10:1", "side"),
    ("CIDv2:momo:AAPL:buy:s:1d:00000000:10.0:1", "qty"),
    ("CIDv2:momo:AAPL:buy:s:1d:00000000:010:1", "qty"),
    ("CIDv2:momo:AAPL:buy:s:1d:00000000:1e1:1", "qty"),
    ("CIDv2:momo:AAPL:buy:s:1d:00000000:0:1", "qty"),
    ("CIDv2:momo:AAPL:buy:s:1d:00000000:0.123456789:1", "qty"),
    ("CIDv2:momo:AAPL:buy:s:1d:00000000:10:01", "version"),
    ("CIDv2:momo:AAPL:buy:s:1d:0000000g:10:1", "signal_hash"),
    ("CIDv2::AAPL:buy:s:1d:00000000:10:1", "strategy"),
    ("CIDv2:momo:AA PL:buy:s:1d:00000000:10:1", "symbol"),
])
def test_parse_cid_bad_cid_raises_naming_the_field(cid: str, field: str) -> None:
    with pytest.raises(ClientOrderIdError, match=f"field {field}="):
        parse_cid(cid)


def test_canonical_quantity_strips_zeros_and_exponent() -> None:
    assert [canonical_quantity(q) for q in (Decimal("1E+3"), "0.50", 2.5, 100)] == ["1000", "0.5", "2.5", "100"]


@pytest.mark.parametrize("max_len", [18, 20, 28, 36, 48, 54])
def test_broker_safe_ids_deterministic_short_and_distinct(max_len: int) -> None:
    cids = [make_cid(**{**FIELDS, "signal_hash": f"{n:08x}"}) for n in range(5_000)]  # type: ignore[arg-type]
    ids = [broker_safe_id(cid, max_len) for cid in cids]
    assert len(set(ids)) == len(cids)
    assert all(len(i) <= max_len and i.isascii() and i.isalnum() and i == i.lower() for i in ids)
    assert [broker_safe_id(cid, max_len) for cid in cids[:50]] == ids[:50]
    # a shorter id is a prefix of a longer one: one mapping, truncated
    assert broker_safe_id(cids[0]).startswith(broker_safe_id(cids[0], 18))


@pytest.mark.parametrize("max_len", range(18, 55))
def test_broker_safe_id_is_the_documented_mapping_at_every_length(max_len: int) -> None:
    # the module docstring's mapping, spelled out: "c2" + the first max_len - 2 characters of the lowercase
    # unpadded RFC 4648 base32 of the whole sha256 digest
    for n in range(200):
        cid = make_cid(**{**FIELDS, "signal_hash": f"{n:08x}"})  # type: ignore[arg-type]
        whole = base64.b32encode(hashlib.sha256(cid.encode()).digest()).decode().rstrip("=").lower()
        assert broker_safe_id(cid, max_len) == "c2" + whole[:max_len - 2]


def test_broker_safe_id_default_fits_36_character_venues() -> None:
    assert len(make_intent().broker_safe_id) == DEFAULT_BROKER_ID_LEN <= 36


@pytest.mark.parametrize("max_len", [17, 55, 0, True])
def test_broker_safe_id_bad_length_raises(max_len: int) -> None:
    with pytest.raises(ClientOrderIdError, match="field max_len="):
        broker_safe_id(make_intent().client_order_id, max_len)


def test_broker_safe_id_of_a_non_cid_raises() -> None:
    with pytest.raises(ClientOrderIdError, match="a CIDv2 client order id"):
        broker_safe_id("order-1")
