"""Where an adaptive suite spends its next seeds: the cells of the comparisons the decision map leaves open.

After each look, the decision map (chosen on validation, confirmed on test, adjusted as one family, each comparison
tested over the looks so far: ``bench.analysis.sequential``) is drawn from every record so far. A comparison that is
``undecided`` and that more seeds could decide (``Difference.more_seeds``: the items' variance alone does not keep it
open) is *open*; both methods of every open comparison that the suite's ``max_seeds`` can still reach (the seeds
it needs are no more than the method may add) get seeds up to the next look's count (``[adaptive]``: ``batch``
more, never past ``max_seeds``); a method that does not train keeps its draws. Decided comparisons, and
those only a larger test set could decide, get nothing: the suite's minutes go where verdicts are still open. The
cells come ordered by how close their comparison is to a decision (fewest estimated seeds first), so a grid short of
time runs the most promising ones, and each carries an ``allocation.why`` naming the comparisons that asked for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench.analysis.decision_map import decision_map
from bench.analysis.sequential import design

if TYPE_CHECKING:
    from bench.core.api import Cell
    from bench.core.record import Record
    from bench.core.store import Store
    from bench.suite import Suite


def open_comparisons(store: Store, records: Sequence[Record]) -> list[tuple[str, int, str, str, int, str]]:
    """(task, budget, choice, other method, estimated more seeds, the comparison in words) of each open comparison,
    closest to a decision first."""
    out = []
    for d in decision_map(store, [r for r in records if r.ok]):
        if d.best is None:
            continue
        for method in d.undecided:
            diff = d.diffs[method]
            more = diff.more_seeds()
            if more is None:
                continue
            text = f"{d.best} vs {method} on {d.task} @ {d.budget} undecided: {diff.describe()}"
            out.append((d.task, d.budget, d.best, method, more, text))
    return sorted(out, key=lambda o: (o[4], o[0], o[1], o[3]))


def next_look(suite: Suite, store: Store, records: Sequence[Record], look: int) -> list[Cell]:
    """The cells of look ``look`` (2, 3, ...): more seeds for both sides of every open comparison whose methods'
    design reaches that look, ordered by priority (see the module docstring). Empty: nothing is open."""
    ok = [r for r in records if r.ok]
    by_cell: dict[tuple[str, str, int], list[Record]] = {}
    for r in ok:
        by_cell.setdefault((r.task, r.method, r.budget), []).append(r)
    wanted: dict[tuple[str, str, int], list[str]] = {}
    for task, budget, best, method, more, text in open_comparisons(store, ok):
        for m in (best, method):
            have = by_cell.get((task, m, budget), [])
            plan = design(have)
            if plan is None or len(plan[0]) < look or more > plan[0][-1] - len(have):
                continue  # this method cannot grow, or not by as many seeds as the comparison needs
            why = f"{text}; about {more} more seeds each estimated to decide it"
            wanted.setdefault((task, m, budget), []).append(why)
    cells: list[Cell] = []
    for (task, method, budget), whys in wanted.items():
        have = by_cell[(task, method, budget)]
        target = design(have)[0][look - 1]
        count = target - len(have)
        if count <= 0:
            continue
        seeds = suite.next_seeds(task, method, budget, {r.seed for r in have}, count)
        why = f"look {look}: " + " | ".join(whys)
        cells += suite.more_seeds(task, method, budget, seeds, why, look)
    return cells
