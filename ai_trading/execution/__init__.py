"""Execution: the simulator (per-order and vectorised paths) and the per-symbol EWMA cost model.

Pure numpy/numba, no I/O besides cost-model state files; see :mod:`ai_trading.execution.simulator` for
the timing and fill-price convention.
"""

from ai_trading.execution.config import SimulatorConfig
from ai_trading.execution.cost_model import CostObservation, EwmaCostModel, EwmaCostModelConfig
from ai_trading.execution.market import ExecParams, MarketArrays, build_execution, slice_market
from ai_trading.execution.simulator import (
    ExecutionSimulator,
    FillEvent,
    Liquidity,
    OrderSide,
    OrderType,
    SimExecutionResult,
    SimOrder,
    SimOrderStatus,
    TimeInForce,
)
from ai_trading.execution.vectorized import SequenceResult, StepResult, run_targets, step

__all__ = [
    "CostObservation",
    "EwmaCostModel",
    "EwmaCostModelConfig",
    "ExecParams",
    "ExecutionSimulator",
    "FillEvent",
    "Liquidity",
    "MarketArrays",
    "OrderSide",
    "OrderType",
    "SequenceResult",
    "SimExecutionResult",
    "SimOrder",
    "SimOrderStatus",
    "SimulatorConfig",
    "StepResult",
    "TimeInForce",
    "build_execution",
    "run_targets",
    "slice_market",
    "step",
]
