"""The claims a suite's records support, and whether another run of the suite supports them too.

A claim is one "A beats B" of the decision map (``bench.analysis.decision_map``): at a task and budget, the best method
against a method the paired bootstrap finds significantly worse, with enough seeds for both. Nothing else is a
claim: "not significantly worse" is the absence of one. ``check`` holds each claim of one run against another run's
records (a rerun from scratch, other seeds, another machine): the claim *holds* when the other run's paired interval
for the same two methods excludes zero in the same direction, is *not significant* when it reaches zero, and is
*reversed* when it excludes zero the other way; *untested* when the other run lacks the cells or their seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench import catalog
from bench.analysis.cells import method_cells
from bench.analysis.decision_map import Decision
from bench.analysis.pairing import CachedPredictions, compare_records
from bench.analysis.stats import BEATS, LOSES, NO_DIFFERENCE, NOT_ENOUGH_SEEDS, enough_seeds

if TYPE_CHECKING:
    from bench.analysis.stats import PairedDiff
    from bench.core.record import Record
    from bench.core.store import Store

HOLDS, NOT_SIGNIFICANT, REVERSED, UNTESTED = "holds", "not significant", "reversed", "untested"


@dataclass(frozen=True)
class Claim:
    task: str
    budget: int
    better: str
    worse: str
    diff: PairedDiff  # better minus worse, on the task's primary metric

    def describe(self) -> str:
        budget = "all" if self.budget == 0 else self.budget
        return f"{self.task} @ {budget}: {self.better} beats {self.worse} by {self.diff.metric} {self.diff.describe()}"


@dataclass(frozen=True)
class Check:
    claim: Claim
    outcome: str  # HOLDS, NOT_SIGNIFICANT, REVERSED or UNTESTED
    other: PairedDiff | None  # the other run's better-minus-worse
    why: str = ""

    def describe(self) -> str:
        there = self.other.describe() if self.other else self.why
        return f"{self.outcome:15s} {self.claim.describe()}; other run: {there}"


def claims(decisions: Sequence[Decision]) -> list[Claim]:
    return [
        Claim(d.task, d.budget, d.best, worse, d.diffs[worse])
        for d in decisions
        if d.best is not None
        for worse in d.worse
        if worse in d.diffs
    ]


def check(claims_: Sequence[Claim], store: Store, records: Sequence[Record]) -> list[Check]:
    """Each claim against the other run's records (``store`` holds their predictions)."""
    store = CachedPredictions(store)
    cells = method_cells([r for r in records if r.ok], catalog.spec)
    out = []
    for claim in claims_:
        here = cells.get((claim.task, claim.budget), {})
        missing = [m for m in (claim.better, claim.worse) if m not in here]
        if missing:
            out.append(Check(claim, UNTESTED, None, f"no records of {', '.join(missing)}"))
            continue
        a, b = here[claim.better], here[claim.worse]
        short = [m for m, c in ((claim.better, a), (claim.worse, b)) if not enough_seeds(m, c.primary.n)]
        if short:
            out.append(Check(claim, UNTESTED, None, f"not enough seeds of {', '.join(short)}"))
            continue
        try:
            d = compare_records(store, a.records, b.records, catalog.spec(claim.task).primary_metric)
        except ValueError as e:
            out.append(Check(claim, UNTESTED, None, str(e)))
            continue
        v = d.verdict(claim.better, claim.worse, catalog.spec(claim.task).higher_is_better)
        if v == NOT_ENOUGH_SEEDS:
            out.append(Check(claim, UNTESTED, d, f"{NOT_ENOUGH_SEEDS} ({d.seeds_text()})"))
            continue
        outcome = {BEATS: HOLDS, LOSES: REVERSED, NO_DIFFERENCE: NOT_SIGNIFICANT}[v]
        out.append(Check(claim, outcome, d))
    return out
