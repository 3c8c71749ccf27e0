"""The Alpaca data source against a local server speaking Alpaca's market-data JSON: paged bars, the Parquet
cache (a second load sends nothing), validation, and the fingerprint of the same bars from a Parquet directory."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pytest_httpserver import HTTPServer

from ai_trading.data import DataConfig, load
from ai_trading.data.alpaca import AlpacaDataConfig, default_cache_dir
from ai_trading.data.loader import check_available
from ai_trading.errors import ConfigError, DataValidationError
from ai_trading.wiring import train_config
from tests.alpaca_server import FakeAlpaca, error, fake_on, serve
from tests.conftest import compose_config

KEY_ID = "PKMARKERKEYID0000002"
SECRET = "marker-secret-YYY-fedcba9876543210"
DAYS = pd.bdate_range("2024-01-02", "2024-01-12")  # 9 sessions


def bar(day: pd.Timestamp, price: float, volume: int) -> dict[str, Any]:
    # Alpaca stamps a daily bar at midnight New York time, in UTC
    t = day.tz_localize("America/New_York").tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"t": t, "o": price, "h": price + 1.5, "l": price - 1.0, "c": price + 0.5, "v": volume, "n": 1000 + volume,
            "vw": price + 0.25}


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPServer]:
    with serve() as running:
        yield running


@pytest.fixture
def fake(server: HTTPServer) -> FakeAlpaca:
    fake = fake_on(server)
    fake.bars["SPY"] = [bar(d, 470.0 + i, 80_000_000 + i) for i, d in enumerate(DAYS)]
    fake.bars["QQQ"] = [bar(d, 400.0 - i, 40_000_000 + i) for i, d in enumerate(DAYS[:5])]
    return fake


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)


def config(fake: FakeAlpaca, tmp_path: Path, **kw: Any) -> AlpacaDataConfig:
    base: dict[str, Any] = {"symbols": ["SPY", "QQQ"], "start": "2024-01-01", "end": "2024-01-15",
                            "cache_dir": str(tmp_path / "cache"), "data_url": fake.url, "read_timeout": 2.0}
    return AlpacaDataConfig(**{**base, **kw})


def bar_requests(fake: FakeAlpaca) -> list[dict[str, str]]:
    return [s.args for s in fake.requests("GET", "/v2/stocks/bars")]


def test_bars_are_paged_cached_validated_and_fingerprinted_like_a_parquet_directory(
        fake: FakeAlpaca, keys: None, tmp_path: Path) -> None:
    cfg = config(fake, tmp_path)
    bars = load(cfg)
    spy = [a for a in bar_requests(fake) if a["symbols"] == "SPY"]
    assert len(spy) == 3 and "page_token" not in spy[0] and all("page_token" in a for a in spy[1:])
    assert spy[0] | {"page_token": "-"} == {"symbols": "SPY", "timeframe": "1Day", "start": "2024-01-01T00:00:00Z",
                                          "end": "2024-01-15T00:00:00Z", "limit": "10000", "adjustment": "split",
                                          "feed": "sip", "sort": "asc", "page_token": "-"}
    assert len(bar_requests(fake)) == 3 + 2  # SPY in 3 pages of 3 bars, QQQ in 2
    assert all(s.headers["Apca-Api-Key-Id"] == KEY_ID for s in fake.seen)
    assert len(bars.frame) == 9 + 5 and bars.symbols == ["QQQ", "SPY"] and bars.frequency.label == "1d"
    spy_close = bars.frame.xs("SPY", level="symbol")["close"].tolist()
    assert spy_close == [b["c"] for b in fake.bars["SPY"]]

    cache = tmp_path / "cache" / "bars" / "sip" / "split" / "1Day" / "20240101T000000Z_20240115T000000Z"
    assert sorted(p.name for p in cache.iterdir()) == ["QQQ.parquet", "SPY.parquet"]

    seen = len(fake.seen)
    again = load(config(fake, tmp_path))  # a new job, same selection: served from the cache
    assert len(fake.seen) == seen
    assert again.fingerprint == bars.fingerprint
    pd.testing.assert_frame_equal(again.frame, bars.frame)

    # The same bars as a user's directory of Parquet files, written here from the server's JSON.
    user = tmp_path / "user"
    user.mkdir()
    for symbol, rows in fake.bars.items():
        pd.DataFrame({"timestamp": pd.to_datetime([r["t"] for r in rows], utc=True),
                      **{name: [float(r[k]) for r in rows] for k, name in
                         (("o", "open"), ("h", "high"), ("l", "low"), ("c", "close"), ("v", "volume"))}}
                     ).to_parquet(user / f"{symbol}.parquet")
    directory = load(DataConfig(symbols=["SPY", "QQQ"], start="2024-01-01", end="2024-01-15", source=str(user)))
    assert directory.fingerprint == bars.fingerprint


def test_the_cache_key_covers_feed_adjustment_timeframe_and_range(fake: FakeAlpaca, keys: None,
                                                                   tmp_path: Path) -> None:
    load(config(fake, tmp_path, symbols=["SPY"]))
    variants = [{"feed": "iex"}, {"adjustment": "all"}, {"timeframe": "1Week"}, {"end": "2024-01-14"}]
    for change in variants:
        before = len(bar_requests(fake))
        cfg = config(fake, tmp_path, symbols=["SPY"], **change)
        if change.get("timeframe") == "1Week":  # the fake serves its daily bars whatever the timeframe
            cfg = dataclasses.replace(cfg, periods_per_year=252)
        load(cfg)
        assert len(bar_requests(fake)) > before, change
        assert bar_requests(fake)[-1][next(iter(change))] in (str(next(iter(change.values()))),
                                                              "2024-01-14T00:00:00Z")
    dirs = {p.parent for p in (tmp_path / "cache").rglob("SPY.parquet")}
    assert len(dirs) == 1 + len(variants)


def test_a_missing_key_is_a_config_error_naming_the_variables_and_a_cached_selection_needs_none(
        fake: FakeAlpaca, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    cfg = config(fake, tmp_path)
    for attempt in (lambda: check_available(cfg), lambda: load(cfg)):
        with pytest.raises(ConfigError, match="set APCA_API_KEY_ID and APCA_API_SECRET_KEY"):
            attempt()
    assert fake.seen == []
    monkeypatch.setenv("APCA_API_KEY_ID", KEY_ID)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    first = load(cfg)
    monkeypatch.delenv("APCA_API_KEY_ID")
    check_available(cfg)
    assert load(cfg).fingerprint == first.fingerprint


def test_bars_that_break_a_rule_fail_validation_naming_symbol_and_file(fake: FakeAlpaca, keys: None,
                                                                       tmp_path: Path) -> None:
    fake.bars["SPY"][4]["h"] = fake.bars["SPY"][4]["l"] - 1.0  # high below low
    with pytest.raises(DataValidationError, match=r"SPY") as caught:
        load(config(fake, tmp_path))
    assert "SPY.parquet" in str(caught.value)


def test_a_429_on_a_page_is_retried_after_what_retry_after_asks(fake: FakeAlpaca, keys: None,
                                                                tmp_path: Path) -> None:
    fake.fail("GET", "/v2/stocks/bars", error(429, 42910000, "rate limit exceeded", {"Retry-After": "0.2"}),
              error(500, 50010000, "internal server error"))
    bars = load(config(fake, tmp_path, symbols=["SPY"], backoff_seconds=0.01))
    assert len(bars.frame) == 9 and len(bar_requests(fake)) == 2 + 3


def test_a_403_names_the_key_variables_and_the_iex_feed_never_the_keys(fake: FakeAlpaca, keys: None,
                                                                       tmp_path: Path) -> None:
    fake.fail("GET", "/v2/stocks/bars", error(403, 40310000, "subscription does not permit querying recent SIP data"))
    with pytest.raises(ConfigError, match=r"HTTP 403.*APCA_API_KEY_ID.*data.feed=iex") as caught:
        load(config(fake, tmp_path))
    assert KEY_ID not in str(caught.value) and SECRET not in str(caught.value)
    assert not list((tmp_path / "cache").rglob("*.parquet"))  # nothing cached from a failed download


def test_a_symbol_with_no_bars_is_an_empty_selection_and_is_not_cached(fake: FakeAlpaca, keys: None,
                                                                       tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"empty_selection.*no 1Day bars") as caught:
        load(config(fake, tmp_path, symbols=["NOPE"]))
    assert caught.value.symbol == "NOPE"
    assert not list((tmp_path / "cache").rglob("*.parquet"))


@pytest.mark.parametrize(("change", "match"), [
    ({"start": None}, "data.start is required"), ({"end": None}, "data.end is required"),
    ({"end": "2999-01-01"}, "must be before today"), ({"timeframe": "1Fortnight"}, "data.timeframe"),
    ({"feed": "nasdaq"}, "data.feed"), ({"adjustment": "none"}, "data.adjustment"),
    ({"source": "/data/bars"}, "data=directory"), ({"max_retries": -1}, "data.max_retries"),
    ({"data_url": "ftp://x"}, "data.data_url"), ({"read_timeout": 0}, "data.read_timeout"),
    ({"secret_key_env": ""}, "data.secret_key_env"),
])
def test_bad_alpaca_settings_are_config_errors_naming_the_key(tmp_path: Path, change: dict[str, Any],
                                                              match: str) -> None:
    base: dict[str, Any] = {"symbols": ["SPY"], "start": "2024-01-01", "end": "2024-07-01"}
    with pytest.raises(ConfigError, match=match):
        AlpacaDataConfig(**{**base, **change})


def test_the_default_cache_dir_follows_ai_trading_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AI_TRADING_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "alpaca"
    cfg = AlpacaDataConfig(symbols=["SPY"], start="2024-01-01", end="2024-07-01")
    assert cfg.cached_file("SPY").is_relative_to(tmp_path / "alpaca" / "bars")


def test_the_user_command_composes_checks_and_loads(fake: FakeAlpaca, keys: None, tmp_path: Path) -> None:
    cfg = compose_config(["data=alpaca", "data.symbols=[SPY]", "data.start=2024-01-01", "data.end=2024-01-15",
                          f"data.cache_dir={tmp_path}", f"data.data_url={fake.url}"])
    data = train_config(cfg).research.data
    assert isinstance(data, AlpacaDataConfig)
    defaults = AlpacaDataConfig(symbols=["SPY"], start="2024-01-01", end="2024-01-15", cache_dir=str(tmp_path),
                                data_url=fake.url)
    assert data == defaults  # the yaml's other values are the Python defaults
    assert len(load(data).frame) == 9


def test_source_alpaca_on_another_preset_uses_alpaca_with_the_default_settings(
        fake: FakeAlpaca, keys: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_TRADING_CACHE_DIR", str(tmp_path))
    overrides = ["data.source=alpaca", "data.symbols=[SPY]", "data.start=2024-01-01", "data.end=2024-01-15"]
    data = train_config(compose_config(overrides)).research.data  # the default preset, daily_indices
    assert type(data) is DataConfig and data.source == "alpaca"
    # Alpaca's real endpoint is the default: fill the cache from the local server first, as a download would.
    downloaded = load(AlpacaDataConfig(symbols=["SPY"], start="2024-01-01", end="2024-01-15", data_url=fake.url))
    seen = len(fake.seen)
    assert load(data).fingerprint == downloaded.fingerprint and len(fake.seen) == seen
    monkeypatch.delenv("APCA_API_SECRET_KEY")
    with pytest.raises(ConfigError, match="set APCA_API_SECRET_KEY"):
        train_config(compose_config([*overrides[:-1], "data.end=2024-01-14"]))  # not cached: keys needed
