"""The Hydra config tree composes: root, every group option, every experiment, and overrides."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ai_trading.data import DataConfig
from ai_trading.evaluation.walkforward import WalkForwardConfig
from ai_trading.execution import EwmaCostModelConfig, SimulatorConfig
from ai_trading.paths import CONF_DIR
from ai_trading.rl_trading import PortfolioEnvConfig
from ai_trading.wiring import alerts_config, evaluate_config, oms_config, train_config
from tests.conftest import compose_config

GROUPS = ["data", "features", "simulator", "cost_model", "env", "algo", "governance", "oms", "alerts", "tracking",
          "signing", "experiment", "hydra"]


def test_root_config_has_every_group() -> None:
    cfg = compose_config()
    for group in GROUPS:
        assert (CONF_DIR / group).is_dir(), group
    for key in ["data", "features", "simulator", "cost_model", "env", "algo", "governance", "oms", "alerts",
                "tracking", "seed", "experiment_name"]:
        assert key in cfg, key


@pytest.mark.parametrize("path", sorted((CONF_DIR / "experiment").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_experiment_composes_and_instantiates_data(path: Path) -> None:
    cfg = compose_config([f"experiment={path.stem}"])
    assert cfg.experiment_name == path.stem
    assert isinstance(instantiate(cfg.data, _convert_="all"), DataConfig)


OPTIONS = [
    (g, p.stem) for g in GROUPS if g not in ("experiment", "hydra") for p in sorted((CONF_DIR / g).glob("*.yaml"))
]
TYPED = {"data": "data", "features": "features", "simulator": "simulator", "cost_model": "cost_model",
         "tracking": "tracking", "signing": "signing"}


@pytest.mark.parametrize(("group", "option"), OPTIONS)
def test_every_group_option_builds_the_typed_config_the_entrypoint_uses(
    group: str, option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = [f"{group}={option}"]
    if (group, option) == ("data", "directory"):
        (tmp_path / "X.csv").write_text("")  # the entrypoint checks the file is there; nothing reads it
        overrides += [f"data.source={tmp_path}", "data.symbols=[X]"]
    if (group, option) == ("data", "parquet_dataset"):
        (tmp_path / "symbol=X" / "year=2024").mkdir(parents=True)
        (tmp_path / "symbol=X" / "year=2024" / "part-0.parquet").write_text("")  # checked for, never read here
        overrides += [f"data.source={tmp_path}", "data.symbols=[X]"]
    if (group, option) == ("data", "alpaca"):  # the entrypoint checks the keys are set; nothing is downloaded
        monkeypatch.setenv("APCA_API_KEY_ID", "id")
        monkeypatch.setenv("APCA_API_SECRET_KEY", "secret")
        overrides += ["data.symbols=[SPY]", "data.start=2024-01-01", "data.end=2024-07-01",
                      f"data.cache_dir={tmp_path}"]
    cfg = compose_config(overrides)
    config = train_config(cfg)
    # The operations groups ride along in the root config; the OMS, the live loop and the alert router build them.
    built = {"env": config.env, "algo": config.algo, "governance": config.governance}.get(group)
    if group == "oms":
        built = oms_config(cfg)
    elif group == "alerts":
        built = alerts_config(cfg)
    elif group in TYPED:
        built = getattr(config.research, TYPED[group])
    assert dataclasses.is_dataclass(built), (group, type(built))


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF_DIR / "strategy").glob("*.yaml")))
def test_every_strategy_option_builds_with_the_evaluate_entrypoint(option: str) -> None:
    config = evaluate_config(compose_config([f"strategy={option}"], config_name="evaluate"))
    assert dataclasses.is_dataclass(config.strategy)
    assert config.strategy.name == option


@pytest.mark.parametrize(("cls", "group", "option"), [
    (SimulatorConfig, "simulator", "default"), (EwmaCostModelConfig, "cost_model", "ewma"),
    (PortfolioEnvConfig, "env", "portfolio"), (WalkForwardConfig, "walkforward", "default"),
])
def test_python_defaults_equal_the_yaml(cls: type, group: str, option: str) -> None:
    name = "evaluate" if group == "walkforward" else "train"
    node = compose_config([f"{group}={option}"], config_name=name)[group]
    built = instantiate(node, _convert_="all")
    defaults = cls(**{f.name: getattr(built, f.name) for f in dataclasses.fields(cls)
                      if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING})
    if group == "walkforward":  # the yaml interpolates the run's seed; the rest must equal the defaults
        defaults = dataclasses.replace(defaults, seed=built.seed)
    assert built == defaults


def test_override_symbols_reaches_data_config() -> None:
    cfg = compose_config(["data.symbols=[NVDA,ORCL]", "data.start=2005-01-01"])
    data = instantiate(cfg.data, _convert_="all")
    assert list(data.symbols) == ["NVDA", "ORCL"]
    assert data.start == "2005-01-01"


def test_tracking_uri_defaults_to_sqlite_and_honours_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert compose_config().tracking.tracking_uri == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert compose_config().tracking.tracking_uri == "http://127.0.0.1:5000"


def test_entrypoint_cfg_job_prints_composed_config_with_override() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ai_trading.train", "--cfg", "job", "data.symbols=[NVDA,ORCL]"],
        capture_output=True, text=True, check=True,
    ).stdout
    printed = yaml.safe_load(out)
    assert printed["data"]["symbols"] == ["NVDA", "ORCL"]
    assert printed["features"]["name"] == "default_daily"
    assert printed["tracking"]["experiment_name"] == "${experiment_name}"


def test_entrypoint_help_lists_groups_and_examples() -> None:
    out = subprocess.run([sys.executable, "-m", "ai_trading.train", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "algo: a2c, ppo, sac, td3" in out
    assert "python -m ai_trading.train -m seed=0,1,2,3,4" in out
    groups = out.split("== Config groups")[1].split("==")[1]
    assert "strategy:" not in groups and "walkforward:" not in groups  # the walk-forward job's, not training's


def test_evaluate_help_lists_its_own_groups_only() -> None:
    out = subprocess.run([sys.executable, "-m", "ai_trading.evaluate", "--help"], capture_output=True, text=True,
                         check=True).stdout
    groups = out.split("== Config groups")[1].split("==")[1]
    assert "strategy: buy_and_hold, ml, trend" in groups and "walkforward: default" in groups
    assert "algo:" not in groups and "env:" not in groups
    assert "python -m ai_trading.evaluate" in out


def _launcher_plugin(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(f"hydra_plugins.{name}") is not None


@pytest.mark.parametrize(
    ("preset", "plugin", "target"),
    [
        ("local_parallel", "hydra_joblib_launcher", "JoblibLauncher"),
        ("slurm", "hydra_submitit_launcher", "SlurmLauncher"),
        ("slurm_local", "hydra_submitit_launcher", "LocalLauncher"),
        pytest.param("ray_cluster", "hydra_ray_launcher", "RayLauncher", marks=pytest.mark.skipif(
            not _launcher_plugin("hydra_ray_launcher"),
            reason="hydra-ray-launcher is the optional [ray] extra (it pulls ray); not installed here")),
    ],
)
def test_launcher_preset_composes_with_its_plugin(preset: str, plugin: str, target: str) -> None:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="train", overrides=[f"hydra/launcher={preset}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
