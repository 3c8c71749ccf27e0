"""State files replaced whole: the new text or the old file, never part of one, and no scratch file left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ai_trading.durable_files import replace_durably


def test_a_state_file_is_replaced_whole_and_a_failed_write_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "cost_state.json"
    replace_durably(target, '{"v": 1}')
    replace_durably(target, '{"v": 2}')
    assert json.loads(target.read_text(encoding="utf-8")) == {"v": 2}
    with pytest.raises(UnicodeEncodeError):
        replace_durably(target, '{"v": "\ud800"}')  # fails half-way through the write
    assert json.loads(target.read_text(encoding="utf-8")) == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cost_state.json"]  # no scratch file left
