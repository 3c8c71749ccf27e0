"""The cost model's feedback loop: what a venue's fills actually cost, folded into the learned cost state.

A venue reports a fill as a price, a quantity and a time (``BrokerFill``); the cost model needs it against
the market it happened in (:class:`~ai_trading.execution.cost_model.CostObservation`). The market context
comes from the research side's market arrays, built from the same bars with the cost model's own preset
(``MarketArrays.from_bars(bars, model.preset)``, no learned multipliers applied), at the fill's bar ``t``:

- reference price: bar ``t``'s open, the arrival price of an order decided at the previous bar's close
  (the simulator's timing convention), so the cost is the implementation shortfall against arrival;
- volatility and the preset's half-spread: those known at the decision bar ``t - 1`` (no look-ahead);
- volume: bar ``t``'s.

The half-spread actually paid is known only when the venue publishes its quotes (the paper venue's market,
``PaperBroker.market``): then both multipliers learn; without quotes only the slippage one does. Pass taker
fills only (market orders, marketable limits): a passive fill at its limit pays no spread and would teach
the model that trading is free.

Each learning step writes a new version of the state file next to the one it started from
(``cost_model.json`` -> ``cost_model.v0001.json`` -> ``cost_model.v0002.json``), never over an existing
one, so every run that loaded a version can still be reproduced from it and its hash.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from ai_trading.durable_files import sync_directory
from ai_trading.errors import ConfigError, DataValidationError, UnknownSymbolError
from ai_trading.execution.cost_model import CostObservation, EwmaCostModel
from ai_trading.execution.market import MarketArrays

log = logging.getLogger(__name__)

_SIDES = {"buy": 1, "sell": -1}
_VERSIONED = re.compile(r"^(?P<stem>.+)\.v(?P<n>\d+)$")


class VenueFill(Protocol):
    """What a venue says about a fill (``ai_trading.oms.brokers.base.BrokerFill`` has these fields)."""

    @property
    def trade_id(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> str: ...
    @property
    def quantity(self) -> float: ...
    @property
    def price(self) -> float: ...
    @property
    def timestamp(self) -> object: ...


@dataclass(frozen=True)
class SavedCostState:
    """A learned cost state written as a new version: its file, hash and version number."""

    path: Path
    sha256: str
    version: int


def fill_observations(fills: Sequence[VenueFill], market: MarketArrays,
                      quotes: MarketArrays | None = None) -> list[CostObservation]:
    """The fills as cost observations against ``market`` (the research preset's arrays over the fills'
    bars); ``quotes`` (the venue's market, same bars) gives the half-spread paid. A fill at a time or of a
    symbol the market does not hold, or on its first bar (no decision bar before it), raises."""
    if quotes is not None and (quotes.symbols != market.symbols or not quotes.timestamps.equals(market.timestamps)):
        raise ConfigError("the venue's quotes and the research market cover different symbols or bars")
    observations = []
    for fill in fills:
        s = market.symbol_index(fill.symbol)
        if s < 0:
            raise UnknownSymbolError("fill_symbol", f"fill {fill.trade_id}: symbol not in the market "
                                     f"{list(market.symbols)}", symbol=fill.symbol)
        ts = pd.Timestamp(fill.timestamp)  # type: ignore[arg-type]
        t = int(market.timestamps.searchsorted(ts))
        if t >= len(market.timestamps) or market.timestamps[t] != ts or not market.tradable[t, s]:
            raise DataValidationError("fill_bar", f"fill {fill.trade_id} is not at a bar of the market",
                                      symbol=fill.symbol, timestamp=ts)
        if t == 0:
            raise DataValidationError("fill_bar", f"fill {fill.trade_id} is on the market's first bar: no "
                                      "decision bar before it to take the spread and volatility from",
                                      symbol=fill.symbol, timestamp=ts)
        sign = _SIDES.get(str(fill.side))
        if sign is None:
            raise DataValidationError("fill_side", f"fill {fill.trade_id} has side {fill.side!r}: expected buy "
                                      "or sell", symbol=fill.symbol, timestamp=ts)
        paid = None if quotes is None else float(quotes.half_spread[t - 1, s]) * 1e4
        observations.append(CostObservation(
            symbol=fill.symbol, side=sign, quantity=fill.quantity,
            fill_price=fill.price, reference_price=float(market.open[t, s]), volatility=float(market.vol[t - 1, s]),
            volume=float(market.volume[t, s]), preset_half_spread_bps=float(market.half_spread[t - 1, s]) * 1e4,
            half_spread_bps=paid))
    return observations


def versions(state_path: str | Path) -> list[tuple[int, Path]]:
    """The saved versions of the state file ``state_path`` (or of the one it is a version of), oldest first."""
    path = Path(state_path)
    match = _VERSIONED.match(path.stem)
    stem = match.group("stem") if match else path.stem
    found = []
    for candidate in path.parent.glob(f"{_glob_escape(stem)}.v*{_glob_escape(path.suffix)}"):
        m = _VERSIONED.match(candidate.stem)
        if m and m.group("stem") == stem and candidate.suffix == path.suffix:
            found.append((int(m.group("n")), candidate))
    return sorted(found)


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def save_new_version(model: EwmaCostModel, state_path: str | Path) -> SavedCostState:
    """Write ``model``'s learned state as the next version of ``state_path``, atomically and never over an
    existing file (two writers racing get two versions)."""
    path = Path(state_path)
    if path.suffix == "":
        raise ConfigError(f"cost_model.state_path {path}: give a file name with an extension (e.g. .json)")
    match = _VERSIONED.match(path.stem)
    stem = match.group("stem") if match else path.stem
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{stem}.new{os.getpid()}{path.suffix}")
    digest = model.save(scratch)
    try:
        number = max((n for n, _ in versions(path)), default=0) + 1
        while True:
            target = path.with_name(f"{stem}.v{number:04d}{path.suffix}")
            try:
                os.link(scratch, target)  # fails if the name exists: a version is never replaced
                break
            except FileExistsError:
                number += 1
    finally:
        scratch.unlink(missing_ok=True)
    sync_directory(path.parent)  # the version's name on disk too, not only its data
    log.info("cost model version saved path=%s version=%d sha256=%s", target, number, digest[:12])
    return SavedCostState(target, digest, number)


@dataclass(frozen=True)
class FillCost:
    """What one taker fill cost against what the cost model predicted for that order before learning from it
    (bps of the arrival price, spread included, fees not): ``realised_bps`` may be negative (a price
    improvement); ``spread_paid_bps`` is the venue's quoted half-spread when known, else the model's."""

    client_order_id: str
    symbol: str
    notional: float
    realised_bps: float
    predicted_bps: float
    spread_paid_bps: float
    predicted_spread_bps: float

    @property
    def live_slippage_bps(self) -> float:
        """The cost beyond the half-spread paid: the slippage the venue actually gave."""
        return self.realised_bps - self.spread_paid_bps

    @property
    def simulated_slippage_bps(self) -> float:
        """The cost model's slippage for the order (its prediction beyond its half-spread)."""
        return self.predicted_bps - self.predicted_spread_bps


def fill_costs(model: EwmaCostModel, client_order_ids: Sequence[str],
               observations: Sequence[CostObservation]) -> list[FillCost]:
    """Each observation's realised cost against ``model``'s prediction in its current state (call before the
    model learns from them); ``client_order_ids`` name the observations' orders, in the same order."""
    if len(client_order_ids) != len(observations):
        raise DataValidationError("fill_costs", f"{len(client_order_ids)} order ids for {len(observations)} fills")
    out = []
    for cid, obs in zip(client_order_ids, observations, strict=True):
        spread = model.spread_scale(obs.symbol) * obs.preset_half_spread_bps
        out.append(FillCost(client_order_id=cid, symbol=obs.symbol, notional=obs.quantity * obs.reference_price,
                            realised_bps=obs.cost_bps,
                            predicted_bps=model.predict(obs.symbol, obs.quantity, obs.volatility, obs.volume,
                                                        obs.preset_half_spread_bps),
                            spread_paid_bps=spread if obs.half_spread_bps is None else obs.half_spread_bps,
                            predicted_spread_bps=spread))
    return out


def learn_from_observations(model: EwmaCostModel, observations: Sequence[CostObservation],
                            state_path: str | Path) -> SavedCostState:
    """Fold ``observations`` (see :func:`fill_observations`) into ``model`` in their order and save the result
    as a new version of ``state_path``."""
    if not observations:
        raise DataValidationError("no_fills", "no fills to learn execution costs from")
    model.update(observations)
    return save_new_version(model, state_path)


def learn_from_fills(model: EwmaCostModel, fills: Sequence[VenueFill], market: MarketArrays, state_path: str | Path,
                     quotes: MarketArrays | None = None) -> SavedCostState:
    """Fold the venue's ``fills`` into ``model`` (updated in place, in the fills' order) and save the result as
    a new version of ``state_path``; the next simulation, evaluation or RL run sets ``cost_model.state_path``
    to the returned path. See :func:`fill_observations` for ``market`` and ``quotes``."""
    return learn_from_observations(model, fill_observations(fills, market, quotes), state_path)
