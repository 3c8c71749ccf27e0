"""Evaluation: performance metrics, purged cross-validation, backtest-overfitting statistics, the
simulated backtest, baselines, strategies, walk-forward, reporting and SLO checks.

Nothing here imports hydra, omegaconf or mlflow: the entrypoint `ai_trading.evaluate` hands typed configs in.
"""

from ai_trading.evaluation.backtest import BacktestResult, backtest
from ai_trading.evaluation.baselines import (
    BuyAndHoldConfig,
    CashConfig,
    TrendConfig,
    buy_and_hold_weights,
    cash_weights,
    trend_weights,
)
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
from ai_trading.evaluation.report import backtest_metrics, log_backtests
from ai_trading.evaluation.slo import EvaluationEvent, EventKind, Severity, SLOConfig, check_backtests, log_events
from ai_trading.evaluation.strategies import (
    FittedMLStrategy,
    MLStrategy,
    MLStrategyConfig,
    StrategyInputs,
    make_strategy,
)
from ai_trading.evaluation.walkforward import (
    Fold,
    WalkForwardConfig,
    WalkForwardResult,
    make_folds,
    metrics_table,
    run_walkforward,
)

__all__ = [
    "COST_COMPONENTS",
    "BacktestResult",
    "BuyAndHoldConfig",
    "CashConfig",
    "CombinatorialPurgedKFold",
    "EvaluationEvent",
    "EventKind",
    "FittedMLStrategy",
    "Fold",
    "MLStrategy",
    "MLStrategyConfig",
    "PBOResult",
    "PurgedKFold",
    "SLOConfig",
    "Severity",
    "StrategyInputs",
    "TrendConfig",
    "WalkForwardConfig",
    "WalkForwardResult",
    "annual_to_period_rate",
    "annualized_return",
    "annualized_volatility",
    "backtest",
    "backtest_metrics",
    "buy_and_hold_weights",
    "calmar_ratio",
    "cash_weights",
    "check_backtests",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "gross_equity",
    "hit_rate",
    "log_backtests",
    "log_events",
    "make_folds",
    "make_strategy",
    "max_drawdown",
    "max_drawdown_duration",
    "metrics_table",
    "performance_summary",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
    "returns_from_equity",
    "run_walkforward",
    "sharpe_ratio",
    "sortino_ratio",
    "total_return",
    "trend_weights",
]
