"""Build what every entrypoint job starts from, once, from typed configs: the validated bars and their
features, and the cost truth (the simulator preset with the cost model's learned state on top)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ai_trading.data import Bars, DataConfig, load
from ai_trading.execution import (
    EwmaCostModel,
    EwmaCostModelConfig,
    ExecParams,
    MarketArrays,
    SimulatorConfig,
    build_execution,
)
from ai_trading.features import FeatureBuilder, FeatureSet, FeatureSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    """Validated bars and the features built from them."""

    bars: Bars
    features: FeatureSet


def build_dataset(data: DataConfig, features: FeatureSpec) -> Dataset:
    """Load ``data`` and build ``features`` on it."""
    bars = load(data)
    feature_set = FeatureBuilder(features).build(bars)
    log.info("dataset ready symbols=%s bars=%d feature_rows=%d schema=%s fingerprint=%s", ",".join(bars.symbols),
             len(bars.frame), len(feature_set.frame), feature_set.schema_hash[:12], bars.fingerprint[:12])
    return Dataset(bars=bars, features=feature_set)


@dataclass(frozen=True)
class Execution:
    """The market arrays and kernel parameters of a job's bars under its cost truth, and that truth's hash
    (``cost_model_hash``: the preset's coefficients and the learned state)."""

    market: MarketArrays
    params: ExecParams
    cost_model_hash: str


def cost_model_hash(simulator: SimulatorConfig, cost_model: EwmaCostModelConfig) -> str:
    """The ``cost_model_hash`` a job with this preset and learned state tags its runs and manifests with."""
    return EwmaCostModel.from_config(cost_model, simulator).cost_hash


def build_costs(dataset: Dataset, simulator: SimulatorConfig, cost_model: EwmaCostModelConfig) -> Execution:
    """The execution of ``dataset``'s bars under ``simulator`` with the learned state of ``cost_model``."""
    model = EwmaCostModel.from_config(cost_model, simulator)
    market, params = build_execution(dataset.bars.frame, simulator, model, dataset.bars.frequency)
    log.info("costs ready cost_model_hash=%s learned_state=%s", model.cost_hash[:12], cost_model.state_path)
    return Execution(market=market, params=params, cost_model_hash=model.cost_hash)
