"""MLflow tracking: the only package that imports mlflow."""

from ai_trading.tracking.provenance import GitState, git_state
from ai_trading.tracking.runs import TrackedRun, TrackingConfig, flatten, prepare_store, start_run

__all__ = ["GitState", "TrackedRun", "TrackingConfig", "flatten", "git_state", "prepare_store", "start_run"]
