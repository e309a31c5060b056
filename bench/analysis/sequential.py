"""Tests that stay valid when seeds are added where a comparison is still open (a suite's ``[adaptive]`` table).

An adaptive suite runs every training method at its block's seeds (look 1), then, where the decision map leaves a
comparison undecided, adds seeds in batches (looks 2, 3, ...; ``bench.analysis.allocation``) up to a fixed maximum.
Testing the last look at 5% as if it had been planned would inflate the error rate: a comparison gets several chances
to come out significant. The fix used here is the simplest one that holds whatever the data decided about going on:
a **Bonferroni split of alpha over the planned looks**. Look j may spend ``alpha * w_j`` (the suite's spending
weights, which sum to 1; ``bench.suite.Adaptive.spending``), so the comparison's p-value is ``min_j p_j / w_j`` over
the looks it reached. The probability that any look rejects a true null is at most ``sum_j alpha * w_j = alpha``
(a union bound: no assumption about how the looks' statistics depend on each other, or on why seeds were added).
The same holds for the equivalence test's p-value. The price against group-sequential boundaries (O'Brien-Fleming,
Pocock), which use the looks' correlation, is some power; the gain is that they need no assumption about it (the
seed-aware test's degrees of freedom change from look to look, which the classical boundaries do not cover).

A look's records are those added at or before it (each record's ``allocation.look``). A comparison between a method
that grows and one that does not (zeroshot's phrasings, fewshot's draws: one look) uses the grower's looks. Records
without an allocation (suites without ``[adaptive]``) are compared once, as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from bench.analysis.contrast import N_RESAMPLES, Difference
from bench.analysis.pairing import compare_records

if TYPE_CHECKING:
    from bench.core.record import Record
    from bench.core.store import Store


def design(records: Sequence[Record]) -> tuple[list[int], list[float]] | None:
    """(seed counts of the looks, spending weights) of a method's records, or None without an adaptive design."""
    found = [r.allocation for r in records if r.allocation]
    if not found or len(found) != len(records):
        return None
    first = found[0]
    return list(first.get("looks", [])), list(first.get("spending", []))


def look_of(record: Record) -> int:
    return int((record.allocation or {}).get("look", 1))


def sequential_compare(
    store: Store, records_a: Sequence[Record], records_b: Sequence[Record], metric: str,
    n_resamples: int = N_RESAMPLES,
) -> Difference:  # fmt: skip
    """The comparison of A and B over all their records, its p-values (of "no difference", of "not equivalent")
    replaced by the Bonferroni-over-looks ones (see the module docstring); ``looks`` says how many were tested."""
    last = compare_records(store, records_a, records_b, metric, n_resamples=n_resamples)
    plan_a, plan_b = design(records_a), design(records_b)
    plans = [p for p in (plan_a, plan_b) if p is not None and len(p[0]) > 1]
    if not plans:
        return last
    _, spending = max(plans, key=lambda p: len(p[0]))
    reached = max(look_of(r) for r in [*records_a, *records_b])
    p_values, p_eq, tested, seen = [], [], 0, set()
    for j in range(1, min(reached, len(spending)) + 1):
        a = [r for r in records_a if look_of(r) <= j]
        b = [r for r in records_b if look_of(r) <= j]
        which = (tuple(sorted(r.key for r in a)), tuple(sorted(r.key for r in b)))
        if which in seen:  # neither side grew at this look: it adds no test
            continue
        seen.add(which)
        try:
            d = last if j == reached else compare_records(store, a, b, metric, n_resamples=n_resamples)
        except ValueError:  # a look too small to test (too few seeds paired): it spends nothing
            continue
        tested += 1
        p_values.append((d.p, spending[j - 1]))
        p_eq.append((d.p_equivalent, spending[j - 1]))
    if not p_values:
        return last
    return replace(last, p=combined(p_values), p_equivalent=combined(p_eq), looks=tested)


def combined(tests: Sequence[tuple[float, float]]) -> float:
    """The p-value of a sequence of looks, each (p_j, w_j): ``min_j p_j / w_j`` (capped at 1), NaN when no look has
    a p-value. Rejecting when it is below alpha rejects when some look's p_j is below alpha * w_j."""
    finite = [min(1.0, p / w) for p, w in tests if not math.isnan(p)]
    return min(finite) if finite else math.nan
