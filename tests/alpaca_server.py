"""A stateful stand-in for Alpaca's REST APIs on 127.0.0.1 (pytest-httpserver's server, started by a plain
fixture so it runs without the pytest plugin), answering with the JSON shapes Alpaca documents:

- trading API v2: ``POST /v2/orders`` (422 ``{"code": 40010001, "message": "client_order_id must be unique"}``
  on a repeated id), ``GET /v2/orders:by_client_order_id``, ``GET /v2/orders`` (``status``, ``limit``,
  ``after``, ``direction``), ``GET /v2/orders/{id}``, ``DELETE /v2/orders/{id}`` (204; 422 when not
  cancelable), ``GET /v2/account/activities/FILL`` (``page_size``, ``page_token``, ``after``, ``direction``);
- market data v2: ``GET /v2/stocks/bars`` (``{"bars": {"SPY": [{"t","o","h","l","c","v","n","vw"}]},
  "next_page_token": ...}``).

``fail(method, path, *answers)`` queues answers served before the normal ones (a werkzeug ``Response`` or a
callable taking the request); every request is recorded with its headers.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

Answer = Response | Callable[[Request], Response]
OPEN = {"new", "accepted", "pending_new", "partially_filled", "pending_cancel", "done_for_day"}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    args: dict[str, str]
    headers: dict[str, str]
    body: bytes


def error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps({"code": code, "message": message}), status=status, headers=headers,
                    content_type="application/json")


def ok(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeAlpaca:
    """Orders, fills and bars held in memory; see the module docstring for the routes."""

    BARS_PAGE = 3  # the fake's own page cap, so a few bars already need several pages

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.orders: dict[str, dict[str, Any]] = {}
        self.activities: list[dict[str, Any]] = []
        self.bars: dict[str, list[dict[str, Any]]] = {}
        self.faults: dict[tuple[str, str], deque[Answer]] = defaultdict(deque)
        self.seen: list[Seen] = []
        self.clock = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
        server.expect_request(re.compile(".*")).respond_with_handler(self.handle)

    @property
    def url(self) -> str:
        return self.server.url_for("/").rstrip("/")

    def fail(self, method: str, path: str, *answers: Answer) -> None:
        self.faults[(method, path)].extend(answers)

    def requests(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path == path]

    # -- state helpers for tests ------------------------------------------------------------------------
    def tick(self) -> datetime:
        self.clock += timedelta(milliseconds=1)
        return self.clock

    def add_order(self, client_order_id: str, symbol: str = "SPY", qty: str = "1", side: str = "buy",
                  kind: str = "market", status: str = "new", limit_price: str | None = None,
                  submitted_at: datetime | None = None) -> dict[str, Any]:
        when = submitted_at or self.tick()
        order = {"id": str(uuid.uuid4()), "client_order_id": client_order_id, "created_at": stamp(when),
                 "updated_at": stamp(when), "submitted_at": stamp(when), "filled_at": None, "expired_at": None,
                 "canceled_at": None, "failed_at": None, "replaced_at": None, "replaced_by": None, "replaces": None,
                 "asset_id": "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415", "symbol": symbol, "asset_class": "us_equity",
                 "notional": None, "qty": qty, "filled_qty": "0", "filled_avg_price": None, "order_class": "",
                 "order_type": kind, "type": kind, "side": side, "time_in_force": "day",
                 "limit_price": limit_price, "stop_price": None, "status": status, "extended_hours": False,
                 "legs": None, "trail_percent": None, "trail_price": None, "hwm": None}
        self.orders[order["id"]] = order
        return order

    def fill(self, order: dict[str, Any], qty: str, price: str, when: datetime | None = None) -> dict[str, Any]:
        when = when or self.tick()
        done = float(order["filled_qty"]) + float(qty)
        notional = float(order["filled_avg_price"] or 0) * float(order["filled_qty"]) + float(qty) * float(price)
        order["filled_qty"] = f"{done:g}"
        order["filled_avg_price"] = f"{notional / done:g}"
        order["status"] = "filled" if done >= float(order["qty"]) else "partially_filled"
        activity = {"activity_type": "FILL", "cum_qty": f"{done:g}",
                    "id": f"{when.strftime('%Y%m%d%H%M%S%f')[:17]}::{uuid.uuid4()}",
                    "leaves_qty": f"{float(order['qty']) - done:g}", "price": price, "qty": qty,
                    "side": order["side"], "symbol": order["symbol"], "transaction_time": stamp(when),
                    "order_id": order["id"], "type": "fill" if order["status"] == "filled" else "partial_fill"}
        self.activities.append(activity)
        return activity

    # -- routing ----------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        self.seen.append(Seen(request.method, request.path, dict(request.args), dict(request.headers),
                              request.get_data()))
        queued = self.faults.get((request.method, request.path))
        if queued:
            answer = queued.popleft()
            return answer(request) if callable(answer) and not isinstance(answer, Response) else answer
        return self.route(request)

    def route(self, request: Request) -> Response:
        method, path = request.method, request.path
        if method == "POST" and path == "/v2/orders":
            return self._submit(request)
        if method == "GET" and path == "/v2/orders:by_client_order_id":
            cid = request.args.get("client_order_id")
            for order in self.orders.values():
                if order["client_order_id"] == cid:
                    return ok(order)
            return error(404, 40410000, f"order not found for {cid}")
        if method == "GET" and path == "/v2/orders":
            return self._list_orders(request)
        if path.startswith("/v2/orders/"):
            order = self.orders.get(path.rsplit("/", 1)[1])
            if order is None:
                return error(404, 40410000, "order not found")
            if method == "GET":
                return ok(order)
            if method == "DELETE":
                if order["status"] not in OPEN:
                    return error(422, 42210000, "order is not cancelable")
                order["status"] = "canceled"
                order["canceled_at"] = stamp(self.tick())
                return Response(status=204)
        if method == "GET" and path == "/v2/account/activities/FILL":
            return self._activities(request)
        if method == "GET" and path == "/v2/stocks/bars":
            return self._bars(request)
        return error(404, 40410000, f"no route {method} {path}")

    def _submit(self, request: Request) -> Response:
        body = json.loads(request.get_data())
        if any(o["client_order_id"] == body.get("client_order_id") for o in self.orders.values()):
            return error(422, 40010001, "client_order_id must be unique")
        order = self.add_order(body["client_order_id"], body["symbol"], body["qty"], body["side"], body["type"],
                               "accepted", body.get("limit_price"))
        order["time_in_force"] = body["time_in_force"]
        return ok(order)

    def _list_orders(self, request: Request) -> Response:
        assert request.args.get("status") == "open" and request.args.get("direction") == "asc"
        limit = int(request.args.get("limit", 50))
        after = request.args.get("after")
        rows = sorted((o for o in self.orders.values() if o["status"] in OPEN), key=lambda o: o["submitted_at"])
        if after is not None:
            rows = [o for o in rows if pd.Timestamp(o["submitted_at"]) > pd.Timestamp(after)]
        return ok(rows[:limit])

    def _activities(self, request: Request) -> Response:
        assert request.args.get("direction") == "asc"
        size = int(request.args.get("page_size", 50))
        rows = sorted(self.activities, key=lambda a: (a["transaction_time"], a["id"]))
        if "after" in request.args:
            rows = [a for a in rows if pd.Timestamp(a["transaction_time"]) > pd.Timestamp(request.args["after"])]
        token = request.args.get("page_token")
        if token is not None:
            ids = [a["id"] for a in rows]
            rows = rows[ids.index(token) + 1:]
        return ok(rows[:size])

    def _bars(self, request: Request) -> Response:
        symbols = request.args["symbols"].split(",")
        start, end = pd.Timestamp(request.args["start"]), pd.Timestamp(request.args["end"])
        rows = [(s, b) for s in symbols for b in self.bars.get(s, []) if start <= pd.Timestamp(b["t"]) <= end]
        offset = int(base64.b64decode(request.args["page_token"])) if "page_token" in request.args else 0
        size = min(int(request.args.get("limit", 1000)), self.BARS_PAGE)
        page = rows[offset:offset + size]
        out: dict[str, list[dict[str, Any]]] = {}
        for symbol, bar in page:
            out.setdefault(symbol, []).append(bar)
        more = offset + size < len(rows)
        token = base64.b64encode(str(offset + size).encode()).decode() if more else None
        return ok({"bars": out, "next_page_token": token})


class serve:  # noqa: N801 - used as ``with serve() as server``
    """A started server on 127.0.0.1, stopped on exit (stopping takes half a second: share one per module and
    give each test a fresh :func:`fake_on` it)."""

    def __enter__(self) -> HTTPServer:
        self.server = HTTPServer(host="127.0.0.1", threaded=True)
        self.server.start()
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.server.clear()
        self.server.stop()


def fake_on(server: HTTPServer) -> FakeAlpaca:
    """A fresh :class:`FakeAlpaca` on ``server`` (the previous one's handlers and log are dropped)."""
    server.clear()
    return FakeAlpaca(server)
