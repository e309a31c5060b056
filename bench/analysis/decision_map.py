"""The decision map: for each task and budget, the method chosen on validation, and what the test set says of every
other method against it.

**Chosen on validation, confirmed on test.** The choice is the method with the best mean validation score of the
primary metric (the selected checkpoint's, ``val/<metric>``) among the methods that qualify: enough seeds (the seed
rule, ``bench.analysis.stats``), stored per-example predictions and, with a memory cap, peak memory under it. The test
set is touched only by the confirmatory comparisons: the choice against each other qualifying method, by the
seed-aware test of ``bench.analysis.contrast``. A method without a validation score (it does not train: zeroshot,
fewshot) cannot be the choice; it is compared with it like any other.

**The family.** Every comparison of the map, over every task and budget, is one family: their p-values (of "no
difference" and of "not equivalent") are Holm-adjusted together (``bench.analysis.stats.holm``), at 5% family-wise.
Each comparison then ends as one of (``bench.analysis.contrast``): the other method is ``worse`` (the choice is
better), ``equivalent`` (within the metric's margin: the report's ☆), ``better`` (the test set reverses the
validation choice) or ``undecided`` (with the seeds a decision would take). Methods left out are named with the
reason; when no method qualifies the map says why instead of choosing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from bench import catalog
from bench.analysis.cells import MethodCell, SpecOf, method_cells
from bench.analysis.contrast import BETTER, EQUIVALENT, WORSE, Difference, adjusted
from bench.analysis.pairing import CachedPredictions
from bench.analysis.sequential import sequential_compare
from bench.analysis.stats import NOT_ENOUGH_SEEDS, enough_seeds, holm, min_seeds
from bench.core.record import VAL, metric_key

if TYPE_CHECKING:
    from bench.core.api import TaskSpec
    from bench.core.record import Record
    from bench.core.store import Store

FAMILY = (
    "every comparison of the decision map (the validation choice against each other method, over every task and "
    "budget) is one family, Holm-adjusted at 5% family-wise"
)


@dataclass(frozen=True)
class Decision:
    """The method chosen on validation for one task and budget, and the test set's verdict on every other one."""

    task: str
    budget: int
    best: str | None  # chosen on validation (None: no method qualifies, see ``note``)
    equivalent: tuple[str, ...] = ()  # within the margin of ``best`` on test (two one-sided tests, adjusted)
    worse: tuple[str, ...] = ()  # significantly worse than ``best`` on test (adjusted)
    better: tuple[str, ...] = ()  # significantly better than ``best`` on test: the validation choice is reversed
    undecided: tuple[str, ...] = ()  # neither: more seeds (or items) would be needed
    excluded: dict[str, str] = field(default_factory=dict)  # method -> why it is not part of the decision
    note: str = ""
    seeds: dict[str, int] = field(default_factory=dict)  # method -> seeds with a primary metric
    diffs: dict[str, Difference] = field(default_factory=dict)  # method -> best minus it on test
    validation: dict[str, float] = field(default_factory=dict)  # method -> mean validation score (the choice's basis)
    higher_is_better: bool = True

    @property
    def not_worse(self) -> tuple[str, ...]:
        """Equivalent to the choice, or better than it: the methods a reader may take instead."""
        return (*self.equivalent, *self.better)

    def with_diffs(self, diffs: dict[str, Difference]) -> Decision:
        """This decision with adjusted comparisons, each method filed by its outcome."""
        groups: dict[str, list[str]] = {WORSE: [], EQUIVALENT: [], BETTER: [], "undecided": []}
        for method, d in sorted(diffs.items()):
            outcome = d.outcome(self.higher_is_better)  # for the choice against the method
            verdict = {BETTER: WORSE, WORSE: BETTER}.get(outcome, outcome)  # for the method
            groups[verdict].append(method)
        return replace(
            self,
            diffs=diffs,
            worse=tuple(groups[WORSE]),
            equivalent=tuple(groups[EQUIVALENT]),
            better=tuple(groups[BETTER]),
            undecided=tuple(groups["undecided"]),
        )


def validation_score(cell: MethodCell, spec: TaskSpec) -> float:
    """The mean over seeds of the selected checkpoint's validation score of the primary metric (NaN: none)."""
    key = metric_key(VAL, spec.primary_metric)
    values = [r.metrics[key] for r in cell.records if key in r.metrics and not math.isnan(r.metrics[key])]
    return sum(values) / len(values) if values and len(values) == len(cell.records) else math.nan


