"""Evaluation: performance metrics, purged cross-validation and backtest-overfitting statistics.

Pure functions over numpy / pandas data; nothing here imports hydra or mlflow.
"""

from ai_trading.evaluation.metrics import (
    COST_COMPONENTS,
    annual_to_period_rate,
    annualized_return,
    annualized_volatility,
    calmar_ratio,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    gross_equity,
    hit_rate,
    max_drawdown,
    max_drawdown_duration,
    performance_summary,
    probabilistic_sharpe_ratio,
    returns_from_equity,
    sharpe_ratio,
    sortino_ratio,
    total_return,
)
from ai_trading.evaluation.pbo import PBOResult, probability_of_backtest_overfitting
from ai_trading.evaluation.purged_cv import CombinatorialPurgedKFold, PurgedKFold

__all__ = [
    "COST_COMPONENTS",
    "CombinatorialPurgedKFold",
    "PBOResult",
    "PurgedKFold",
    "annual_to_period_rate",
    "annualized_return",
    "annualized_volatility",
    "calmar_ratio",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "gross_equity",
    "hit_rate",
    "max_drawdown",
    "max_drawdown_duration",
    "performance_summary",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
    "returns_from_equity",
    "sharpe_ratio",
    "sortino_ratio",
    "total_return",
]
