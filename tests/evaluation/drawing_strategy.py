"""A strategy whose fit draws from numpy's global generator (importable by worker processes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ai_trading.evaluation.strategies import StrategyInputs


@dataclass(frozen=True)
class DrawingFitted:
    draw: float

    @property
    def name(self) -> str:
        return "drawing"

    def targets(self, inputs: StrategyInputs, start: int, stop: int) -> np.ndarray:
        return np.zeros((stop - start, inputs.market.open.shape[1]))

    def describe(self) -> dict[str, float]:
        return {"draw": self.draw}


@dataclass(frozen=True)
class DrawingStrategy:
    @property
    def name(self) -> str:
        return "drawing"

    def fit(self, inputs: StrategyInputs, start: int, stop: int) -> DrawingFitted:
        return DrawingFitted(float(np.random.random()))  # noqa: NPY002  (the global generator on purpose)
