"""Retry delays: doubling up to a cap, jittered so that many retriers do not act in step."""

from __future__ import annotations

import random


def backoff(attempts: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """The wait before the next try after `attempts` failures in a row (1 = the first):
    base, 2x base, 4x base ... up to cap, then a random part of that in [50%, 100%]."""
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    draw = rng.random() if rng is not None else random.random()
    return ceiling * (0.5 + draw / 2)
