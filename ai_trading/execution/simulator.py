"""Execution simulator: the single source of execution truth for backtests, the RL env and the paper venue.

Timing and fill-price convention (both paths):

- A bar's timestamp names the bar; its data are known at its close. An order submitted at time ``ts``
  was decided at the close of the last bar with timestamp <= ``ts`` (the decision bar ``d``) and executes
  from the symbol's next bar ``e > d``. Orders before a symbol's first bar, or at/after its last bar
  (nothing left to execute on), are rejected.
- The arrival price is bar ``e``'s open: the first price a decision taken after ``d``'s close can act on
  (for 1-minute bars it is within a tick of ``d``'s close; for daily bars the overnight gap is market
  risk, not execution cost, and lands in gross PnL).
- Each bar the order works is one child slice: it reaches the venue after a latency (constant or
  lognormal, plus spikes growing with volatility) and meets the price at that moment on a path through
  the bar, open -> low -> high -> close for an up bar and open -> high -> low -> close for a down bar,
  at constant speed over ``bar_seconds``. For daily bars (6.5 h) milliseconds of latency leave the price
  at the open: the fill is next-bar open plus costs. For 1-minute bars a latency spike moves it into the
  bar. Bias: the path ordering is a convention, not data, so the within-bar drift after latency is a
  guess; it is symmetric in expectation for buys and sells and small next to the spread.
- Aggressive fills pay ``half_spread + impact`` on that reference price; ``impact = scale * (fixed_bps +
  vol_coef * sigma + impact_coef * sigma * sqrt(q / V))`` (square-root law). ``half_spread`` and ``sigma``
  are those known at the bar before the slice (no look-ahead). A slice fills at most
  ``participation_cap * V`` (a zero-volume bar fills nothing); the rest carries to the next bar (DAY to
  the end of its session, GTC to the end of the data) or is cancelled (IOC).
- Shared volume (per-order path): the orders of one :meth:`ExecutionSimulator.execute_many` call share
  each bar's volume per symbol, taking their slices in submission-time order (list order between equal
  times). A slice after ``u`` shares already traded on its bar and symbol (both sides count: orders do
  not cross each other) fills at most ``participation_cap * V - u`` and its size term is the square-root
  cost of the bar's participation growing from ``u`` to ``u + q``: an average rate ``impact_coef * sigma *
  ((u + q)**1.5 - u**1.5) / (q * sqrt(V))``, which is ``impact_coef * sigma * sqrt(q / V)`` for ``u = 0``.
  So an order alone on its bar costs what it costs on the vectorised paths, and a market order split into
  pieces on one bar fills and pays in total what it would unsplit (fees aside: the minimum is per child).
  Separate calls are separate scenarios: they do not see each other's volume.
- Limit orders: marketable when the limit reaches the far touch at arrival (``ref * (1 + half_spread)``
  for a buy, ``ref * (1 - half_spread)`` for a sell) -> aggressive fill capped at the limit; this is
  checked on every bar the order works. Otherwise it fills as a maker, at the limit, without spread or
  impact, on at most ``(1 - queue_haircut)`` of the capacity left on the bar, and only if the path trades
  through the limit (below it for a buy, above for a sell) after the order is on the book: after the
  latency on its first bar (a low reached before the order arrives does not fill it), on the whole bar
  after that. Maker fills also use up the bar's volume.
- Fees per fill slice: ``max(fee_per_share * q + fee_bps * notional, fee_min)`` (the minimum applies per
  child order, one per bar with a fill).
- Cash: ``cash -= q * ref + spread_cost + impact_cost + fee`` with ``spread_cost + impact_cost ==
  q * (price - ref)`` for buys, so net PnL = gross PnL (fills at ``ref``, no fees) - costs.

Randomness: only the ``numpy.random.Generator`` made from ``seed``, in noise slots of two standard normals
(:func:`ai_trading.execution.market.draw_noise`), one per bar and symbol. The vectorised paths draw a fresh
``(T - 1, N)`` table per call. The per-order path keeps one table per simulator, drawn from the generator
on first need in row order: slot ``[t - 1, n]`` sets the latency of every slice on bar ``t`` of symbol
``n``, in every call (orders on one bar and symbol see the same latency: their fills are not independent
draws, which leaves the mean cost unbiased but understates its spread across them). Hence the contract
between the paths: on a fresh simulator, per-order market orders that never share a bar and symbol fill
bit for bit like :meth:`ExecutionSimulator.run_targets` (share targets, no trade band) on a fresh
simulator with the same seed, whose target moves by each order's signed quantity at its decision bar
(bit for bit where the target minus the position is exactly the order's remaining quantity, as with whole
shares; otherwise to the rounding of that difference).
Market orders on one side sharing a bar and symbol fill and pay spread and impact as one order of their
total would (see above) but each pays its own fee; opposite orders on one bar do not net as a target does.
Drawing the table advances the shared generator: a later ``run_targets`` on the same simulator draws other
noise.
"""

