"""Run names and descriptions that say what differs from the default config.

``ai_trading__ppo__seed3__symbols=NVDA,ORCL`` and ``ai_trading__ppo__seed3`` are different experiments, so
the overrides of the groups that change results (data, features, simulator, cost model, env, algorithm,
baselines) show in the name, shortened to the last key; every override, verbatim, goes to the description.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

# Groups whose overrides change what a run measures; the others (seed, threads, tracking, hydra, ...) do not
# or are named elsewhere (the seed ends the name, ``experiment=`` sets the experiment name).
NAMED_GROUPS = ("data", "features", "simulator", "cost_model", "env", "algo", "baselines", "strategy@baselines")
_UNNAMED_KEYS = ("algo.progress_bar",)
_SUFFIX_MAX = 80


def _key_value(override: str) -> tuple[str, str]:
    key, _, value = override.lstrip("+~").partition("=")
    return key.strip(), value.strip()


def _named(key: str) -> bool:
    group = key.split(".", 1)[0].split("/", 1)[0]
    return group in NAMED_GROUPS and key not in _UNNAMED_KEYS and key != "algo"


def overrides_suffix(overrides: Sequence[str]) -> str:
    """The overrides that change results, short: ``data.symbols=[NVDA,ORCL]`` reads ``symbols=NVDA,ORCL``,
    ``simulator=stressed`` stays; joined by ``_``; over 80 characters it is cut and ends in a hash of the
    whole, so two different long suffixes stay different."""
    parts = []
    for override in overrides:
        key, value = _key_value(override)
        if not _named(key):
            continue
        short = key.rsplit(".", 1)[-1]
        parts.append(f"{short}={value.replace('[', '').replace(']', '').replace(' ', '').replace(chr(39), '')}")
    suffix = "_".join(parts)
    if len(suffix) > _SUFFIX_MAX:
        digest = hashlib.sha256(suffix.encode()).hexdigest()[:6]
        suffix = f"{suffix[:_SUFFIX_MAX - 7]}~{digest}"
    return suffix


def run_name(experiment: str, algo: str, role: str, overrides: Sequence[str]) -> str:
    """``{experiment}__{algo}__{role}[__{overrides}]``, ``role`` being ``seed3`` for a job, ``sweep`` for the
    parent run of a multirun; the seed comes before the overrides so that it still shows where the UI cuts a
    long name."""
    suffix = overrides_suffix(overrides)
    return "__".join(p for p in (experiment, algo, role, suffix) if p)


def run_note(overrides: Sequence[str], *, sweep_id: str | None = None) -> str:
    """A run's description (markdown): every override of the default config, and the sweep it belongs to."""
    lines = ["Overrides of the default config:" if overrides else "The default config (no overrides)."]
    lines += [f"- `{o}`" for o in overrides]
    if sweep_id:
        lines += ["", f"Sweep: `{sweep_id}`"]
    return "\n".join(lines)
