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

from collections.abc import Sequence
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

    def rows(self, symbols: Sequence[str], columns: Sequence[str]) -> PolicyRows:
        """This model bound to rows of ``symbols`` (in that order) whose features come in ``columns`` (in that
        order): the names are checked here, once, and :meth:`PolicyRows.weights` then takes plain arrays (what
        a caller deciding every bar on the same symbols and columns uses; :meth:`predict` binds per call)."""
        names = pd.Index(list(columns), dtype=object)
        take = names.get_indexer(pd.Index(self.feature_names, dtype=object)) if names.is_unique else np.array([-1])
        if (take < 0).any():
            raise FeatureSchemaMismatch("pyfunc input columns", ",".join(self.feature_names),
                                        ",".join(map(str, columns)))
        order = None
        if self.manifest.kind != "ml":
            wanted = [str(s) for s in self.manifest.policy["symbols"]]
            given = [str(s) for s in symbols]
            if sorted(given) != sorted(wanted):
                raise FeatureSchemaMismatch("pyfunc input symbols", ",".join(wanted), ",".join(given))
            order = np.array([given.index(s) for s in wanted], dtype=np.intp)
        identity = len(take) == len(names) and bool((take == np.arange(len(take))).all())
        return PolicyRows(self, len(symbols), None if identity else take, order)

    def _frame_rows(self, model_input: pd.DataFrame) -> tuple[pd.DataFrame, PolicyRows]:
        frame = pd.DataFrame(model_input)
        if "symbol" in frame.columns:
            frame = frame.set_index("symbol")
        return frame, self.rows([str(s) for s in frame.index], [str(c) for c in frame.columns])

    @staticmethod
    def _book(frame: pd.DataFrame, rows: PolicyRows) -> tuple[np.ndarray, float, float]:
        # the RL book's scalars are read from the first row in the policy's symbol order, as the env sees it
        first = 0 if rows.order is None else int(rows.order[0])
        weight = frame["weight"].to_numpy(np.float64) if "weight" in frame.columns else np.zeros(len(frame))
        upnl = float(frame["unrealized_pnl"].iloc[first]) if "unrealized_pnl" in frame.columns else 0.0
        drawdown = float(frame["drawdown"].iloc[first]) if "drawdown" in frame.columns else 0.0
        return weight, upnl, drawdown

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        frame, rows = self._frame_rows(model_input)
        weights = rows.weights(frame.to_numpy(np.float64) if rows.take is None else
                               frame.iloc[:, rows.take].to_numpy(np.float64), *self._book(frame, rows),
                               columns_taken=rows.take is not None)
        if rows.order is None:
            return pd.DataFrame(weights.reshape(-1, 1), index=frame.index, columns=_TARGET_COLUMNS)
        return pd.DataFrame({TARGET: weights[rows.order]},
                            index=pd.Index(list(self.manifest.policy["symbols"]), name="symbol"))

    def observation(self, model_input: pd.DataFrame) -> np.ndarray:
        """The RL env's observation (:func:`ai_trading.rl_trading.kernels.write_obs`) of one decision time's
        rows: features symbol-major, cash/equity, weights, leverage, gross, net, unrealised PnL, drawdown;
        cash/equity is ``1 - net`` since equity is cash plus the positions' value."""
        frame, rows = self._frame_rows(model_input)
        if rows.order is None:
            raise FeatureSchemaMismatch("pyfunc observation", "an RL policy", f"a {self.manifest.kind} model")
        X = frame.iloc[:, rows.take].to_numpy(np.float64) if rows.take is not None else frame.to_numpy(np.float64)
        return rows.observation(X, *self._book(frame, rows))


@dataclass(frozen=True)
class PolicyRows:
    """A :class:`PolicyModel` bound by :meth:`PolicyModel.rows` to ``n_rows`` symbols and a column order:
    ``take`` the positions of the model's features among the columns (None: the columns are the features, in
    order); ``order`` (RL) the row of each of the policy's symbols."""

    policy: PolicyModel
    n_rows: int
    take: np.ndarray | None
    order: np.ndarray | None

    def weights(self, features: np.ndarray, weight: np.ndarray, unrealized_pnl: float, drawdown: float, *,
                columns_taken: bool = False) -> np.ndarray:
        """Target weights (fraction of equity) of the bound rows, in their order, after the model's
        constraints: ``features`` rows x bound columns (``columns_taken``: already the model's features in
        order), ``weight`` each row's current portfolio weight, the book's ``unrealized_pnl`` (fraction of
        equity) and ``drawdown`` (``1 - equity / peak``); the last three are read by RL policies only."""
        X = features if columns_taken or self.take is None else features[:, self.take]
        if X.shape != (self.n_rows, len(self.policy.feature_names)):
            raise FeatureSchemaMismatch("policy input shape", f"{self.n_rows} x {len(self.policy.feature_names)}",
                                        " x ".join(map(str, X.shape)))
        X = np.asarray(X, dtype=np.float64)
        model, manifest = self.policy.model, self.policy.manifest
        if self.order is None:
            return np.asarray(model.weights(model.score_rows(X), self.n_rows), dtype=np.float64)
        policy = manifest.policy
        action = model.act(self.observation(X, weight, unrealized_pnl, drawdown)[None, :])[0]
        out = np.empty(self.n_rows)
        out[self.order] = constrain(np.asarray(action, np.float64), long_only=bool(policy["long_only"]),
                                    max_position=float(policy["max_position"]),
                                    max_leverage=float(policy["max_leverage"]))
        return out

    def observation(self, X: np.ndarray, weight: np.ndarray, unrealized_pnl: float, drawdown: float) -> np.ndarray:
        """The RL observation of the model's feature rows ``X`` and each row's ``weight`` (bound row order)."""
        assert self.order is not None  # an RL policy's rows (PolicyModel.rows sets the order for RL kinds)
        w = np.asarray(weight, np.float64)[self.order]
        gross, net = float(np.abs(w).sum()), float(w.sum())
        obs = np.concatenate([X[self.order].reshape(-1), [1.0 - net], w,
                              [gross / float(self.policy.manifest.policy["max_leverage"]), gross, net,
                               float(unrealized_pnl), float(drawdown)]])
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