from __future__ import annotations

import bisect
import gc
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from ai_trading.data.frequency import BarFrequency
from ai_trading.errors import OrderValidationError
from ai_trading.execution.config import SimulatorConfig
from ai_trading.execution.cost_model import CostObservation, EwmaCostModel
from ai_trading.execution.kernels import (
    EPS_SHARES,
    FILL_FEE,
    FILL_IMPACT,
    FILL_PRICE,
    FILL_QTY,
    FILL_REF,
    FILL_SPREAD,
    N_FILL,
    ORDER_MAKER,
    run_orders,
)
from ai_trading.execution.market import NOISE_FIELDS, build_execution, draw_noise
from ai_trading.execution.vectorized import SequenceResult, StepResult, run_targets, step

log = logging.getLogger(__name__)


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is OrderSide.BUY else -1


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(StrEnum):
    DAY = "day"
    IOC = "ioc"
    GTC = "gtc"


class Liquidity(StrEnum):
    TAKER = "taker"
    MAKER = "maker"


class SimOrderStatus(StrEnum):
    FILLED = "filled"
    CANCELLED = "cancelled"  # IOC remainder
    EXPIRED = "expired"  # DAY remainder at session end
    WORKING = "working"  # GTC remainder when the data end


@dataclass(frozen=True)
class SimOrder:
    """An order to simulate; validated at construction (positive quantity, finite limit, tz-aware time)."""

    symbol: str
    side: OrderSide
    quantity: float
    submitted_at: pd.Timestamp
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    time_in_force: TimeInForce = TimeInForce.DAY

    def __post_init__(self) -> None:
        try:
            side, kind, tif = OrderSide(self.side), OrderType(self.order_type), TimeInForce(self.time_in_force)
        except ValueError as exc:
            raise OrderValidationError(f"order {self.symbol}: {exc}") from exc
        if not isinstance(self.quantity, int | float) or not math.isfinite(self.quantity) or self.quantity <= 0:
            raise OrderValidationError(f"order {self.symbol}: quantity {self.quantity!r} must be finite and > 0")
        if kind is OrderType.LIMIT:
            if self.limit_price is None or not math.isfinite(self.limit_price) or self.limit_price <= 0:
                raise OrderValidationError(f"limit order {self.symbol}: limit price {self.limit_price!r} must "
                                           "be a finite number > 0")
        elif self.limit_price is not None:
            raise OrderValidationError(f"market order {self.symbol} has a limit price {self.limit_price!r}")
        try:
            ts = pd.Timestamp(self.submitted_at)
        except (ValueError, TypeError) as exc:
            raise OrderValidationError(f"order {self.symbol}: bad submission time {self.submitted_at!r}") from exc
        if ts is pd.NaT or ts.tzinfo is None:
            raise OrderValidationError(f"order {self.symbol}: submission time {self.submitted_at!r} must be "
                                       "tz-aware")
        object.__setattr__(self, "side", side)
        object.__setattr__(self, "order_type", kind)
        object.__setattr__(self, "time_in_force", tif)
        object.__setattr__(self, "quantity", float(self.quantity))
        object.__setattr__(self, "submitted_at", ts.tz_convert("UTC"))


class FillEvent(NamedTuple):
    """One fill: ``quantity`` unsigned shares at ``price``; costs in currency; context for the cost model."""

    time: pd.Timestamp
    quantity: float
    price: float
    fee: float
    liquidity: Liquidity
    reference_price: float
    spread_cost: float
    impact_cost: float
    bar_volume: float
    volatility: float
    half_spread_bps: float


