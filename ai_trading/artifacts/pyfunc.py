"""MLflow's pyfunc loader of the project's models (``loader_module`` of every logged model).

``mlflow.pyfunc.load_model(uri)`` calls :func:`_load_pyfunc` with ``<model dir>/data/<files>``; it runs the
verified loader over the whole model directory (MLmodel included) before anything is deserialised, with
the signing settings of ``conf/signing/default.yaml`` and no provenance expectations (MLflow gives it no job
to compare with: operations load through :func:`ai_trading.artifacts.loader.load_model` instead).

Mind what MLflow reads before this runs: it parses the unauthenticated ``MLmodel`` file, which names this
module. A tampered MLmodel naming another loader never reaches here; the trusted path is the project's
loader, which verifies the downloaded copy (MLmodel included) before anything reads it.

Input of ``predict``: a DataFrame for one decision time, one row per symbol (index: the symbols, or a
``symbol`` column), with the model's feature columns (``feature_names``), optionally the current portfolio
weight per symbol (``weight``, default 0) and, for RL models, the book's ``unrealized_pnl`` (fraction of
equity) and ``drawdown`` (``1 - equity / peak``) in every row (default 0). Output: a DataFrame indexed by
symbol with one column ``target_weight`` (fraction of equity), after the model's constraints.

For a ``models:/`` URI MLflow adds ``registered_model_meta`` (the name and version it resolved) to the
downloaded directory: it is left out of the file check, and the manifest must name that name and version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ai_trading.artifacts.config import SigningConfig
from ai_trading.artifacts.loader import Asked, Expectations, LoadedModel, load_model
from ai_trading.artifacts.manifest import Manifest
from ai_trading.errors import FeatureSchemaMismatch, MalformedManifest

TARGET = "target_weight"
# What MLflow writes beside a model it downloaded for a models:/ URI (the name and version it resolved).
REGISTERED_MODEL_META = "registered_model_meta"
_TARGET_COLUMNS = pd.Index([TARGET], dtype=object)


def constrain(action: np.ndarray, *, long_only: bool, max_position: float, max_leverage: float) -> np.ndarray:
    """The env's action constraint (:func:`ai_trading.rl_trading.kernels.env_step`): clip to [0, 1]
    (long-only) or [-1, 1], scale by ``max_position``, shrink the book to ``max_leverage`` gross."""
    a = np.where(np.isfinite(action), action, 0.0)
    w = np.clip(a, 0.0 if long_only else -1.0, 1.0) * max_position
    gross = float(np.abs(w).sum())
    return w * (max_leverage / gross) if gross > max_leverage else w


@dataclass(frozen=True)
class PolicyModel:
    """A verified model that maps one decision time's feature rows to target weights per symbol."""

    manifest: Manifest
    model: Any

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.manifest.policy["feature_names"])

    def _rows(self, frame: pd.DataFrame) -> pd.DataFrame:
        if "symbol" in frame.columns:
            frame = frame.set_index("symbol")
        missing = [c for c in self.feature_names if c not in frame.columns]
        if missing:
            raise FeatureSchemaMismatch("pyfunc input columns", ",".join(self.feature_names),
                                        ",".join(map(str, frame.columns)))
        return frame

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        frame = self._rows(pd.DataFrame(model_input))
        # By position, and the output's label made once: labels built from a list per call cost the live loop
        # more than the model itself.
        X = frame.iloc[:, frame.columns.get_indexer(pd.Index(self.feature_names, dtype=object))].to_numpy(np.float64)
        if self.manifest.kind == "ml":
            weights = self.model.weights(self.model.score_rows(X), len(frame))
            return pd.DataFrame(weights.reshape(-1, 1), index=frame.index, columns=_TARGET_COLUMNS)
        policy = self.manifest.policy
        action = self.model.act(self.observation(frame)[None, :])[0]
        weights = constrain(np.asarray(action, np.float64), long_only=bool(policy["long_only"]),
                            max_position=float(policy["max_position"]), max_leverage=float(policy["max_leverage"]))
        return pd.DataFrame({TARGET: weights}, index=pd.Index(list(policy["symbols"]), name="symbol"))

    def observation(self, model_input: pd.DataFrame) -> np.ndarray:
        """The RL env's observation (:func:`ai_trading.rl_trading.kernels.write_obs`) of one decision time's
        rows: features symbol-major, cash/equity, weights, leverage, gross, net, unrealised PnL, drawdown;
        cash/equity is ``1 - net`` since equity is cash plus the positions' value."""
        frame = self._rows(pd.DataFrame(model_input))
        policy = self.manifest.policy
        symbols = list(policy["symbols"])
        if sorted(map(str, frame.index)) != sorted(symbols):
            raise FeatureSchemaMismatch("pyfunc input symbols", ",".join(symbols), ",".join(map(str, frame.index)))
        frame = frame.loc[symbols]
        X = frame[list(self.feature_names)].to_numpy(np.float64)
        w = frame["weight"].to_numpy(np.float64) if "weight" in frame.columns else np.zeros(len(symbols))
        first = frame.iloc[0]
        upnl = float(first["unrealized_pnl"]) if "unrealized_pnl" in frame.columns else 0.0
        drawdown = float(first["drawdown"]) if "drawdown" in frame.columns else 0.0
        gross, net = float(np.abs(w).sum()), float(w.sum())
        obs = np.concatenate([X.reshape(-1), [1.0 - net], w,
                              [gross / float(policy["max_leverage"]), gross, net, upnl, drawdown]])
        return obs.astype(np.float32)


def _load_pyfunc(data_path: str) -> PolicyModel:
    """MLflow's entry point: verify the model directory that holds ``data_path``, then deserialise."""
    root = Path(data_path).resolve().parents[1]  # <model dir>/data/<files>
    if not (root / "MLmodel").is_file():
        raise MalformedManifest(f"{data_path} is not inside an MLflow model directory", where=str(root))
    asked = Asked()
    meta = root / REGISTERED_MODEL_META
    if meta.is_file():  # MLflow wrote it when it resolved a models:/ URI; the manifest must name that version
        try:
            info = yaml.safe_load(meta.read_text())
            asked = Asked(str(info["model_name"]), int(info["model_version"]))
        except (yaml.YAMLError, KeyError, TypeError, ValueError):
            raise MalformedManifest(f"{REGISTERED_MODEL_META} is unreadable", where=str(root)) from None
    loaded: LoadedModel = load_model(root, SigningConfig.default(), Expectations(None, None, None), asked=asked,
                                     leave_out=(REGISTERED_MODEL_META,))
    return PolicyModel(loaded.manifest, loaded.model)
