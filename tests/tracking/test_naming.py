"""Run names and descriptions that say what differs from the default config."""

from __future__ import annotations

from ai_trading.tracking.naming import overrides_suffix, run_name, run_note


def test_run_name_shows_the_seed_then_the_result_changing_overrides() -> None:
    overrides = ["seed=3", "data.symbols=[NVDA,ORCL]", "torch_threads=1", "simulator=stressed",
                 "algo.progress_bar=false", "hydra/launcher=local_parallel"]
    expected = "ai_trading__ppo__seed3__symbols=NVDA,ORCL_simulator=stressed"
    assert run_name("ai_trading", "ppo", "seed3", overrides) == expected
    assert run_name("ai_trading", "ppo", "seed3", ["seed=3"]) == "ai_trading__ppo__seed3"


def test_run_name_of_data_override_differs_from_the_default() -> None:
    assert run_name("x", "ppo", "seed0", ["data.symbols=[NVDA,ORCL]"]) != run_name("x", "ppo", "seed0", [])


def test_overrides_suffix_long_is_cut_with_a_hash_that_keeps_different_suffixes_apart() -> None:
    a = [f"env.reward.k{i}=0.{i}" for i in range(30)]
    b = [*a[:-1], "env.reward.k29=0.99"]
    assert len(overrides_suffix(a)) == 80 and len(overrides_suffix(b)) == 80
    assert overrides_suffix(a) != overrides_suffix(b)


def test_run_note_lists_every_override_and_the_sweep() -> None:
    note = run_note(["seed=1", "torch_threads=1"], sweep_id="ai_trading__2026")
    assert "- `seed=1`" in note and "- `torch_threads=1`" in note and "`ai_trading__2026`" in note
    assert "no overrides" in run_note([])
