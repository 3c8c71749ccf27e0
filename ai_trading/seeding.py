"""Seeding in one place: Python's, numpy's and torch's global generators for one job."""

from __future__ import annotations

import logging
import random

import numpy as np

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed every global generator a job may touch and return a fresh numpy Generator for it."""
    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - third-party code (stable-baselines3) still reads the legacy global RNG
    torch.manual_seed(seed)
    log.info("seeded everything seed=%d", seed)
    return np.random.default_rng(seed)
