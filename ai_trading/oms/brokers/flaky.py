"""A venue whose submissions can fail like a network does: the test double for timeouts and 5xx answers.

:class:`FlakyBroker` wraps a real :class:`~ai_trading.oms.brokers.base.Broker` (the paper venue) and is one:
every call goes to the wrapped venue, except that planned submissions raise ``BrokerUnavailable`` either
before the request reaches it (a lost request: the venue never saw the order) or after the venue durably
accepted it (a lost acknowledgement: the order exists, its answer never came back). Either way the caller
sees the same error and must look the order up by client order id before resending.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from ai_trading.oms.brokers.base import Broker, BrokerFill, BrokerOrder, BrokerUnavailable, OrderRequest


class SubmitFault(StrEnum):
    LOST_REQUEST = "lost_request"  # raised before the venue saw the order
    LOST_ACK = "lost_ack"  # raised after the venue accepted it


class FlakyBroker:
    """``broker`` with the next submissions failing as ``faults`` says, one entry per ``submit`` call in
    order (None: that call goes through); after the plan, every call goes through. :meth:`fail_next`
    adds to the plan; :attr:`injected` records what was injected, as (fault, client order id)."""

    def __init__(self, broker: Broker, faults: Iterable[SubmitFault | None] = ()) -> None:
        self.broker = broker
        self._plan: deque[SubmitFault | None] = deque(SubmitFault(f) if f is not None else None for f in faults)
        self.injected: list[tuple[SubmitFault, str]] = []

    def fail_next(self, fault: SubmitFault, times: int = 1) -> None:
        """The next ``times`` submissions after those already planned fail with ``fault``."""
        self._plan.extend([SubmitFault(fault)] * times)

    def submit(self, request: OrderRequest) -> BrokerOrder:
        fault = self._plan.popleft() if self._plan else None
        if fault is SubmitFault.LOST_REQUEST:
            self.injected.append((fault, request.client_order_id))
            raise BrokerUnavailable(f"submit {request.client_order_id!r}: the request was lost before the venue "
                                    "(injected fault)")
        order = self.broker.submit(request)
        if fault is SubmitFault.LOST_ACK:
            self.injected.append((fault, request.client_order_id))
            raise BrokerUnavailable(f"submit {request.client_order_id!r}: the venue accepted it as "
                                    f"{order.broker_order_id} but the answer was lost (injected fault)")
        return order

    def cancel(self, client_order_id: str) -> BrokerOrder:
        return self.broker.cancel(client_order_id)

    def get_order(self, client_order_id: str) -> BrokerOrder | None:
        return self.broker.get_order(client_order_id)

    def list_open_orders(self) -> list[BrokerOrder]:
        return self.broker.list_open_orders()

    def list_fills(self, since: datetime | None = None) -> list[BrokerFill]:
        return self.broker.list_fills(since)
