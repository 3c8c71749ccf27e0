"""Wiring: the only code below the entrypoints that reads a composed Hydra config.

Each entrypoint hands its composed config to one function here, which instantiates every config group once
into its frozen typed config (each validates its own fields) and returns them together; everything below
takes those typed objects. The resolved config that runs log is masked of secrets here as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ai_trading.data import DataConfig
from ai_trading.errors import ConfigError
from ai_trading.evaluation.baselines import TrendConfig
from ai_trading.evaluation.slo import SLOConfig
from ai_trading.evaluation.walkforward import WalkForwardConfig
from ai_trading.execution import EwmaCostModelConfig, SimulatorConfig
from ai_trading.features import FeatureSpec
from ai_trading.rl_trading import PortfolioEnvConfig
from ai_trading.rl_trading.train import AlgoConfig
from ai_trading.secrets import mask_secrets
from ai_trading.tracking import TrackingConfig


@dataclass(frozen=True)
class ResearchConfig:
    """What every research job shares: data, features, the cost truth, tracking and the run's identity.
    ``resolved`` is the composed config as plain data with secrets masked (what runs log)."""

    experiment_name: str
    seed: int
    data: DataConfig
    features: FeatureSpec
    simulator: SimulatorConfig
    cost_model: EwmaCostModelConfig
    slo: SLOConfig
    tracking: TrackingConfig
    resolved: Mapping[str, Any]


@dataclass(frozen=True)
class TrainConfig:
    """The main job (``python -m ai_trading.train``)."""

    research: ResearchConfig
    env: PortfolioEnvConfig
    algo: AlgoConfig
    trend: TrendConfig
    torch_threads: int


@dataclass(frozen=True)
class EvaluateConfig:
    """The walk-forward job (``python -m ai_trading.evaluate``): the strategy's own typed config, the fold
    layout, and a saved model to evaluate as is (None: fit per fold)."""

    research: ResearchConfig
    strategy: Any
    walkforward: WalkForwardConfig
    model_path: str | None
    allow_in_sample: bool


def _group(cfg: DictConfig, key: str) -> Any:
    try:
        return instantiate(cfg[key], _convert_="all")
    except ConfigError:
        raise
    except Exception as exc:  # Hydra wraps a typed config's own error; unwrap it so the key is named once
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(f"{key}: {exc}") from exc


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as plain data, interpolations resolved and secrets masked."""
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    return mask_secrets({str(k): v for k, v in container.items()})


def research_config(cfg: DictConfig) -> ResearchConfig:
    seed = cfg.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed={seed!r}: must be an integer in [0, 2**32)")
    return ResearchConfig(
        experiment_name=str(cfg.experiment_name), seed=seed, data=_group(cfg, "data"),
        features=_group(cfg, "features"), simulator=_group(cfg, "simulator"), cost_model=_group(cfg, "cost_model"),
        slo=_group(cfg, "slo"), tracking=_group(cfg, "tracking"), resolved=resolved_config(cfg))


def train_config(cfg: DictConfig) -> TrainConfig:
    """Every group of ``conf/train.yaml`` instantiated once."""
    threads = cfg.torch_threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"torch_threads={threads!r}: must be an integer >= 1")
    return TrainConfig(research=research_config(cfg), env=_group(cfg, "env"), algo=_group(cfg, "algo"),
                       trend=_group(cfg.baselines, "trend"), torch_threads=threads)


def evaluate_config(cfg: DictConfig) -> EvaluateConfig:
    """Every group of ``conf/evaluate.yaml`` instantiated once."""
    model_path = cfg.get("model_path")
    return EvaluateConfig(research=research_config(cfg), strategy=_group(cfg, "strategy"),
                          walkforward=_group(cfg, "walkforward"),
                          model_path=None if model_path is None else str(model_path),
                          allow_in_sample=bool(cfg.allow_in_sample))
