"""Where the repository's config tree lives (the package is installed editable from its checkout)."""

from __future__ import annotations

from pathlib import Path

from ai_trading.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def conf_file(*parts: str) -> Path:
    """Path of a file under ``conf/``; fails clearly when the checkout's config tree is missing."""
    path = CONF_DIR.joinpath(*parts)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found: install ai_trading editable from its checkout "
                          "(pip install -e .) so conf/ sits beside the package")
    return path