def decision(
    store: Store, cells: Mapping[str, MethodCell], spec: TaskSpec, memory_cap_bytes: float | None = None
) -> Decision:
    """The validation choice among the qualifying methods and its unadjusted comparison on test with every other
    one (``decisions`` adjusts a family of them)."""
    any_cell = next(iter(cells.values()))
    task, budget = any_cell.task, any_cell.budget
    excluded: dict[str, str] = {}
    eligible: dict[str, MethodCell] = {}
    seeds = {method: c.primary.n for method, c in cells.items()}
    for method, c in cells.items():
        if memory_cap_bytes is not None and math.isnan(c.peak_mem_bytes):
            excluded[method] = "peak memory not recorded: cannot be checked against the memory cap"
        elif memory_cap_bytes is not None and c.peak_mem_bytes > memory_cap_bytes:
            excluded[method] = f"peak memory {c.peak_mem_bytes / 2**30:.2f} GiB over the cap"
        elif not enough_seeds(method, c.primary.n):
            excluded[method] = f"{NOT_ENOUGH_SEEDS} ({c.primary.n} of {min_seeds(method)})"
        elif not c.has_predictions:
            excluded[method] = "no per-example predictions stored (records too old to pair)"
        else:
            eligible[method] = c
    validation = {m: validation_score(c, spec) for m, c in eligible.items()}
    scored = {m: v for m, v in validation.items() if not math.isnan(v)}
    base = Decision(task, budget, None, excluded=excluded, seeds=seeds, validation=scored)
    base = replace(base, higher_is_better=spec.higher_is_better)
    if not scored:
        if not eligible:
            short = any(NOT_ENOUGH_SEEDS in why for why in excluded.values())
            why = f"{NOT_ENOUGH_SEEDS}: no method can be chosen" if short else "no method can be chosen (see left out)"
        else:
            why = "no qualifying method has a validation score to choose by"
        return replace(base, note=why)
    best = max(scored, key=lambda m: spec.sign * scored[m])
    diffs = {}
    for method, c in eligible.items():
        if method == best:
            continue
        try:
            diffs[method] = sequential_compare(store, eligible[best].records, c.records, spec.primary_metric)
        except ValueError as e:
            excluded[method] = f"cannot be paired with {best}: {e}"
    choice = eligible[best].primary.mean
    ahead = [
        m
        for m, c in cells.items()
        if m in excluded and spec.sign * (c.primary.mean - choice) > 0 and "memory" not in excluded[m]
    ]
    note = f"better test mean but not testable: {', '.join(sorted(ahead))}" if ahead else ""
    return replace(base, best=best, note=note).with_diffs(diffs)


def decisions(
    store: Store,
    cells: Mapping[tuple[str, int], Mapping[str, MethodCell]],
    spec_of: SpecOf = catalog.spec,
    memory_cap_bytes: float | None = None,
    order: Sequence[tuple[str, int]] | None = None,
) -> list[Decision]:
    """One decision per (task, budget) of ``cells`` (in ``order``), their comparisons adjusted as one family."""
    store = CachedPredictions(store)
    found = [decision(store, cells[tb], spec_of(tb[0]), memory_cap_bytes) for tb in (order or list(cells))]
    return adjust(found)


def adjust(found: Sequence[Decision]) -> list[Decision]:
    """The decisions with their comparisons Holm-adjusted as one family (both the difference and the equivalence
    p-values), each method then filed by its adjusted outcome."""
    pairs = [(i, m) for i, d in enumerate(found) for m in sorted(d.diffs)]
    p = holm([found[i].diffs[m].p for i, m in pairs])
    p_eq = holm([found[i].diffs[m].p_equivalent for i, m in pairs])
    diffs: list[dict[str, Difference]] = [{} for _ in found]
    for (i, m), pi, qi in zip(pairs, p, p_eq, strict=True):
        diffs[i][m] = adjusted(found[i].diffs[m], pi, qi)
    return [d.with_diffs(diffs[i]) if d.best is not None else d for i, d in enumerate(found)]


def decision_map(
    store: Store, records: Sequence[Record], spec_of: SpecOf = catalog.spec, memory_cap_bytes: float | None = None
) -> list[Decision]:
    """One decision per (task, budget) of the ok records, adjusted as one family."""
    return decisions(store, method_cells(records, spec_of), spec_of, memory_cap_bytes)
