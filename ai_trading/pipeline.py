"""Build the data and features of a composed run config: the first steps of every entrypoint."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hydra.utils import instantiate
from omegaconf import DictConfig

from ai_trading.data import Bars, DataConfig, load
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