class SimExecutionResult(NamedTuple):
    """Outcome of one order: fills, quantities, the cost split (currency) and the final status."""

    order: SimOrder
    fills: tuple[FillEvent, ...]
    arrival_price: float
    filled_quantity: float
    unfilled_quantity: float
    spread_cost: float
    impact_cost: float
    fees: float
    status: SimOrderStatus

    @property
    def average_price(self) -> float:
        if not self.fills:
            return math.nan
        return sum(f.quantity * f.price for f in self.fills) / self.filled_quantity

    @property
    def slippage_bps(self) -> float:
        """Signed cost of the average fill against the arrival price (bps; positive = worse)."""
        return self.order.side.sign * (self.average_price - self.arrival_price) / self.arrival_price * 1e4

    @property
    def realized_cost(self) -> float:
        """Spread + impact + fees in currency (the gap between gross and net PnL)."""
        return self.spread_cost + self.impact_cost + self.fees



_TIF_CODE = {TimeInForce.DAY: 0, TimeInForce.IOC: 1, TimeInForce.GTC: 2}
_REMAINDER_STATUS = {TimeInForce.IOC: SimOrderStatus.CANCELLED, TimeInForce.DAY: SimOrderStatus.EXPIRED,
                     TimeInForce.GTC: SimOrderStatus.WORKING}


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while many small acyclic result tuples are built.

    Building ~10^5 NamedTuples otherwise triggers a generation-0 collection every 700 allocations,
    which doubled the per-order path's time in benchmarks/bench_simulator.py; the objects hold no
    reference cycles, so nothing is left for the collector to find.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class ExecutionSimulator:
    """Simulated execution against canonical bars; per-order (paper venue) and vectorised (backtest, RL).

    ``config`` is the cost truth (the simulator preset); ``cost_model`` adds its learned per-symbol multipliers
    on top, exactly as :func:`~ai_trading.execution.build_execution` does for every other path; ``frequency``
    (``Bars.frequency``, which honours ``data.periods_per_year``) is inferred from the bars when None.
    """

    def __init__(self, config: SimulatorConfig, bars: pd.DataFrame, cost_model: EwmaCostModel | None = None,
                 seed: int | np.random.Generator = 0, frequency: BarFrequency | None = None) -> None:
        self.config = config
        self.cost_model = cost_model
        self.rng = np.random.default_rng(seed)
        self.market, self.params = build_execution(bars, config, cost_model, frequency)
        m = self.market
        T, N = m.open.shape
        self._ns: list[int] = m.timestamps.asi8.tolist()
        self._ns_array = m.timestamps.asi8
        self._stamps: list[pd.Timestamp] = list(m.timestamps)
        self._sym_index = {s: i for i, s in enumerate(m.symbols)}
        nxt = np.full((T + 1, N), T, dtype=np.int64)
        for t in range(T - 1, -1, -1):
            nxt[t] = np.where(m.tradable[t], t, nxt[t + 1])
        self._next_tradable = nxt
        rows = [np.flatnonzero(m.tradable[:, n]) for n in range(N)]
        self._first_ns = [self._ns[r[0]] for r in rows]
        self._last_ns = [self._ns[r[-1]] for r in rows]
        change = np.flatnonzero(np.diff(m.session) != 0)
        ends = np.append(change, T - 1)
        self._session_end = np.repeat(ends, np.diff(np.concatenate(([-1], ends)))).astype(np.int64)
        self._noise = np.empty((0, N, NOISE_FIELDS))  # the per-order path's noise table, drawn on first need

    def cost_observations(self, results: Sequence[SimExecutionResult]) -> list[CostObservation]:
        """The taker fills of ``results`` as fill reports for :meth:`EwmaCostModel.update` (the half-spread
        paid, and the preset's before the learned multiplier)."""
        scale = dict(zip(self.market.symbols, self.params.spread_scale.tolist(), strict=True))
        return [CostObservation(r.order.symbol, r.order.side.sign, f.quantity, f.price, f.reference_price,
                                f.volatility, f.bar_volume,
                                f.half_spread_bps / scale[r.order.symbol] if scale[r.order.symbol] > 0 else 0.0,
                                f.half_spread_bps)
                for r in results for f in r.fills if f.liquidity is Liquidity.TAKER]

    # -- vectorised path -----------------------------------------------------------------------------
    def run_targets(self, targets: npt.NDArray[np.float64], initial_cash: float, *,
                    initial_positions: npt.NDArray[np.float64] | None = None,
                    targets_are_weights: bool = True) -> SequenceResult:
        """Execute a T x N target sequence with this simulator's market, costs and generator."""
        return run_targets(self.market, self.params, targets, self.rng, initial_cash=initial_cash,
                           initial_positions=initial_positions, targets_are_weights=targets_are_weights)

    def step(self, positions: npt.NDArray[np.float64], cash: npt.NDArray[np.float64],
             targets: npt.NDArray[np.float64], t: npt.ArrayLike, *, targets_are_weights: bool = True) -> StepResult:
        """One bar for a batch of envs (see :func:`ai_trading.execution.vectorized.step`)."""
        return step(self.market, self.params, positions, cash, targets, t, self.rng,
                    targets_are_weights=targets_are_weights)

    # -- per-order path ------------------------------------------------------------------------------
    def execute(self, order: SimOrder) -> SimExecutionResult:
        """Simulate one order from submission to its final status."""
        return self.execute_many([order])[0]

    def _window(self, order: SimOrder) -> tuple[int, int, int]:
        s = self._sym_index.get(order.symbol, -1)
        if s < 0:
            raise OrderValidationError(f"unknown symbol {order.symbol!r}; simulator has {list(self._sym_index)}")
        ns = order.submitted_at.value
        if ns < self._first_ns[s]:
            raise OrderValidationError(f"order {order.symbol} at {order.submitted_at} is before the symbol's "
                                       f"first bar {pd.Timestamp(self._first_ns[s], tz='UTC')}")
        if ns >= self._last_ns[s]:
            raise OrderValidationError(f"order {order.symbol} at {order.submitted_at} is at or after the "
                                       f"symbol's last bar {pd.Timestamp(self._last_ns[s], tz='UTC')}: "
                                       "no bar left to execute on")
        e = int(self._next_tradable[bisect.bisect_right(self._ns, ns), s])
        tif = order.time_in_force
        stop = e if tif is TimeInForce.IOC else (
            int(self._session_end[e]) if tif is TimeInForce.DAY else len(self._ns) - 1)
        return s, e, stop

    def execute_many(self, orders: Sequence[SimOrder]) -> list[SimExecutionResult]:
        """Simulate a batch of orders together (the fast path for many orders); results in list order.

        The orders of one call share each bar's volume, in submission-time order (list order between equal
        times); separate calls do not see each other's volume. See the module docstring for the noise.
        """
        n = len(orders)
        if n == 0:
            return []
        sym, ns, start, stop, side, qty, is_limit, limit = self._order_arrays(orders)
        # Priority: by first bar (what the bar-major kernel needs), then submission time, then list order;
        # on one symbol a later first bar means a later submission, so this is submission-time priority.
        queue = np.lexsort((np.arange(n), ns, start))
        noise = self._noise_rows(int(stop.max()))
        m, p = self.market, self.params
        used = np.zeros(m.open.shape)
        filled = np.zeros(n)
        active = np.empty(n, dtype=np.int64)
        state = np.zeros(3, dtype=np.int64)
        parts: list[tuple[Any, Any, Any]] = []
        size = max(16, 2 * n)
        while state[1] < n or state[2] > 0:
            out_order = np.empty(size, dtype=np.int64)
            out_bar = np.empty(size, dtype=np.int64)
            out = np.empty((size, N_FILL))
            k = run_orders(m.open, m.high, m.low, m.close, m.volume, m.half_spread, m.vol, p.impact_scale,
                           p.values, sym, side, qty, is_limit, limit, start, stop, queue, noise, used, filled,
                           active, state, out_order, out_bar, out)
            parts.append((out_order[:k], out_bar[:k], out[:k]))
            size *= 2  # long GTC orders: keep the number of calls logarithmic
        with _gc_paused():
            return self._results(orders, sym, start, qty, filled, parts)

    def _order_arrays(self, orders: Sequence[SimOrder]) -> tuple[Any, ...]:
        """Per-order arrays of the order kernel: symbol column, submission ns, first and last bar, signed
        side, quantity, limit flag and price; an order outside the data raises with its own message."""
        n = len(orders)
        index = self._sym_index
        sym = np.fromiter((index.get(o.symbol, -1) for o in orders), dtype=np.int64, count=n)
        ns = np.fromiter((o.submitted_at.value for o in orders), dtype=np.int64, count=n)
        valid = sym >= 0
        first_ns, last_ns = np.asarray(self._first_ns), np.asarray(self._last_ns)
        valid[valid] &= (ns[valid] >= first_ns[sym[valid]]) & (ns[valid] < last_ns[sym[valid]])
        if not valid.all():
            self._window(orders[int(np.argmin(valid))])  # raises with the order's own message
        tif = np.fromiter((_TIF_CODE[o.time_in_force] for o in orders), dtype=np.int64, count=n)
        start = self._next_tradable[np.searchsorted(self._ns_array, ns, side="right"), sym]
        stop = np.where(tif == 0, self._session_end[start], np.where(tif == 1, start, len(self._ns) - 1))
        side = np.fromiter((o.side.sign for o in orders), dtype=np.float64, count=n)
        qty = np.fromiter((o.quantity for o in orders), dtype=np.float64, count=n)
        is_limit = np.fromiter((o.order_type is OrderType.LIMIT for o in orders), dtype=np.bool_, count=n)
        limit = np.fromiter((o.limit_price or 0.0 for o in orders), dtype=np.float64, count=n)
        return sym, ns, start, stop, side, qty, is_limit, limit

    def order_window(self, order: SimOrder) -> tuple[int, int]:
        """The first and last bar (row indices) ``order`` can work on: the symbol's next bar after the
        decision bar, and the end of its session (DAY), that bar (IOC) or the last row (GTC); an order
        outside the data raises ``OrderValidationError``."""
        _, first, last = self._window(order)
        return first, last

    def execute_bar(self, t: int, orders: Sequence[SimOrder], filled: Sequence[float]) -> list[FillEvent | None]:
        """One bar of the per-order path, for a venue that learns of its bars one at a time: each order's
        slice on bar ``t`` (None when it does not fill there), given ``filled[i]`` shares of ``orders[i]``
        done on the bars before.

        Orders not working on ``t`` (first bar after ``t``, last bar before it, or nothing left) take no
        slice. The others take theirs exactly as :meth:`execute_many` of the same list takes them on ``t``:
        the same kernel resumed at ``t`` (orders already working first, in priority order, then those
        starting on ``t``), the same bar-volume sharing and the same noise slot. So calling this for each
        bar in turn, with ``filled`` the running sum of the fills returned, gives bit for bit the fills of one
        :meth:`execute_many` call on a simulator with the same seed, for orders that were not withdrawn in
        between (a withdrawn order simply leaves the list).
        """
        n = len(orders)
        T = len(self._ns)
        if not 1 <= t < T:
            raise OrderValidationError(f"bar {t} is outside rows 1..{T - 1} of the market (row 0 has no "
                                       "decision bar before it)")
        if len(filled) != n:
            raise OrderValidationError(f"{n} orders but {len(filled)} filled quantities")
        events: list[FillEvent | None] = [None] * n
        if n == 0:
            return events
        sym, ns, start, stop, side, qty, is_limit, limit = self._order_arrays(orders)
        done = np.asarray(filled, dtype=np.float64).copy()
        if done.shape != (n,) or not (np.isfinite(done).all() and (done >= 0).all()):
            raise OrderValidationError(f"filled quantities must be {n} finite numbers >= 0, got {filled!r}")
        working = np.flatnonzero((start <= t) & (t <= stop) & (qty - done > EPS_SHARES))
        if working.size == 0:
            return events
        queue = working[np.lexsort((working, ns[working], start[working]))]
        carried = int(np.count_nonzero(start[queue] < t))
        # The kernel sees rows t-1 (decision) and t (execution) only: orders already working start on
        # local row 0 (so they rest on the book), the others on local row 1, and all stop there.
        local_start = np.where(start < t, 0, 1).astype(np.int64)
        local_stop = np.ones(n, dtype=np.int64)
        rows = slice(t - 1, t + 1)
        m, p = self.market, self.params
        noise = self._noise_rows(t)[t - 1:t]
        active = np.empty(n, dtype=np.int64)
        active[:carried] = queue[:carried]
        state = np.array([1, carried, carried], dtype=np.int64)
        out_order = np.empty(queue.size, dtype=np.int64)
        out_bar = np.empty(queue.size, dtype=np.int64)
        out = np.empty((queue.size, N_FILL))
        k = run_orders(m.open[rows], m.high[rows], m.low[rows], m.close[rows], m.volume[rows],
                       m.half_spread[rows], m.vol[rows], p.impact_scale, p.values, sym, side, qty, is_limit, limit,
                       local_start, local_stop, queue, noise, np.zeros((2, len(m.symbols))), done, active, state,
                       out_order, out_bar, out)
        for i, event in zip(out_order[:k].tolist(), self._fill_events(np.full(k, t), sym[out_order[:k]], out[:k]),
                            strict=True):
            events[i] = event
        return events

    def _fill_events(self, bars: npt.NDArray[np.int64], syms: npt.NDArray[np.int64],
                     out: npt.NDArray[np.float64]) -> list[FillEvent]:
        """The kernel's fill rows as events, with the bar's volume and the decision bar's volatility and
        half-spread the fill used."""
        m = self.market
        stamps = self._stamps
        liquidity = (Liquidity.TAKER, Liquidity.MAKER)
        rows = zip(
            [stamps[b] for b in bars.tolist()], out[:, FILL_QTY].tolist(), out[:, FILL_PRICE].tolist(),
            out[:, FILL_FEE].tolist(), [liquidity[int(k)] for k in out[:, ORDER_MAKER].tolist()],
            out[:, FILL_REF].tolist(), out[:, FILL_SPREAD].tolist(), out[:, FILL_IMPACT].tolist(),
            m.volume[bars, syms].tolist(), m.vol[bars - 1, syms].tolist(),
            (m.half_spread[bars - 1, syms] * 1e4).tolist(), strict=True)
        return list(map(FillEvent._make, rows))

    def _noise_rows(self, rows: int) -> npt.NDArray[np.float64]:
        """The simulator's noise table with at least ``rows`` rows: slot ``[t - 1, n]`` is the noise of every
        slice on bar ``t`` of symbol ``n``. Rows are drawn from the generator on first need, in row order, so
        the table is the one :meth:`run_targets` of a fresh simulator with the same seed draws."""
        have = self._noise.shape[0]
        if rows > have:
            T, N = self.market.open.shape
            more = draw_noise(self.rng, (min(max(rows, 2 * have), T - 1) - have, N))
            self._noise = np.concatenate((self._noise, more)) if have else more
        return self._noise

    def _results(self, orders: Sequence[SimOrder], sym: npt.NDArray[np.int64], start: npt.NDArray[np.int64],
                 qty: npt.NDArray[np.float64], filled: npt.NDArray[np.float64],
                 parts: list[tuple[Any, Any, Any]]) -> list[SimExecutionResult]:
        m = self.market
        n = len(orders)
        order_idx = np.concatenate([part[0] for part in parts])
        by_order = np.argsort(order_idx, kind="stable")  # the kernel writes bar-major
        order_idx = order_idx[by_order]
        bars = np.concatenate([part[1] for part in parts])[by_order]
        out = np.concatenate([part[2] for part in parts])[by_order]
        events = self._fill_events(bars, sym[order_idx], out)
        bounds = np.searchsorted(order_idx, np.arange(n + 1)).tolist()
        sums = [np.bincount(order_idx, weights=out[:, col], minlength=n).tolist()
                for col in (FILL_SPREAD, FILL_IMPACT, FILL_FEE)]
        arrival = m.open[start, sym].tolist()
        unfilled = (qty - filled).tolist()
        done = filled.tolist()
        results = []
        for i, order in enumerate(orders):
            left = unfilled[i]
            if left <= EPS_SHARES:
                status, left = SimOrderStatus.FILLED, 0.0
            else:
                status = _REMAINDER_STATUS[order.time_in_force]
            results.append(SimExecutionResult(order, tuple(events[bounds[i]:bounds[i + 1]]), arrival[i],
                                              done[i], left, sums[0][i], sums[1][i], sums[2][i], status))
        return results
