"""Build the data and features of a composed run config: the first steps of every entrypoint."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from ai_trading.data import BarFrequency, Bars, DataConfig, load
from ai_trading.execution import EwmaCostModel, ExecParams, MarketArrays, SimulatorConfig, build_execution
from ai_trading.features import FeatureBuilder, FeatureSet, FeatureSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    """Validated bars and the features built from them."""

    bars: Bars
    features: FeatureSet


def build_dataset(cfg: DictConfig) -> Dataset:
    """Load ``cfg.data`` and build ``cfg.features`` on it."""
    data_config: DataConfig = instantiate(cfg.data, _convert_="all")
    spec: FeatureSpec = instantiate(cfg.features, _convert_="all")
    bars = load(data_config)
    features = FeatureBuilder(spec).build(bars)
    log.info("dataset ready symbols=%s bars=%d feature_rows=%d schema=%s fingerprint=%s", ",".join(bars.symbols),
             len(bars.frame), len(features.frame), features.schema_hash[:12], bars.fingerprint[:12])
    return Dataset(bars=bars, features=features)


def build_execution_for(cfg: DictConfig, bars: pd.DataFrame,
                        frequency: BarFrequency | None = None) -> tuple[MarketArrays, ExecParams]:
    """Market arrays and execution parameters of ``bars`` under ``cfg.simulator``; with
    ``cfg.use_cost_model`` the costs come from the EWMA cost model of ``cfg.cost_model``. ``frequency``
    (``Bars.frequency``) carries ``data.periods_per_year``; None infers it from the bars."""
    sim_config: SimulatorConfig = instantiate(cfg.simulator, _convert_="all")
    cost_model = EwmaCostModel(instantiate(cfg.cost_model, _convert_="all")) if cfg.use_cost_model else None
    return build_execution(bars, sim_config, cost_model, frequency)

