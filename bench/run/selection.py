"""What "better" means when a run or a probe selects on validation, and how a grid of strengths widens at its edge:
shared by the training loop (``bench.run.loop``), the linear probe (``bench.run.linear_probe``, with or without
k-fold selection) and nested tuning (``bench.run.tuning``). No torch: plain numbers."""

from __future__ import annotations

import math


def selection_key(score: float, loss: float, tie_break: str) -> tuple[float, float]:
    """What "better" means for validation passes and tuning candidates: a higher signed score (NaN: worst), then,
    under ``tie_break=loss``, a lower validation loss; under ``first`` a tie is no improvement (the earliest stays)."""
    score = -math.inf if math.isnan(score) else score
    if tie_break != "loss" or math.isnan(loss):
        return (score, -math.inf)
    return (score, -loss)


def widen(tried: list[float], chosen: float, widened: dict[int, int], limit: int) -> float | None:
    """The next strength outward when ``chosen`` is the lowest (side -1) or highest (+1) of the ``tried`` ones and
    that side has widened fewer than ``limit`` times: one step of the ratio of the two tried values at that edge
    (none below a zero). Counts the widening in ``widened``; None when nothing widens."""
    if len(tried) < 2:
        return None
    ordered = sorted(tried)
    for side, edge, ratio in ((-1, ordered[0], ordered[1] / ordered[0] if ordered[0] > 0 else 0),
                              (1, ordered[-1], ordered[-1] / ordered[-2])):  # fmt: skip
        if chosen == edge and widened[side] < limit and ratio > 1:
            widened[side] += 1
            return float(f"{(edge / ratio if side < 0 else edge * ratio):.6g}")
    return None
