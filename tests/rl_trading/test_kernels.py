"""The compiled one-step kernel the envs share equals the numpy reference ``vectorized.step`` to the bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_trading.execution import ExecParams, MarketArrays
from ai_trading.execution.vectorized import step, step_compiled
from tests.execution.conftest import FULL_COST, random_walk_frame


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 6), weights=st.booleans())
def test_step_compiled_random_states_equals_numpy_step_bit_for_bit(seed: int, batch: int, weights: bool) -> None:
    frame = random_walk_frame(40, symbols=("AAA", "BBB", "CCC"), volume=50.0)
    config = FULL_COST
    market = MarketArrays.from_bars(frame, config)
    params = ExecParams.from_config(config, market)
    rng = np.random.default_rng(seed)
    positions = rng.uniform(-40, 40, (batch, 3))
    cash = rng.uniform(1e3, 1e4, batch)
    targets = rng.uniform(-0.9, 0.9, (batch, 3)) if weights else rng.uniform(-60, 60, (batch, 3))
    t = rng.integers(0, 39, batch)
    ref = step(market, params, positions, cash, targets, t, np.random.default_rng(seed + 1),
               targets_are_weights=weights)
    out = step_compiled(market, params, positions, cash, targets, t, np.random.default_rng(seed + 1),
                        targets_are_weights=weights)
    for name in ("qty", "price", "ref", "spread", "impact", "fee", "notional", "positions", "cash", "equity",
                 "exec_index"):
        np.testing.assert_array_equal(getattr(out, name), getattr(ref, name), err_msg=name)
    assert (ref.qty != 0).any()
