"""Provenance of a run: git commit, dirty flag and diff of the checkout the code runs from."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class GitState:
    """The commit the code runs from; ``commit`` is ``"unavailable"`` outside a git checkout."""

    commit: str
    dirty: bool
    diff: str


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=_REPO, check=True, capture_output=True, text=True).stdout


def git_state() -> GitState:
    """Read commit, dirty flag and ``git diff HEAD`` of the package's checkout."""
    try:
        commit = _git("rev-parse", "HEAD").strip()
        status = _git("status", "--porcelain", "--untracked-files=no")
        diff = _git("diff", "HEAD") if status.strip() else ""
    except (OSError, subprocess.CalledProcessError) as exc:
        log.warning("git provenance unavailable repo=%s error=%s", _REPO, exc)
        return GitState(commit="unavailable", dirty=True, diff="")
    return GitState(commit=commit, dirty=bool(status.strip()), diff=diff)
