"""Wiring: the only code below the entrypoints that reads a composed Hydra config.

Each entrypoint hands its composed config to one function here, which instantiates every config group once
into its frozen typed config (each validates its own fields) and returns them together; everything below
takes those typed objects. The resolved config that runs log is masked of secrets here as well.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ai_trading.artifacts.config import SigningConfig
from ai_trading.artifacts.loader import Expectations
from ai_trading.data import DataConfig
from ai_trading.data.loader import check_available
from ai_trading.errors import AiTradingError, ConfigError
from ai_trading.evaluation.baselines import TrendConfig
from ai_trading.evaluation.slo import SLOConfig
from ai_trading.evaluation.walkforward import WalkForwardConfig
from ai_trading.execution import EwmaCostModelConfig, SimulatorConfig
from ai_trading.features import FeatureSpec
from ai_trading.monitoring.config import AlertsConfig, alerts_config_from_mapping
from ai_trading.oms.config import OmsConfig
from ai_trading.pipeline import cost_model_hash
from ai_trading.rl.governance import GovernanceConfig
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
    signing: SigningConfig
    resolved: Mapping[str, Any]


@dataclass(frozen=True)
class TrainConfig:
    """The main job (``python -m ai_trading.train``)."""

    research: ResearchConfig
    env: PortfolioEnvConfig
    algo: AlgoConfig
    trend: TrendConfig
    torch_threads: int
    model_path: str | None
    # Applied at a sweep's end (ai_trading.sweep); built here too so a bad threshold fails every run up front.
    governance: GovernanceConfig


@dataclass(frozen=True)
class EvaluateConfig:
    """The walk-forward job (``python -m ai_trading.evaluate``): the strategy's own typed config, the fold
    layout, and a saved model to evaluate as is (None: fit per fold)."""

    research: ResearchConfig
    strategy: Any
    walkforward: WalkForwardConfig
    model_path: str | None
    allow_in_sample: bool


@dataclass(frozen=True)
class PromoteConfig:
    """The on-demand promotion job (``python -m ai_trading.promote sweep_id=...``): which sweep, where its runs
    are, and the gates to check it against."""

    sweep_id: str
    governance: GovernanceConfig
    tracking: TrackingConfig
    signing: SigningConfig
    # The features and costs the promoted model must have been built with.
    expected: Expectations


def _group(cfg: DictConfig, key: str, path: str | None = None) -> Any:
    node = cfg[key]
    _check_types(node, path or key)
    try:
        return instantiate(node, _convert_="all")
    except AiTradingError:
        raise
    except Exception as exc:  # Hydra wraps a typed config's own error; unwrap it so the key is named once
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, AiTradingError):
            raise cause from None
        raise ConfigError(f"{path or key}: {exc}") from exc


def _check_types(node: Any, path: str) -> None:
    """Each value of a ``_target_`` node against its typed config's field annotation (scalars only: int,
    float, bool, str, None and literals), recursively, so ``algo.total_timesteps=abc`` names its key instead
    of failing as a comparison inside the config's own checks."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    try:
        target = get_object(str(node._target_))
    except Exception as exc:  # Hydra raises ImportError or its own errors for an unknown target
        raise ConfigError(f"{path}._target_={node._target_!r}: {exc}") from None
    if not (isinstance(target, type) and dataclasses.is_dataclass(target)):
        return
    hints = typing.get_type_hints(target)
    for f in dataclasses.fields(target):
        if OmegaConf.is_missing(node, f.name):  # before `in`, which is false for a ??? value
            raise ConfigError(f"{path}.{f.name} is required: set {path}.{f.name}=...")
        if f.name not in node:
            continue
        value = node._get_node(f.name)
        if isinstance(value, DictConfig):
            _check_types(value, f"{path}.{f.name}")
            continue
        try:
            value = node[f.name]
        except OmegaConfBaseException as exc:  # an interpolation that does not resolve
            raise ConfigError(f"{path}.{f.name}: {exc}") from None
        if not _fits(value, hints.get(f.name, Any)):
            raise ConfigError(f"{path}.{f.name}={value!r}: must be {_describe(hints[f.name])}")


_SCALARS: dict[Any, tuple[type, ...]] = {int: (int,), float: (int, float), bool: (bool,), str: (str,),
                                         type(None): (type(None),)}


