"""The decision map: for each task and budget, the best method and the methods the data cannot tell apart from it.

The best is chosen by mean primary test metric among methods with enough seeds (``bench.analysis.stats.min_seeds``) and
stored per-example predictions, under an optional memory cap; every other such method is then compared with it by
the paired bootstrap (``bench.analysis.stats.compare_records``) and filed as not significantly worse or worse. Methods
left out are named with the reason; when no method qualifies the map says "not enough seeds" instead of choosing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench import catalog
from bench.analysis.cells import MethodCell, SpecOf, method_cells
from bench.analysis.pairing import CachedPredictions, compare_records
from bench.analysis.stats import BEATS, NOT_ENOUGH_SEEDS, PairedDiff, enough_seeds, min_seeds

if TYPE_CHECKING:
    from bench.core.api import TaskSpec
    from bench.core.record import Record
    from bench.core.store import Store


@dataclass(frozen=True)
class Decision:
    """The best method for one task and budget, and which methods the data cannot tell apart from it."""

    task: str
    budget: int
    best: str | None  # None: no method has enough seeds (see ``note``)
    not_worse: tuple[str, ...]  # not significantly worse than ``best`` (paired test, enough seeds)
    worse: tuple[str, ...]  # significantly worse than ``best``
    excluded: dict[str, str]  # method -> why it is not part of the decision (seeds, predictions, memory cap)
    note: str = ""
    seeds: dict[str, int] = field(default_factory=dict)  # method -> seeds with a primary metric
    diffs: dict[str, PairedDiff] = field(default_factory=dict)  # method -> best minus it (the paired test)


def decision(
    store: Store, cells: Mapping[str, MethodCell], spec: TaskSpec, memory_cap_bytes: float | None = None
) -> Decision:
    """Best by mean primary metric among methods with enough seeds and stored predictions (and under the memory
    cap), then a paired test of every other such method against it."""
    any_cell = next(iter(cells.values()))
    task, budget = any_cell.task, any_cell.budget
    sign = spec.sign
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
    if not eligible:
        short = any(NOT_ENOUGH_SEEDS in why for why in excluded.values())
        note = f"{NOT_ENOUGH_SEEDS}: no method can be chosen" if short else "no method can be chosen (see left out)"
        return Decision(task, budget, None, (), (), excluded, note, seeds)
    best = max(eligible, key=lambda m: sign * eligible[m].primary.mean)
    not_worse, worse, diffs = [], [], {}
    for method, c in eligible.items():
        if method == best:
            continue
        try:
            d = compare_records(store, eligible[best].records, c.records, spec.primary_metric)
        except ValueError as e:
            excluded[method] = f"cannot be paired with {best}: {e}"
            continue
        diffs[method] = d
        v = d.verdict(best, method, spec.higher_is_better)
        if v == BEATS:
            worse.append(method)
        elif v == NOT_ENOUGH_SEEDS:
            excluded[method] = f"{NOT_ENOUGH_SEEDS} with {best} ({d.seeds_text()})"
        else:
            not_worse.append(method)
    ahead = [
        m
        for m, c in cells.items()
        if m in excluded and sign * (c.primary.mean - eligible[best].primary.mean) > 0 and "memory" not in excluded[m]
    ]
    note = f"better mean but not testable: {', '.join(sorted(ahead))}" if ahead else ""
    return Decision(task, budget, best, tuple(sorted(not_worse)), tuple(sorted(worse)), excluded, note, seeds, diffs)


def decision_map(
    store: Store, records: Sequence[Record], spec_of: SpecOf = catalog.spec, memory_cap_bytes: float | None = None
) -> list[Decision]:
    """One decision per (task, budget) of the ok records."""
    store = CachedPredictions(store)
    return [
        decision(store, cells, spec_of(task), memory_cap_bytes)
        for (task, _budget), cells in method_cells(records, spec_of).items()
    ]
