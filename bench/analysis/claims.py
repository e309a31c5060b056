"""The claims a suite's records support, and whether another run of the suite supports them too.

A claim is a decided comparison of the decision map (``bench.analysis.decision_map``), after the map's family-wise
adjustment: at a task and budget, "A beats B" (the validation choice against a method the test set finds worse, or a
method the test set finds better than the choice) or "A is equivalent to B" (within the metric's margin). Nothing
else is a claim: an undecided comparison is the absence of one. ``check`` holds each claim of one run against another
run's records (a rerun from scratch, other seeds, another machine), the claims checked being one family, Holm-adjusted
together: a "beats" claim *holds* when the other run finds the same difference, is *not significant* when it does
not, and is *reversed* when it finds the opposite; an equivalence claim holds when the other run finds equivalence
too and is *not significant* otherwise (*reversed* when it finds a difference); *untested* when the other run lacks
the cells or their seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from bench import catalog
from bench.analysis.cells import method_cells
from bench.analysis.contrast import EQUIVALENT, UNDECIDED, Difference, adjusted
from bench.analysis.decision_map import Decision
from bench.analysis.pairing import CachedPredictions
from bench.analysis.sequential import sequential_compare
from bench.analysis.stats import enough_seeds, holm

if TYPE_CHECKING:
    from bench.core.record import Record
    from bench.core.store import Store

HOLDS, NOT_SIGNIFICANT, REVERSED, UNTESTED = "holds", "not significant", "reversed", "untested"
BEATS = "beats"


@dataclass(frozen=True)
class Claim:
    task: str
    budget: int
    better: str  # for an equivalence claim: the validation choice
    worse: str  # for an equivalence claim: the method equivalent to it
    diff: Difference  # better minus worse, on the task's primary metric (adjusted in its family)
    kind: str = BEATS  # BEATS or EQUIVALENT

    def describe(self) -> str:
        budget = "all" if self.budget == 0 else self.budget
        verb = "beats" if self.kind == BEATS else "is equivalent to"
        within = f" (margin {self.diff.margin:g})" if self.kind == EQUIVALENT else ""
        what = f"{self.better} {verb} {self.worse}{within}"
        return f"{self.task} @ {budget}: {what} by {self.diff.metric} {self.diff.describe()}"


@dataclass(frozen=True)
class Check:
    claim: Claim
    outcome: str  # HOLDS, NOT_SIGNIFICANT, REVERSED or UNTESTED
    other: Difference | None  # the other run's better-minus-worse (adjusted in the family of checks)
    why: str = ""

    def describe(self) -> str:
        there = self.other.describe() if self.other else self.why
        return f"{self.outcome:15s} {self.claim.describe()}; other run: {there}"


def flipped(d: Difference) -> Difference:
    """The same comparison the other way round (B minus A)."""
    return replace(d, diff=-d.diff, low=-d.high, high=-d.low)


def claims(decisions: Sequence[Decision]) -> list[Claim]:
    """The decided comparisons of (adjusted) decisions, as claims."""
    out = []
    for d in decisions:
        if d.best is None:
            continue
        out += [Claim(d.task, d.budget, d.best, m, d.diffs[m]) for m in d.worse]
        out += [Claim(d.task, d.budget, m, d.best, flipped(d.diffs[m])) for m in d.better]
        out += [Claim(d.task, d.budget, d.best, m, d.diffs[m], EQUIVALENT) for m in d.equivalent]
    return out


def check(claims_: Sequence[Claim], store: Store, records: Sequence[Record]) -> list[Check]:
    """Each claim against the other run's records (``store`` holds their predictions); the claims checked are one
    family, Holm-adjusted together."""
    store = CachedPredictions(store)
    cells = method_cells([r for r in records if r.ok], catalog.spec)
    found: list[tuple[Claim, Difference | None, str]] = []
    for claim in claims_:
        here = cells.get((claim.task, claim.budget), {})
        missing = [m for m in (claim.better, claim.worse) if m not in here]
        if missing:
            found.append((claim, None, f"no records of {', '.join(missing)}"))
            continue
        a, b = here[claim.better], here[claim.worse]
        short = [m for m, c in ((claim.better, a), (claim.worse, b)) if not enough_seeds(m, c.primary.n)]
        if short:
            found.append((claim, None, f"not enough seeds of {', '.join(short)}"))
            continue
        try:
            d = sequential_compare(store, a.records, b.records, catalog.spec(claim.task).primary_metric)
        except ValueError as e:
            found.append((claim, None, str(e)))
            continue
        found.append((claim, d, ""))
    tested = [(c, d) for c, d, _ in found if d is not None]
    p = holm([d.p_equivalent if c.kind == EQUIVALENT else d.p for c, d in tested])
    adjusted_d = {
        id(c): adjusted(d, pi if c.kind != EQUIVALENT else d.p, pi if c.kind == EQUIVALENT else d.p_equivalent)
        for (c, d), pi in zip(tested, p, strict=True)
    }
    out = []
    for claim, d, why in found:
        if d is None:
            out.append(Check(claim, UNTESTED, None, why))
            continue
        d = adjusted_d[id(claim)]
        higher = catalog.spec(claim.task).higher_is_better
        outcome = d.outcome(higher)
        if claim.kind == EQUIVALENT:
            verdict = HOLDS if outcome == EQUIVALENT else NOT_SIGNIFICANT if outcome == UNDECIDED else REVERSED
        else:
            verdict = {"better": HOLDS, "worse": REVERSED}.get(outcome, NOT_SIGNIFICANT)
        out.append(Check(claim, verdict, d))
    return out


SAME, EQUIVALENT_CHOICES, COMPATIBLE, CONFLICT, NO_CHOICE = (
    "same choice",
    "equivalent choices",
    "compatible",
    "conflict",
    "no choice",
)
AGREE = (SAME, EQUIVALENT_CHOICES)


@dataclass(frozen=True)
class Agreement:
    """Two independent replicates' verdicts at one task and budget. The verdict of a replicate is its validation
    choice and the methods its test set does not find worse (equivalent, better or undecided: its contenders).
    *same choice*: both choose the same method; *equivalent choices*: they choose differently but one replicate
    finds the two choices equivalent within the margin; *compatible*: neither finds the other's choice worse, but
    neither settles the pair (undecided at this compute); *conflict*: one replicate finds the other's choice worse."""

    task: str
    budget: int
    outcome: str
    a: Decision | None
    b: Decision | None

    @property
    def agrees(self) -> bool:
        return self.outcome in AGREE

    def describe(self) -> str:
        def side(d: Decision | None) -> str:
            if d is None or d.best is None:
                return "no choice" + (f" ({d.note})" if d is not None and d.note else "")
            parts = [f"chooses {d.best}"]
            if d.equivalent:
                parts.append(f"equivalent: {', '.join(d.equivalent)}")
            if d.better:
                parts.append(f"better on test: {', '.join(d.better)}")
            if d.undecided:
                parts.append(f"undecided: {', '.join(d.undecided)}")
            return "; ".join(parts)

        return f"{self.task} @ {self.budget}: {self.outcome:18s} this run {side(self.a)} | other {side(self.b)}"


def agreement(decisions_a: Sequence[Decision], decisions_b: Sequence[Decision]) -> list[Agreement]:
    """Per (task, budget) of either run, how the two replicates' verdicts agree (see ``Agreement``)."""
    by_a = {(d.task, d.budget): d for d in decisions_a}
    by_b = {(d.task, d.budget): d for d in decisions_b}
    out = []
    for tb in sorted(set(by_a) | set(by_b)):
        a, b = by_a.get(tb), by_b.get(tb)
        if a is None or b is None or a.best is None or b.best is None:
            outcome = NO_CHOICE
        elif a.best == b.best:
            outcome = SAME
        elif b.best in a.worse or a.best in b.worse:
            outcome = CONFLICT
        elif b.best in a.equivalent or a.best in b.equivalent:
            outcome = EQUIVALENT_CHOICES
        else:
            outcome = COMPATIBLE
        out.append(Agreement(tb[0], tb[1], outcome, a, b))
    return out
