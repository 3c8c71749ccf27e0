"""Alpaca's trading API v2 as a :class:`~ai_trading.oms.brokers.base.Broker`, over REST with requests.

The paper endpoint is the default; keys come from the environment (``APCA_API_KEY_ID`` /
``APCA_API_SECRET_KEY`` unless configured otherwise) and travel only as headers (see :mod:`ai_trading.rest`).

Requests
--------
- ``submit``: ``POST /v2/orders`` with the broker-safe client order id, ``qty`` and ``limit_price`` as decimal
  strings. Never resent: a timeout, lost connection, 5xx or 429 raises ``BrokerUnavailable`` (outcome unknown;
  the OMS looks the order up before deciding). Alpaca's duplicate answer (422, ``client_order_id must be
  unique``) is confirmed by looking the id up and raises ``DuplicateClientOrderId``. Any other refusal (403
  insufficient buying power or wrong keys, 422 invalid order) raises :class:`AlpacaRejected`: nothing exists.
- ``get_order``: ``GET /v2/orders:by_client_order_id?client_order_id=...``; 404 is None.
- ``cancel``: the order by client id, then ``DELETE /v2/orders/{id}`` when it is open (a 422 "not
  cancelable" means it reached a final state meanwhile), then the order as it now stands. Alpaca cancels
  asynchronously: the answer may still be open (``pending_cancel``).
- ``list_open_orders``: ``GET /v2/orders?status=open&direction=asc&limit=500``, paged by ``after`` (the
  last page's latest ``submitted_at``), de-duplicated by order id.
- ``list_fills``: ``GET /v2/account/activities/FILL?direction=asc&page_size=100``, paged by ``page_token``
  (the last activity's id). An activity names its order by Alpaca's id only; the client order id is looked up
  (``GET /v2/orders/{id}``) once per order. ``fee`` is 0: Alpaca charges no commission on equities, and its
  regulatory fees arrive as separate ``FEE`` activities, not on the fill.
Reads and cancels are retried on timeouts, 5xx and 429 (honouring ``Retry-After`` / ``X-RateLimit-Reset``),
boundedly (``max_retries``, ``max_wait_seconds``).

Client order ids
----------------
Alpaca's trading API v2 documents up to 128 characters and its Broker API (and older trading docs) 48; ids
longer than :data:`MAX_CLIENT_ORDER_ID` (48, valid on both) are refused before anything is sent. The OMS's
``broker_safe_id`` is 28 characters by default.

Statuses
--------
========================================================================  ==================================
Alpaca ``status``                                                         ``BrokerOrderStatus``
========================================================================  ==================================
new, accepted, pending_new, accepted_for_bidding, pending_review, held,   NEW, or PARTIALLY_FILLED when
pending_cancel, pending_replace, stopped, suspended, done_for_day         ``filled_qty`` > 0 (still working:
                                                                          done_for_day resumes next session)
partially_filled                                                          PARTIALLY_FILLED
filled                                                                    FILLED
calculated                                                                FILLED when ``filled_qty`` = ``qty``,
                                                                          else as done_for_day
canceled, expired, replaced                                               CANCELED (nothing more will fill)
rejected                                                                  REJECTED
anything else                                                             :class:`AlpacaProtocolError`
========================================================================  ==================================

The OMS sends market and limit orders only. An order placed elsewhere with another type (a foreign order)
is reported with the nearest of the two, so reconciliation can see and flag it: stop and trailing_stop as
MARKET, stop_limit as LIMIT with its limit price.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import pandas as pd

from ai_trading.errors import ClientOrderIdError, ConfigError, OrderValidationError
from ai_trading.oms.brokers.base import (
    BrokerError,
    BrokerFill,
    BrokerOrder,
    BrokerOrderStatus,
    BrokerUnavailable,
    DuplicateClientOrderId,
    OrderRequest,
    UnknownOrder,
)
from ai_trading.oms.idempotency import canonical_quantity
from ai_trading.oms.models import OrderType, Side
from ai_trading.rest import (
    Credentials,
    RestClient,
    RestError,
    RestUnavailable,
    check_rest_settings,
    credentials_from_env,
)

log = logging.getLogger(__name__)

MAX_CLIENT_ORDER_ID = 48
ORDERS_PAGE = 500  # Alpaca's maximum for GET /v2/orders
ACTIVITIES_PAGE = 100  # Alpaca's maximum page_size for account activities
DUPLICATE_CODE = 40010001

_WORKING = frozenset({"new", "accepted", "pending_new", "accepted_for_bidding", "pending_review", "held",
                      "pending_cancel", "pending_replace", "stopped", "suspended", "done_for_day"})
_FINAL = {"filled": BrokerOrderStatus.FILLED, "canceled": BrokerOrderStatus.CANCELED,
          "expired": BrokerOrderStatus.CANCELED, "replaced": BrokerOrderStatus.CANCELED,
          "rejected": BrokerOrderStatus.REJECTED}
_TYPES = {"market": OrderType.MARKET, "limit": OrderType.LIMIT, "stop": OrderType.MARKET,
          "trailing_stop": OrderType.MARKET, "stop_limit": OrderType.LIMIT}
_SIDES = {"buy": Side.BUY, "sell": Side.SELL, "sell_short": Side.SELL}


@dataclass(frozen=True)
class AlpacaConfig:
    """Where and how to reach Alpaca (``conf/broker/alpaca.yaml``): ``base_url`` is the trading API (paper by
    default; ``https://api.alpaca.markets`` trades real money), ``data_url`` the market-data API; the keys
    are read from the environment variables named here; ``time_in_force`` applies to every order."""

    base_url: str = "https://paper-api.alpaca.markets"
    data_url: str = "https://data.alpaca.markets"
    key_id_env: str = "APCA_API_KEY_ID"
    secret_key_env: str = "APCA_API_SECRET_KEY"
    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    max_retries: int = 3
    backoff_seconds: float = 0.5
    max_wait_seconds: float = 30.0
    time_in_force: Literal["day", "gtc"] = "day"

    def __post_init__(self) -> None:
        check_rest_settings(self, "broker", ("base_url", "data_url"))
        if self.time_in_force not in ("day", "gtc"):
            raise ConfigError(f"broker.time_in_force={self.time_in_force!r}: must be day or gtc")

    def credentials(self) -> Credentials:
        return credentials_from_env(self.key_id_env, self.secret_key_env, "the Alpaca broker")


class AlpacaRejected(BrokerError):
    """Alpaca refused the request (a 4xx other than a duplicate id), or the adapter refused to send it
    (``status`` None: an order Alpaca would refuse): nothing was created or changed."""

    def __init__(self, what: str, status: int | None, code: int | None, message: str) -> None:
        self.status = status
        self.code = code
        if status is None:
            super().__init__(f"{what} not sent: {message}")
            return
        hint = (" (wrong keys, keys of the other environment (paper/live), or an account that may not do this)"
                if status in (401, 403) else "")
        super().__init__(f"Alpaca refused {what}: HTTP {status}" + (f" code={code}" if code is not None else "")
                         + f": {message}{hint}")


class AlpacaProtocolError(BrokerError):
    """Alpaca answered with something this adapter does not know how to read (a new status, a missing field)."""


class AlpacaBroker:
    """Alpaca's trading API v2 (``config.base_url``) as a venue of the OMS (see the module docstring)."""

    def __init__(self, config: AlpacaConfig, *, client: RestClient | None = None) -> None:
        self.config = config
        self._rest = client if client is not None else RestClient(
            config.base_url, config.credentials(), connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout, max_retries=config.max_retries,
            backoff_seconds=config.backoff_seconds, max_wait_seconds=config.max_wait_seconds)
        self._cid_of: dict[str, str] = {}  # Alpaca order id -> client order id, for fills
        log.info("alpaca broker url=%s", config.base_url)

    def close(self) -> None:
        self._rest.close()

    # -- the Broker protocol --------------------------------------------------------------------------
    def submit(self, request: OrderRequest) -> BrokerOrder:
        body = self._order_body(request)
        cid = request.client_order_id
        try:
            answer = self._rest.request("POST", "/v2/orders", json=body, retry=False)
        except RestUnavailable as exc:
            raise BrokerUnavailable(f"submit {cid!r}: outcome unknown, look it up before resending ({exc})") from None
        except RestError as exc:
            if exc.status == 422 and exc.code == DUPLICATE_CODE and "client_order_id" in exc.message:
                if self.get_order(cid) is not None:
                    raise DuplicateClientOrderId(cid) from None
                raise AlpacaProtocolError(f"submit {cid!r}: Alpaca answered {exc.message!r} but holds no order "
                                          "with this client order id") from None
            raise AlpacaRejected(f"order {cid!r}", exc.status, exc.code, exc.message) from None
        order = self._order(answer.body)
        log.info("alpaca order accepted cid=%s broker_id=%s symbol=%s side=%s qty=%s status=%s", cid,
                 order.broker_order_id, order.symbol, order.side, body["qty"], order.status)
        return order

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        try:
            answer = self._read("GET", "/v2/orders:by_client_order_id", f"order {client_order_id!r}",
                                params={"client_order_id": client_order_id}, missing_ok=True)
        except _Missing:
            return None
        return self._order(answer)

    def cancel(self, client_order_id: str) -> BrokerOrder:
        order = self.get_order(client_order_id)
        if order is None:
            raise UnknownOrder(client_order_id)
        if not order.status.is_open:
            return order
        try:
            self._read("DELETE", f"/v2/orders/{order.broker_order_id}", f"cancel of {client_order_id!r}",
                       missing_ok=True)
        except _Missing:
            raise UnknownOrder(client_order_id) from None
        except AlpacaRejected as exc:
            if exc.status != 422:  # 422: not cancelable any more (filled or cancelled meanwhile)
                raise
        after = self.get_order(client_order_id)
        if after is None:
            raise AlpacaProtocolError(f"order {client_order_id!r} vanished after its cancel")
        log.info("alpaca cancel cid=%s broker_id=%s status=%s", client_order_id, after.broker_order_id, after.status)
        return after

    def list_open_orders(self) -> list[BrokerOrder]:
        orders: dict[str, BrokerOrder] = {}
        params: dict[str, Any] = {"status": "open", "direction": "asc", "limit": ORDERS_PAGE}
        while True:
            page = self._read("GET", "/v2/orders", "the open orders", params=params)
            if not isinstance(page, list):
                raise AlpacaProtocolError(f"GET /v2/orders answered {type(page).__name__}, expected a list")
            new = 0
            for raw in page:
                order = self._order(raw)
                if order.broker_order_id not in orders:
                    new += 1
                orders[order.broker_order_id] = order
            if len(page) < ORDERS_PAGE:
                break
            if new == 0:
                raise AlpacaProtocolError(f"more than {ORDERS_PAGE} open orders share one submitted_at: "
                                          "GET /v2/orders cannot page past them")
            # ``after`` is exclusive: step back a microsecond so orders sharing the boundary stamp are not
            # skipped (the repeats are de-duplicated by id).
            last = max(o.submitted_at for o in orders.values())
            params = {**params, "after": _iso(last - timedelta(microseconds=1))}
        return sorted((o for o in orders.values() if o.status.is_open), key=lambda o: o.submitted_at)

    def list_fills(self, since: datetime | None = None) -> list[BrokerFill]:
        if since is not None and since.tzinfo is None:
            raise OrderValidationError(f"list_fills since={since!r} must be tz-aware")
        params: dict[str, Any] = {"direction": "asc", "page_size": ACTIVITIES_PAGE}
        if since is not None:
            params["after"] = _iso(since - timedelta(seconds=1))  # exclusive and coarse: filtered exactly below
        fills: dict[str, BrokerFill] = {}
        while True:
            page = self._read("GET", "/v2/account/activities/FILL", "the fills", params=params)
            if not isinstance(page, list):
                raise AlpacaProtocolError(f"GET /v2/account/activities/FILL answered {type(page).__name__}, "
                                          "expected a list")
            for raw in page:
                fill = self._fill(raw)
                if since is None or fill.timestamp >= since:
                    fills.setdefault(fill.trade_id, fill)
            if len(page) < ACTIVITIES_PAGE:
                break
            params = {**params, "page_token": _field(page[-1], "id", "activity")}
        return sorted(fills.values(), key=lambda f: (f.timestamp, f.trade_id))

    # -- internals --------------------------------------------------------------------------------------
    def _order_body(self, request: OrderRequest) -> dict[str, Any]:
        cid = request.client_order_id
        if not isinstance(cid, str) or not cid or len(cid) > MAX_CLIENT_ORDER_ID:
            raise AlpacaRejected(f"order {cid!r}", None, None,
                                 f"a client order id must be 1..{MAX_CLIENT_ORDER_ID} characters")
        try:
            kind, side = OrderType(request.order_type), Side(request.side)
            body: dict[str, Any] = {"symbol": request.symbol, "qty": canonical_quantity(request.quantity),
                                    "side": side.value, "type": kind.value,
                                    "time_in_force": self.config.time_in_force, "client_order_id": cid}
            if kind is OrderType.LIMIT:
                if request.limit_price is None:
                    raise ValueError("a limit order needs limit_price")
                body["limit_price"] = canonical_quantity(request.limit_price)
            elif request.limit_price is not None:
                raise ValueError("a market order takes no limit_price")
        except (ValueError, ClientOrderIdError) as exc:
            raise AlpacaRejected(f"order {cid!r}", None, None, str(exc)) from None
        return body

    def _read(self, method: str, path: str, what: str, *, params: Mapping[str, Any] | None = None,
              missing_ok: bool = False) -> Any:
        try:
            return self._rest.request(method, path, params=params, retry=True).body
        except RestUnavailable as exc:
            raise BrokerUnavailable(f"{what}: {exc}") from None
        except RestError as exc:
            if exc.status == 404 and missing_ok:
                raise _Missing from None
            raise AlpacaRejected(what, exc.status, exc.code, exc.message) from None

    def _order(self, raw: Any) -> BrokerOrder:
        if not isinstance(raw, dict):
            raise AlpacaProtocolError(f"an order should be a JSON object, got {type(raw).__name__}")
        oid = str(_field(raw, "id", "order"))
        qty_text = raw.get("qty")
        if qty_text is None:
            raise AlpacaProtocolError(f"order {oid} has no qty (a notional order): the OMS trades quantities")
        quantity = _number(qty_text, "qty", oid)
        filled = _number(raw.get("filled_qty") or "0", "filled_qty", oid)
        kind_text = raw.get("type") or raw.get("order_type")
        if kind_text not in _TYPES:
            raise AlpacaProtocolError(f"order {oid} has type {kind_text!r}; known: {sorted(_TYPES)}")
        side_text = raw.get("side")
        if side_text not in _SIDES:
            raise AlpacaProtocolError(f"order {oid} has side {side_text!r}; known: {sorted(_SIDES)}")
        status = _status(str(raw.get("status")), quantity, filled, oid)
        avg = raw.get("filled_avg_price")
        average = _number(avg, "filled_avg_price", oid) if avg not in (None, "") and filled > 0 else None
        limit = raw.get("limit_price")
        cid = str(_field(raw, "client_order_id", f"order {oid}"))
        self._cid_of[oid] = cid
        return BrokerOrder(
            client_order_id=cid, broker_order_id=oid, symbol=str(_field(raw, "symbol", f"order {oid}")),
            side=_SIDES[side_text], quantity=quantity, order_type=_TYPES[kind_text],
            limit_price=None if limit in (None, "") else _number(limit, "limit_price", oid), status=status,
            filled_quantity=filled, average_price=average,
            submitted_at=_time(raw.get("submitted_at") or _field(raw, "created_at", f"order {oid}"), oid))

    def _fill(self, raw: Any) -> BrokerFill:
        if not isinstance(raw, dict):
            raise AlpacaProtocolError(f"an activity should be a JSON object, got {type(raw).__name__}")
        aid = str(_field(raw, "id", "activity"))
        oid = str(_field(raw, "order_id", f"activity {aid}"))
        side_text = raw.get("side")
        if side_text not in _SIDES:
            raise AlpacaProtocolError(f"activity {aid} has side {side_text!r}; known: {sorted(_SIDES)}")
        return BrokerFill(trade_id=aid, broker_order_id=oid, client_order_id=self._client_id(oid),
                          symbol=str(_field(raw, "symbol", f"activity {aid}")), side=_SIDES[side_text],
                          quantity=_number(_field(raw, "qty", f"activity {aid}"), "qty", aid),
                          price=_number(_field(raw, "price", f"activity {aid}"), "price", aid), fee=0.0,
                          timestamp=_time(_field(raw, "transaction_time", f"activity {aid}"), aid))

    def _client_id(self, order_id: str) -> str:
        if order_id not in self._cid_of:
            try:
                raw = self._read("GET", f"/v2/orders/{order_id}", f"order {order_id}", missing_ok=True)
            except _Missing:
                raise AlpacaProtocolError(f"a fill names order {order_id}, which Alpaca does not know") from None
            self._order(raw)
        return self._cid_of[order_id]


class _Missing(Exception):
    """A 404 the caller asked to see."""



def _field(raw: Mapping[str, Any], name: str, what: str) -> Any:
    value = raw.get(name)
    if value is None or value == "":
        raise AlpacaProtocolError(f"{what}: field {name!r} is missing")
    return value


def _number(value: Any, name: str, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AlpacaProtocolError(f"{where}: {name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise AlpacaProtocolError(f"{where}: {name}={value!r} is not finite")
    return number


def _time(value: Any, where: str) -> datetime:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise AlpacaProtocolError(f"{where}: timestamp {value!r} does not parse") from None
    if pd.isna(stamp) or stamp.tzinfo is None:
        raise AlpacaProtocolError(f"{where}: timestamp {value!r} is not a tz-aware time")
    return stamp.tz_convert("UTC").to_pydatetime()


def _iso(when: datetime) -> str:
    return pd.Timestamp(when).tz_convert("UTC").isoformat().replace("+00:00", "Z")


def _status(text: str, quantity: float, filled: float, oid: str) -> BrokerOrderStatus:
    if text in _FINAL:
        return _FINAL[text]
    if text == "calculated" and filled >= quantity:
        return BrokerOrderStatus.FILLED
    if text in _WORKING or text in ("partially_filled", "calculated"):
        return BrokerOrderStatus.PARTIALLY_FILLED if filled > 0 else BrokerOrderStatus.NEW
    raise AlpacaProtocolError(f"order {oid} has status {text!r}, which this adapter does not know")
