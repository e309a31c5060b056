"""The decision map as the report shows it: one row per (task, budget) with the verdict and what it rests on, in place.

A row names the method chosen on validation with its backbone, seeds, validation score and caveats, then every other
method's comparison on test: its outcome (better, worse, equivalent, undecided), the difference method minus choice
with its 95% interval, the Holm-adjusted p-value and, when undecided, the seeds a decision would take; then the
metric's equivalence margin and the methods left out with the reason. Methods are named by ``catalog.method_label``
(two mechanisms never share a name: "fewshot (nearest class mean)", "fewshot (in-context LM)"). The caveats are
``Row.caveats`` of the per-task tables (did-not-learn, degenerate, still-improving, step cap, grid edge, seeds), so
the map and the leaderboards cannot disagree. The numbers are ``bench.analysis.decision_map``'s; nothing here tests.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench import catalog
from bench.analysis.contrast import BETTER, EQUIVALENT, WORSE
from bench.analysis.decision_map import Decision
from bench.analysis.overview import budget_text, method_rank
from bench.analysis.tables import Row
from bench.report.html import TD, table

esc = html.escape
UNDECIDED = "undecided"
ORDER = (BETTER, WORSE, EQUIVALENT, UNDECIDED)  # how a row lists the comparisons: a reversal first
HEADER = ["task", "budget", "verdict", "chosen on validation", "each other method on test: method − choice", "left out"]
EXPLAINED = (
    "Read a row left to right: the verdict; the method chosen on validation, with its backbone, seeds and caveats; "
    "then every other method against it on test: its outcome, the difference method − choice with its 95% interval "
    "(seeds and test items both counted, paired on the same items; the interval is not adjusted for the map's many "
    "comparisons) and the p-value Holm-adjusted over the whole map, which decides the outcome: an interval that "
    "excludes 0 with an adjusted p above 0.05 is a difference this many comparisons cannot confirm. An undecided "
    "comparison says how many more seeds per method the current variances say would decide it on its own (before "
    "the adjustment), or that the test set, not the seeds, is what is short. Equivalent means "
    "the difference lies within the metric's margin (the row's ±): two one-sided tests, adjusted. Caveats: "
    "did-not-learn (its interval reaches the majority-class score), degenerate (a seed predicted one class for every "
    "item), still-improving k/n (the best validation pass was the run's last: a longer run may score higher), step "
    "cap k/n (k of n seeds ended at the step cap, not by patience), grid-edge k/n (the tuned value sits at the edge "
    "of the values tried), k of m seeds (fewer seeds than a ranking needs)."
)


@dataclass(frozen=True)
class Comparison:
    """One other method against the choice, as the map shows it."""

    method: str
    outcome: str  # for the method: better / worse / equivalent / undecided
    label: str  # the method's name and what it ran on, its seeds and caveats
    diff: float  # method - choice
    low: float
    high: float
    p_adjusted: float
    more: str  # for an undecided one: what would decide it ("" otherwise)

    def text(self) -> str:
        interval = "" if math.isnan(self.low) else f" [{self.low:+.3f}, {self.high:+.3f}]"
        p = "" if math.isnan(self.p_adjusted) else f", p={_p(self.p_adjusted)}"
        return f"{self.outcome}: {self.label} {self.diff:+.3f}{interval}{p}{self.more}"


@dataclass(frozen=True)
class MapRow:
    task: str
    budget: int
    verdict: str
    chosen: str
    comparisons: tuple[Comparison, ...]
    margin: str
    left_out: str


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def describe_method(method: str, row: Row | None, task: str) -> str:
    """``fewshot (in-context LM) on smollm2-135m, 5 draws; degenerate: 1 of 5``: the label, backbone, seeds (draws
    for a method that does not train: its seed draws demonstrations or a phrasing) and caveats."""
    label = catalog.method_label(method, task)
    if row is None:
        return label
    trains = catalog.method_class(method).trains if method in catalog.METHODS.names() else True
    seeds = f"{row.n} {'seed' if trains else 'draw'}{'s' * (row.n != 1)}"
    caveats = row.caveats
    return f"{label} on {', '.join(row.backbones)}, {seeds}" + (f"; {', '.join(caveats)}" if caveats else "")


def map_rows(decisions: Sequence[Decision], tables: Mapping[str, Sequence[Row]]) -> list[MapRow]:
    """The map's rows, in the decisions' order; ``tables``: the report's per-task rows (backbones, seeds, caveats)."""
    by_cell = {(r.cell.task, r.budget, r.method): r for rows in tables.values() for r in rows}
    out = []
    for d in decisions:
        rows = {m: by_cell.get((d.task, d.budget, m)) for m in {*d.seeds, *d.diffs, *d.excluded}}
        margin = next((f"±{x.margin:g} {x.metric}" for x in d.diffs.values() if x.margin == x.margin), "")
        comparisons = []
        for outcome, methods in ((BETTER, d.better), (WORSE, d.worse), (EQUIVALENT, d.equivalent),
                                 (UNDECIDED, d.undecided)):  # fmt: skip
            for m in sorted(methods, key=method_rank):
                x = d.diffs[m]  # choice - method
                more = ""
                if outcome == UNDECIDED:
                    n = x.more_seeds()
                    more = "; only a larger test set would decide it" if n is None else f"; ~{n} more seeds each"
                p = x.p_adjusted if x.p_adjusted is not None else x.p
                comparisons.append(
                    Comparison(m, outcome, describe_method(m, rows[m], d.task), -x.diff, -x.high, -x.low, p, more)
                )
        reasons: dict[str, list[str]] = {}
        for method, why in d.excluded.items():
            reasons.setdefault(why, []).append(catalog.method_label(method, d.task))
        left_out = "; ".join(f"{', '.join(sorted(ms))}: {why}" for why, ms in sorted(reasons.items()))
        if d.best is None:
            chosen, verdict = "–", d.note
        else:
            chosen = f"{describe_method(d.best, rows.get(d.best), d.task)}; validation {d.validation[d.best]:.3f}"
            verdict = _verdict(d) + _choice_caveat(d, rows.get(d.best))
        out.append(MapRow(d.task, d.budget, verdict, chosen, tuple(comparisons), margin, left_out))
    return out


