"""Plain frozen config of the execution simulator (Hydra builds it from ``conf/simulator/*.yaml``).

Units are in the field names: ``*_bps`` basis points, ``*_ms`` milliseconds, ``*_coef`` dimensionless
multipliers of a per-bar volatility (a fraction, e.g. 0.001 = 10 bps per bar), ``*_annual_bps`` basis
points a year, accrued ACT/365 over the calendar time between bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

from ai_trading.errors import ConfigError

SpreadEstimator = Literal["corwin_schultz", "abdi_ranaldo"]
LatencyModel = Literal["constant", "lognormal"]

# Financing defaults, annual basis points. Risk-free: the mean of the 3-month US Treasury bill rate
# (secondary market, FRED series TB3MS) over 1999-2018, the span of the bundled daily data, about 1.75 %.
# Short borrow: the fee of an easy-to-borrow (general collateral) stock, about 0.25 % a year (D'Avolio 2002,
# "The market for borrowing stock", the value-weighted mean loan fee). Margin: a broker's spread over the
# benchmark rate on a debit balance, about 1 % (e.g. Interactive Brokers' tiered benchmark + 0.5-1.5 %).
RISK_FREE_ANNUAL_BPS = 175.0
BORROW_FEE_ANNUAL_BPS = 25.0
MARGIN_SPREAD_ANNUAL_BPS = 100.0


@dataclass(frozen=True)
class SimulatorConfig:
    """Every coefficient of the simulated execution: the cost truth of a run. The defaults are
    ``conf/simulator/default.yaml`` (a test holds them equal); see it for the units."""

    # spread
    spread_bps: float | None = 2.0
    spread_estimator: SpreadEstimator = "corwin_schultz"
    spread_window: int = 20
    spread_vol_coef: float = 0.02
    min_half_spread_bps: float = 0.5
    max_half_spread_bps: float = 200.0
    vol_halflife: float = 20.0
    # latency
    latency: LatencyModel = "lognormal"
    latency_ms: float = 50.0
    latency_sigma: float = 0.5
    spike_prob: float = 0.01
    spike_ms: float = 1000.0
    spike_vol_coef: float = 0.05
    bar_seconds: float | None = None
    # slippage and impact
    slippage_fixed_bps: float = 0.5
    slippage_vol_coef: float = 0.01
    impact_coef: float = 0.7
    participation_cap: float = 0.1
    queue_haircut: float = 0.5
    no_trade_band: float = 0.0
    # fees
    fee_per_share: float = 0.0
    fee_bps: float = 0.5
    fee_min: float = 0.0
    # financing of the book held between bars: positive cash (short sale proceeds included) earns the
    # risk-free rate, negative cash pays it plus the margin spread, shorts pay the borrow fee on their value
    risk_free_annual_bps: float = RISK_FREE_ANNUAL_BPS
    margin_spread_annual_bps: float = MARGIN_SPREAD_ANNUAL_BPS
    borrow_fee_annual_bps: float = BORROW_FEE_ANNUAL_BPS
    # sessions (DAY orders expire at the end of the bar's calendar day in this zone)
    session_timezone: str = "UTC"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            number = isinstance(value, float | int) and not isinstance(value, bool)
            if number and (not math.isfinite(value) or value < 0):
                raise ConfigError(f"simulator.{f.name}={value!r}: must be a finite number >= 0")
        if self.spread_estimator not in ("corwin_schultz", "abdi_ranaldo"):
            raise ConfigError(f"simulator.spread_estimator={self.spread_estimator!r}: "
                              "expected corwin_schultz or abdi_ranaldo")
        if self.latency not in ("constant", "lognormal"):
            raise ConfigError(f"simulator.latency={self.latency!r}: expected constant or lognormal")
        if self.spread_window < 1:
            raise ConfigError(f"simulator.spread_window={self.spread_window}: must be >= 1")
        if self.vol_halflife <= 0:
            raise ConfigError(f"simulator.vol_halflife={self.vol_halflife}: must be > 0")
        if not 0 < self.participation_cap <= 1:
            raise ConfigError(f"simulator.participation_cap={self.participation_cap}: must be in (0, 1]")
        if self.queue_haircut >= 1 or self.spike_prob > 1:
            raise ConfigError("simulator.queue_haircut must be < 1 and simulator.spike_prob <= 1")
        if self.min_half_spread_bps > self.max_half_spread_bps:
            raise ConfigError("simulator.min_half_spread_bps exceeds simulator.max_half_spread_bps")
        if self.bar_seconds is not None and self.bar_seconds <= 0:
            raise ConfigError(f"simulator.bar_seconds={self.bar_seconds}: must be > 0")
