"""How entrypoints end: the project's typed errors as one clean line, stop signals as one line and the
shell's exit code; unexpected exceptions keep their traceback (so do typed ones with ``HYDRA_FULL_ERROR=1``,
as Hydra users expect)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import TypeVar

import yaml
from hydra.errors import CompactHydraException
from omegaconf import OmegaConf

from ai_trading.errors import AiTradingError, Interrupted
from ai_trading.paths import CONF_DIR
from ai_trading.secrets import mask_text

T = TypeVar("T")

EXIT_ERROR = 2


def error_rule(exc: AiTradingError) -> str:
    """The rule an error broke: its own (data validation: ``bad_range``, ``unknown_symbol``, ...) or its type
    (``ConfigError``, ``InSampleEvaluationError``, ...)."""
    rule = getattr(exc, "rule", None)
    return rule if isinstance(rule, str) else type(exc).__name__


def error_line(exc: AiTradingError) -> str:
    """``error: [rule] message`` on one line (a multi-line message is joined)."""
    text = " ".join(line.strip() for line in mask_text(str(exc)).splitlines() if line.strip())
    rule = error_rule(exc)
    prefix = f"[{rule}]"
    return f"error: {text}" if text.startswith(prefix) else f"error: {prefix} {text}"


class SeedFailed(CompactHydraException):
    """One job of a multirun failed with a typed error: Hydra records the job as failed, runs the sweep's
    other jobs, and at the end prints this one line (no traceback) and exits non-zero."""


def run_reported(job: Callable[[], T], *, multirun: bool = False) -> T:
    """Run an entrypoint's job; a typed error or a stop ends the process with one line on stderr. In a multirun
    a typed error fails only its own job (the line is printed at once and again when the sweep ends); a stop
    signal ends the whole sweep."""
    try:
        return job()
    except Interrupted as exc:
        print(f"interrupted: {exc} (exit {exc.exit_code})", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        print("interrupted: stopped at once by a second Ctrl-C", file=sys.stderr)
        raise SystemExit(128 + int(signal.SIGINT)) from None
    except AiTradingError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        line = error_line(exc)
        print(line, file=sys.stderr)
        if multirun:
            raise SeedFailed(line) from exc
        raise SystemExit(EXIT_ERROR) from None


def config_groups(app_name: str) -> str:
    """The ``--help`` list of the config groups an entrypoint's root config (``conf/<name>.yaml`` of
    ``ai_trading.<name>``) composes, each with its options: what that entrypoint accepts, nothing else."""
    root = yaml.safe_load((CONF_DIR / f"{app_name.rsplit('.', 1)[-1]}.yaml").read_text(encoding="utf-8"))
    groups = []
    for entry in root.get("defaults", []):
        if isinstance(entry, dict):
            key = str(next(iter(entry)))
            if "@" not in key and key != "hydra" and not key.startswith("override"):
                groups.append(key)
    return "\n".join(f"{g}: {', '.join(sorted(p.stem for p in (CONF_DIR / g).glob('*.yaml')))}" for g in groups)


OmegaConf.register_new_resolver("config_groups", config_groups, replace=True)
