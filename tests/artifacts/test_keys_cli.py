"""``python -m ai_trading.keys``: generate, show, trust, list; private keys are never printed."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from ai_trading.artifacts.keys import read_key_file
from ai_trading.artifacts.signing import Ed25519Signer


def _keys(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ai_trading.keys", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_keys_cli_generates_shows_and_trusts_without_printing_the_private_key(tmp_path: Path) -> None:
    assert "generate" in _keys("--help").stdout
    made = _keys("generate", "--out", str(tmp_path / "k.key"))
    assert made.returncode == 0, made.stderr
    seed = read_key_file(tmp_path / "k.key")
    signer = Ed25519Signer(seed)
    assert signer.key_id in made.stdout and base64.b64encode(signer.public_key).decode() in made.stdout
    shown = _keys("show", env={"AI_TRADING_SIGNING_KEY": str(tmp_path / "k.key")})
    assert shown.returncode == 0 and signer.key_id in shown.stdout and "development" not in shown.stdout
    for out in (made.stdout + made.stderr, shown.stdout + shown.stderr):
        assert seed.hex() not in out and base64.b64encode(seed).decode() not in out
    assert signer.key_id not in _keys("list").stdout
    trusted = _keys("trust", base64.b64encode(signer.public_key).decode(), "--label", "desk")
    assert trusted.returncode == 0, trusted.stderr
    assert signer.key_id in _keys("list").stdout
    bad = _keys("trust", "not-a-key", "--label", "x")
    assert bad.returncode == 2 and "base64" in bad.stderr


def test_keys_show_on_a_fresh_machine_creates_no_key_and_says_how_to_make_one() -> None:
    from ai_trading.artifacts.keys import ai_trading_home

    shown = _keys("show")
    assert shown.returncode == 0, shown.stderr
    assert "no signing key yet" in shown.stdout and "generate" in shown.stdout
    assert not (ai_trading_home() / "keys").exists() and not (ai_trading_home() / "keyring.json").exists()