def _verdict(d: Decision) -> str:
    """The row in a phrase: reversed on test, confirmed (nothing better or undecided), or undecided at this
    compute."""
    best = catalog.method_label(d.best, d.task)
    if d.better:
        names = ", ".join(catalog.method_label(m, d.task) for m in d.better)
        return f"reversed: {names} better on test than {best}, the validation choice"
    if not d.diffs:
        return f"{best}, but nothing could be compared with it"
    if d.undecided:
        settled = len(d.worse) + len(d.equivalent)
        return (
            f"undecided at this compute: {best} on validation; against {len(d.undecided)} of {len(d.diffs)} other "
            f"methods the test set cannot tell yet" + (f" ({settled} settled)" if settled else "")
        )
    tie = f", {len(d.equivalent)} equivalent" if d.equivalent else ""
    return f"{best}: no other method better on test ({len(d.worse)} worse{tie})"


def _choice_caveat(d: Decision, row: Row | None) -> str:
    """What the verdict must carry about the choice itself: it did not learn, or collapsed."""
    if row is None or d.best is None:
        return ""
    if "did-not-learn" in row.flags:
        return "; the choice itself did not learn (its interval reaches the majority-class score)"
    if row.n_degenerate:
        return f"; the choice collapsed to one class in {row.n_degenerate} of {row.n} seeds"
    return ""


def decision_html(rows: Sequence[MapRow]) -> str:
    body = []
    for r in rows:
        lines = "".join(
            f"<div class='cmp {c.outcome}'><b>{esc(c.outcome)}</b>: {esc(c.text()[len(c.outcome) + 2 :])}</div>"
            for c in r.comparisons
        )
        body.append(
            [
                TD(r.task, cls="l"),
                TD(budget_text(r.budget) + (f"<div class='meta'>{esc(r.margin)}</div>" if r.margin else ""), raw=True),
                TD(f"<b>{esc(r.verdict)}</b>", cls="l", raw=True),
                TD(r.chosen, cls="l"),
                TD(lines or "–", cls="l", raw=True),
                TD(r.left_out or "–", cls="l"),
            ]
        )
    return table(HEADER, body, cls="decision")


def decision_markdown(rows: Sequence[MapRow]) -> list[str]:
    lines = ["| " + " | ".join(HEADER) + " |", "|---" * len(HEADER) + "|"]
    for r in rows:
        budget = budget_text(r.budget) + (f" ({r.margin})" if r.margin else "")
        others = "<br>".join(c.text() for c in r.comparisons) or "–"
        cells = [r.task, budget, r.verdict, r.chosen, others, r.left_out or "–"]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return lines
