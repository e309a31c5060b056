"""A linear probe on cached features, fitted the way linear probes are usually fitted: full-batch L-BFGS on the
(convex) L2-regularised logistic or least-squares loss, over a small grid of L2 strengths selected on validation
(the regularisation strength is a linear probe's one hyperparameter that matters; CLIP's and VTAB's linear
evaluations sweep it the same way).

Written against torch rather than calling scikit-learn's ``LogisticRegression`` because the head must stay the
cell's ``nn.Linear`` (evaluated, counted and recorded like any other head, on the cell's device, in the task's loss:
cross-entropy or squared error), and because the grid is fitted as a regularisation path: each strength starts from
the previous solution (strongest first), so the whole grid costs little more than one fit. The objective is the
mean loss plus ``l2 / 2 * ||W||^2`` (the bias is not penalised), i.e. scikit-learn's ``C = 1 / (l2 * n)``.

Replaces, for ``frozen``, the thousands of mini-batch AdamW steps on a few hundred cached vectors whose per-step
overhead made the head cost more than the backbone's pass (a 1024-example pneumonia cell: 6.1 s of head training
against 3.4 s of features).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bench.run.selection import selection_key, widen


@dataclass
class ProbeFit:
    best: int  # index into the grid of the selected strength (-1: one the widening added beyond the grid)
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per strength, in the order fitted
    selected: dict[str, Any] = field(default_factory=dict)  # the history entry of the selected strength
    iterations: int = 0  # L-BFGS iterations over the whole path
    widened: dict[str, int] = field(default_factory=dict)  # strengths added beyond the grid's weakest / strongest


def fit_linear_probe(
    head: nn.Linear,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    l2_grid: tuple[float, ...],
    validate: Callable[[], tuple[float, dict[str, float]]],
    max_iter: int = 100,
    tie_break: str = "first",
    extend: int = 0,
) -> ProbeFit:
    """Fit ``head`` on features ``x`` / targets ``y`` for every strength of ``l2_grid`` (fitted strongest first,
    each warm-started from the last) and leave it at the one whose ``validate()`` score (higher is better; it also
    returns the metrics to record) is best. A tie goes to the lower validation loss (``val/loss`` among the
    metrics) under ``tie_break=loss``, else to the stronger regularisation: on a small validation split a strength
    strong enough to predict one class can tie on AUROC and wins the "first" rule. ``extend``: while the best
    strength is the grid's strongest or weakest, fit the next one outward (one grid step), at most this many times
    per side. Raises FloatingPointError if the loss stops being finite."""
    if not l2_grid:
        raise ValueError("l2_grid is empty; give at least one L2 strength")
    order = sorted(range(len(l2_grid)), key=lambda i: -l2_grid[i])
    fit = ProbeFit(best=order[0])
    best_key, best_state = None, None
    params = [p for p in head.parameters() if p.requires_grad]
    strengths = [float(l2_grid[i]) for i in order]
    tried, widened = [], {-1: 0, 1: 0}
    while strengths:
        l2 = strengths.pop(0)
        tried.append(l2)
        head.train()
        loss, steps, calls = _fit_one(head, params, x, y, loss_fn, l2, max_iter)
        fit.iterations += steps
        head.eval()
        score, metrics = validate()
        key = selection_key(score, metrics.get("val/loss", math.nan), tie_break)  # a NaN score ranks last
        # "step": L-BFGS iterations so far, so the record's "best at step X of N" reads as for the mini-batch loop
        entry = {"step": fit.iterations, "l2": l2, "train_loss": loss, "lbfgs_iterations": steps}
        fit.history.append({**entry, "loss_evaluations": calls, **metrics})
        if best_key is None or key > best_key:
            best_key, fit.selected = key, fit.history[-1]
            j = len(tried) - 1
            fit.best = order[j] if j < len(order) else -1  # -1: a strength the widening added
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
        if not strengths and extend:
            nxt = widen(tried, fit.selected["l2"], widened, extend)
            if nxt is not None:
                strengths.append(nxt)
    head.load_state_dict(best_state)
    fit.widened = {"weaker": widened[-1], "stronger": widened[1]}
    return fit


def _fit_one(head: nn.Linear, params: list, x, y, loss_fn, l2: float, max_iter: int) -> tuple[float, int, int]:
    """One strength, from the head's current weights: (final loss, L-BFGS iterations, loss evaluations)."""
    optimizer = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    calls = 0

    def closure() -> torch.Tensor:
        nonlocal calls
        calls += 1
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(head(x), y) + 0.5 * l2 * head.weight.pow(2).sum()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"linear probe diverged at l2={l2:g}: loss is {float(loss.detach())}")
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():  # the objective where L-BFGS stopped (step() returns the first evaluation's)
        loss = float(loss_fn(head(x), y) + 0.5 * l2 * head.weight.pow(2).sum())
    return loss, int(optimizer.state[params[0]].get("n_iter", 0)), calls
