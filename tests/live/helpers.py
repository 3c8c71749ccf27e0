"""A real champion for the live-loop tests: a ridge strategy fitted on the job's own features, signed with the
job's provenance, logged as a run's pyfunc model and registered as ``@champion``."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ai_trading.artifacts.build import Provenance, sign_directory
from ai_trading.artifacts.keys import load_signer
from ai_trading.data import load
from ai_trading.evaluation.strategies import ML_STRATEGY_FILE, FittedMLStrategy, MLStrategyConfig
from ai_trading.execution import EwmaCostModel
from ai_trading.features import FeatureBuilder
from ai_trading.live import LiveConfig
from ai_trading.tracking.registry import RegisteredModel, register_champion, save_pyfunc
from ai_trading.tracking.runs import start_run
from tests.conftest import compose_config

MODEL = "desk"
SYMBOLS = "[NVDA,ORCL]"


def live_overrides(tmp_path: Path, mlflow_uri: str, *, oms_dsn: str | None = None, venue_dsn: str | None = None,
                   end: str = "2004-06-30", extra: list[str] | None = None) -> list[str]:
    return [f"model=models:/{MODEL}@champion", f"oms.dsn={oms_dsn or f'sqlite:///{tmp_path}/oms.db'}",
            f"oms.paper_venue.dsn={venue_dsn or f'sqlite:///{tmp_path}/venue.db'}",
            f"tracking.tracking_uri={mlflow_uri}", f"data.symbols={SYMBOLS}", "data.start=2003-01-01",
            f"data.end={end}", f"live.state_dir={tmp_path}/live_state", "live.progress_every=0",
            "oms.engine.strategy=live", *(extra or [])]


def live_cfg(overrides: list[str]) -> LiveConfig:
    from ai_trading.live import live_config

    return live_config(compose_config(overrides, config_name="live"))


def fit_strategy(config: LiveConfig, *, gain: float = 0.5, seed: int = 0) -> FittedMLStrategy:
    """Ridge on the job's features -> next bar's log return over the feed (the loop does not check in-sample use)."""
    bars = load(config.data)
    features = FeatureBuilder(config.features).build(bars)
    frame = features.frame
    close = bars.frame["close"]
    nxt = np.log(close.groupby(level="symbol").shift(-1) / close).reindex(frame.index)
    ok = nxt.notna().to_numpy()
    X, y = frame.to_numpy(np.float64)[ok], nxt.to_numpy()[ok]
    rng = np.random.default_rng(seed)
    y = y + rng.normal(scale=1e-4, size=len(y))  # seeds give different, still real, fits
    pipeline = Pipeline([("scale", StandardScaler()), ("model", Ridge(alpha=1.0))]).fit(X, y)
    scale = float(np.std(pipeline.predict(X))) or 1.0
    stamps = frame.index.get_level_values("timestamp")
    return FittedMLStrategy("ml", MLStrategyConfig(gain=gain), pipeline, features.schema_hash,
                            tuple(features.feature_names), bars.fingerprint, scale,
                            (pd.Timestamp(stamps[0]), pd.Timestamp(stamps[-1])))


def register(config: LiveConfig, fitted: FittedMLStrategy, *, cost_model_hash: str | None = None,
             run_name: str = "champ") -> RegisteredModel:
    """Log ``fitted`` as a signed run model with the job's provenance and register it as the champion."""
    signer = load_signer(config.signing)
    cost = cost_model_hash or EwmaCostModel.from_config(config.cost_model, config.simulator).cost_hash
    with tempfile.TemporaryDirectory() as scratch, \
            start_run(config.tracking, run_name=run_name, resolved_config={"seed": 0}) as run:
        files, root = Path(scratch) / "files", Path(scratch) / "model"
        files.mkdir()
        fitted.save(files / ML_STRATEGY_FILE)
        data_path = save_pyfunc(root, files)
        provenance = Provenance(feature_schema_hash=fitted.schema_hash, dataset_fingerprint=fitted.dataset_fingerprint,
                                cost_model_hash=cost, config_hash="0" * 64, git_commit="test", git_dirty=False,
                                seed=0, sweep_id="live-test", run_id=run.run_id)
        sign_directory(root, kind="ml", provenance=provenance, metrics={"eval/ml/net/sharpe": 1.0},
                       policy={"feature_names": list(fitted.feature_names), "data_path": data_path}, signer=signer,
                       config=config.signing)
        run.log_artifact(root, "model")
        run_id = run.run_id
    return register_champion(config.tracking, run_id, model_name=MODEL, decision={"passed": True}, signer=signer,
                             config=config.signing)
