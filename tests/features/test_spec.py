"""feature_schema_hash: canonical, order-sensitive where it matters, and pinned per version."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from ai_trading.errors import ConfigError
from ai_trading.features import make_spec, registered_hashes
from ai_trading.paths import CONF_DIR

KINDS = ["log_return", "realized_vol", "parkinson_vol", "momentum", "zscore", "volume_z"]
PARAM = {"log_return": "horizon"}

feature_st = st.builds(
    lambda kind, n: {"kind": kind, PARAM.get(kind, "window"): n}, st.sampled_from(KINDS), st.integers(2, 300)
)
features_st = st.lists(feature_st, min_size=1, max_size=8, unique_by=lambda f: tuple(sorted(f.items())))


def _hash(name: str, version: int, features: list[dict]) -> str:
    return make_spec(name, version, features).schema_hash


@settings(max_examples=60)
@given(features=features_st)
def test_schema_hash_ignores_dict_key_order(features: list[dict]) -> None:
    reordered = [dict(reversed(list(f.items()))) for f in features]
    assert _hash("s", 1, features) == _hash("s", 1, reordered)


@settings(max_examples=60)
@given(features=features_st, data=st.data())
def test_schema_hash_changes_with_any_parameter(features: list[dict], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(features) - 1))
    changed = [dict(f) for f in features]
    key = next(k for k in changed[i] if k != "kind")
    changed[i][key] = changed[i][key] + 1
    if len({tuple(sorted(f.items())) for f in changed}) < len(changed):
        return  # the change made two features equal; the spec itself rejects that
    assert _hash("s", 1, features) != _hash("s", 1, changed)


@settings(max_examples=60)
@given(features=features_st.filter(lambda fs: len(fs) > 1))
def test_schema_hash_changes_with_feature_order(features: list[dict]) -> None:
    assert _hash("s", 1, features) != _hash("s", 1, features[::-1])


@given(features=features_st)
def test_schema_hash_changes_with_name_and_version(features: list[dict]) -> None:
    base = _hash("s", 1, features)
    assert base != _hash("t", 1, features)
    assert base != _hash("s", 2, features)


def test_schema_hash_ignores_yaml_whitespace_and_key_order(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text("name: x\nversion: 3\nfeatures:\n"
                 "  - {kind: zscore, window: 10}\n  - {kind: log_return, horizon: 2}\n")
    b.write_text("version:   3\nfeatures:\n- window: 10\n  kind: zscore\n"
                 "-   horizon: 2\n    kind: log_return\nname: x\n")
    specs = [OmegaConf.to_container(OmegaConf.load(p)) for p in (a, b)]
    assert _hash(**specs[0]) == _hash(**specs[1])  # type: ignore[arg-type]


def test_spec_dtype_is_part_of_the_hashed_schema() -> None:
    canonical = make_spec("s", 1, [{"kind": "zscore", "window": 5}]).canonical()
    assert canonical["dtypes"] == ["float32"]
    assert canonical["columns"] == ["zscore_5"]


@pytest.mark.parametrize("path", sorted((CONF_DIR / "features").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_feature_config_is_registered_with_its_hash(path: Path) -> None:
    """A schema change without a version bump fails here: bump `version` and register the new hash."""
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    assert isinstance(cfg, dict)
    spec = make_spec(cfg["name"], cfg["version"], cfg["features"])
    registry = registered_hashes()
    assert str(spec.version) in registry.get(spec.name, {}), f"{spec.name} v{spec.version} is not registered"
    assert registry[spec.name][str(spec.version)] == spec.schema_hash, (
        f"{path.name} changed without a version bump: v{spec.version} is registered as "
        f"{registry[spec.name][str(spec.version)]}, the file now hashes to {spec.schema_hash}"
    )


@pytest.mark.parametrize(
    ("features", "match"),
    [
        ([{"kind": "nope", "window": 3}], "unknown feature kind"),
        ([{"kind": "zscore"}], "takes parameters"),
        ([{"kind": "zscore", "window": 0}], "positive integer"),
        ([{"kind": "zscore", "window": 1}], "at least 2"),
        ([{"kind": "zscore", "window": 2.5}], "positive integer"),
        ([{"window": 3}], "no 'kind'"),
        ([{"kind": "zscore", "window": 3}, {"kind": "zscore", "window": 3}], "repeats"),
        ([], "no features"),
    ],
)
def test_make_spec_rejects_bad_config(features: list[dict], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_spec("s", 1, features)