def _options(hint: Any) -> list[Any] | None:
    """The scalar alternatives of an annotation, or None when it is not a scalar one (left unchecked)."""
    if hint in _SCALARS:
        return [hint]
    if typing.get_origin(hint) is typing.Literal:
        return [("literal", v) for v in typing.get_args(hint)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        parts = [_options(arg) for arg in typing.get_args(hint)]
        return None if any(p is None for p in parts) else [o for p in parts if p is not None for o in p]
    return None


def _fits(value: Any, hint: Any) -> bool:
    options = _options(hint)
    if options is None:
        return True
    for option in options:
        if isinstance(option, tuple):
            if value == option[1] and type(value) is type(option[1]):
                return True
        elif isinstance(value, _SCALARS[option]) and (option is bool or not isinstance(value, bool)):
            return True
    return False


def _describe(hint: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    parts = [repr(o[1]) if isinstance(o, tuple) else names[o] for o in _options(hint) or []]
    return " or ".join(parts)


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as plain data, interpolations resolved and secrets masked."""
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    return mask_secrets({str(k): v for k, v in container.items()})


def research_config(cfg: DictConfig) -> ResearchConfig:
    seed = cfg.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed={seed!r}: must be an integer in [0, 2**32)")
    data = _group(cfg, "data")
    check_available(data)
    return ResearchConfig(
        experiment_name=str(cfg.experiment_name), seed=seed, data=data,
        features=_group(cfg, "features"), simulator=_group(cfg, "simulator"), cost_model=_group(cfg, "cost_model"),
        slo=_group(cfg, "slo"), tracking=_group(cfg, "tracking"), signing=_group(cfg, "signing"),
        resolved=resolved_config(cfg))


def _model_path(cfg: DictConfig) -> str | None:
    """A saved model to evaluate: ``models:/...``, ``runs:/...`` or a local model directory (the ``model/``
    artifact of a run, with its signed manifest)."""
    model_path = cfg.get("model_path")
    if model_path is None:
        return None
    text = str(model_path)
    if not text.startswith(("models:/", "runs:/")) and not Path(text).is_dir():
        raise ConfigError(f"model_path={model_path!r}: no such directory (expected the model/ artifact of an "
                          "earlier run, or a models:/ or runs:/ URI)")
    return text


def train_config(cfg: DictConfig) -> TrainConfig:
    """Every group of ``conf/train.yaml`` instantiated once."""
    threads = cfg.torch_threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"torch_threads={threads!r}: must be an integer >= 1")
    return TrainConfig(research=research_config(cfg), env=_group(cfg, "env"), algo=_group(cfg, "algo"),
                       trend=_group(cfg.baselines, "trend", "baselines.trend"), torch_threads=threads,
                       model_path=_model_path(cfg), governance=governance_config(cfg))


def evaluate_config(cfg: DictConfig) -> EvaluateConfig:
    """Every group of ``conf/evaluate.yaml`` instantiated once."""
    model_path = _model_path(cfg)
    if not isinstance(cfg.allow_in_sample, bool):
        raise ConfigError(f"allow_in_sample={cfg.allow_in_sample!r}: must be true or false")
    return EvaluateConfig(research=research_config(cfg), strategy=_group(cfg, "strategy"),
                          walkforward=_group(cfg, "walkforward"),
                          model_path=model_path,
                          allow_in_sample=cfg.allow_in_sample)


def governance_config(cfg: DictConfig) -> GovernanceConfig:
    """The promotion gates of a composed config's ``governance`` group (the sweep's end and ``promote``)."""
    if "governance" not in cfg:
        raise ConfigError("governance: the config has no governance group (add `- governance: default` to its "
                          "defaults)")
    config = _group(cfg, "governance")
    if not isinstance(config, GovernanceConfig):
        raise ConfigError(f"governance._target_ must build {GovernanceConfig.__qualname__}, got {type(config)}")
    return config


def promote_config(cfg: DictConfig) -> PromoteConfig:
    """Every group of ``conf/promote.yaml`` instantiated once."""
    if OmegaConf.is_missing(cfg, "sweep_id"):
        raise ConfigError("sweep_id is required: set sweep_id=<the sweep's id> (the sweep_id tag of its runs, "
                          "e.g. ai_trading__2026-01-02_03-04-05_000006)")
    sweep_id = cfg.sweep_id
    if not isinstance(sweep_id, str) or not sweep_id.strip():
        raise ConfigError(f"sweep_id={sweep_id!r}: must be a non-empty string")
    return PromoteConfig(sweep_id=sweep_id, governance=governance_config(cfg), tracking=_group(cfg, "tracking"),
                         signing=signing_config(cfg), expected=expected_provenance(cfg))


def expected_provenance(cfg: DictConfig) -> Expectations:
    """What a model promoted or loaded by this config's job must have been built with: its features' schema hash
    and its cost model's hash (the preset and the learned state)."""
    features, simulator, cost_model = (_group(cfg, key) for key in ("features", "simulator", "cost_model"))
    return Expectations(feature_schema_hash=features.schema_hash,
                        cost_model_hash=cost_model_hash(simulator, cost_model), dataset_fingerprint=None)


def signing_config(cfg: DictConfig) -> SigningConfig:
    """Manifest signing and registry naming of a composed config's ``signing`` group."""
    if "signing" not in cfg:
        raise ConfigError("signing: the config has no signing group (add `- signing: default` to its defaults)")
    config = _group(cfg, "signing")
    if not isinstance(config, SigningConfig):
        raise ConfigError(f"signing._target_ must build {SigningConfig.__qualname__}, got {type(config)}")
    return config


def oms_config(cfg: DictConfig) -> OmsConfig:
    """The typed ``oms`` group (store, paper venue, engine, foreign-order policy)."""
    values = OmegaConf.to_container(cfg.oms, resolve=True)
    if not isinstance(values, dict):
        raise ConfigError(f"oms: a mapping, got {type(values).__name__}")
    return OmsConfig.from_mapping({str(k): v for k, v in values.items()})


def alerts_config(cfg: DictConfig) -> AlertsConfig:
    """Routing, sinks, rules and the kill-switch hook of a composed config's ``alerts`` group (no ``_target_``: a
    sink's shape depends on its ``type``, so the mapping is parsed by :func:`alerts_config_from_mapping`)."""
    if "alerts" not in cfg:
        raise ConfigError("alerts: the config has no alerts group (add `- alerts: default` to its defaults)")
    data = OmegaConf.to_container(cfg.alerts, resolve=True)
    if not isinstance(data, dict):
        raise ConfigError(f"alerts: must be a mapping, got {type(data).__name__}")
    return alerts_config_from_mapping({str(k): v for k, v in data.items()})
