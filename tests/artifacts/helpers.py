"""Builders shared by the artifact tests: signed model directories and a pickle that records its own loading."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ai_trading.artifacts.build import Provenance, sign_directory
from ai_trading.artifacts.config import SigningConfig
from ai_trading.artifacts.manifest import Manifest
from ai_trading.artifacts.signing import Signer
from ai_trading.evaluation.strategies import ML_STRATEGY_FILE, FittedMLStrategy, MLStrategyConfig

MARKER_ENV = "AI_TRADING_TEST_UNPICKLE_MARKER"
FEATURES = ("ret_1", "ret_5", "vol_20")


def record_unpickling(tag: str) -> str:
    """Called by unpickling :class:`Recorder`: appends ``tag`` to the marker file (the deserialiser ran)."""
    with open(os.environ[MARKER_ENV], "a") as handle:
        handle.write(tag + "\n")
    return tag


class Recorder:
    """Unpickling this object calls :func:`record_unpickling` (what a hostile pickle would run instead)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return record_unpickling, (self.tag,)


def recorder_bytes(tag: str) -> bytes:
    return pickle.dumps(Recorder(tag))


def config(**changes: Any) -> SigningConfig:
    base = SigningConfig.default()
    return SigningConfig(**{**{k: getattr(base, k) for k in vars(base)}, **changes})


def provenance(run_id: str = "run0", **changes: Any) -> Provenance:
    values = {"feature_schema_hash": "f" * 64, "dataset_fingerprint": "d" * 64, "cost_model_hash": "c" * 64,
              "config_hash": "0" * 64, "git_commit": "abc", "git_dirty": False, "seed": 0, "sweep_id": "s",
              "run_id": run_id}
    return Provenance(**{**values, **changes})


def fitted_ml(seed: int = 0) -> FittedMLStrategy:
    """A real fitted ridge strategy on random rows (3 features)."""
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(200, len(FEATURES))), rng.normal(size=200)
    pipeline = Pipeline([("scale", StandardScaler()), ("model", Ridge(alpha=1.0))]).fit(X, y)
    span = (pd.Timestamp("2010-01-01"), pd.Timestamp("2011-01-01"))
    return FittedMLStrategy("ml", MLStrategyConfig(), pipeline, "f" * 64, FEATURES, "d" * 64, 0.5, span)


def signed_dir(directory: Path, files: dict[str, bytes], signer: Signer, *, kind: str = "ml",
               signing: SigningConfig | None = None, policy: dict[str, Any] | None = None,
               **prov: Any) -> Manifest:
    """A model directory holding ``files`` and a manifest signed over them."""
    for name, data in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    return sign_directory(directory, kind=kind, provenance=provenance(**prov), metrics={"eval/rl/net/sharpe": 1.0},
                          policy={"feature_names": list(FEATURES), **(policy or {})}, signer=signer,
                          config=signing or config())


def ml_model_bytes(seed: int = 0) -> bytes:
    return pickle.dumps(fitted_ml(seed))


__all__ = ["ML_STRATEGY_FILE"]
