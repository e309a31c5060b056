"""The report's table at a glance: the primary test metric of every method at every (task, budget), mean over
seeds with its 95% interval printed under it (the leaderboards' interval, over seeds and test items:
``bench.analysis.score_interval``; visible in print, screenshots and on touch, not only in a tooltip), shaded within
its row, with the decision map's best and not-significantly-worse methods marked, and each method's mean rank over the
rows where it ran.

Marks come from ``bench.analysis.decision_map`` (the choice on validation; ☆ only for a method equivalent to it on
test, never for one merely not shown worse); without enough seeds nothing is starred and only the highest mean of the
row is bold, which is a description of these seeds, not a ranking.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bench import catalog
from bench.analysis.cells import MethodCell
from bench.analysis.overview import budget_text, method_rank, task_rank
from bench.analysis.stats import ITEMS, SEEDS, SEEDS_ITEMS, Interval
from bench.analysis.tables import Row
from bench.core.record import TEST, metric_key
from bench.report.html import TD, table

BEST, NOT_WORSE = "\u2605", "\u2606"  # ★ ☆
KIND_MARK = {SEEDS_ITEMS: "", ITEMS: "\u2020", SEEDS: "\u2021"}  # what an interval counts: none, †, ‡
_CI_STYLE = "font-size:.75em;color:#333"  # small enough that six methods fit 800 px, dark enough to print
KIND_WORDS = {SEEDS_ITEMS: "seeds and test items", ITEMS: "the test items only", SEEDS: "seeds only"}
LEGEND = (
    "Each cell: the mean over seeds and, in small type below it, its 95% interval over seeds and test items (as in "
    f"the leaderboards); {KIND_MARK[ITEMS]} one seed: the interval counts the test items only (a seeded method's "
    f"seed-to-seed spread is not in it); {KIND_MARK[SEEDS]} no stored predictions: over seeds only. "
    f"{BEST} the decision map's choice (best mean validation score among methods with enough seeds); "
    f"{NOT_WORSE} equivalent to {BEST} on test (within the metric's margin, two one-sided tests, adjusted); bold: "
    "the highest test mean of the row (marked even when the seeds cannot rank the methods). Shading runs within each "
    "row from the lowest score (white) to the highest (green), in the metric's better direction. Mean rank: 1 = the "
    "best mean of a row, averaged over the rows where the method ran (how many in brackets); rows hold different sets "
    "of methods, so it is a rough summary."
)


@dataclass(frozen=True)
class HeatRow:
    task: str
    budget: int
    metric: str
    higher_is_better: bool
    values: dict[str, Interval]  # method -> primary test metric: mean over seeds and its interval (seeds + items)
    best: str | None  # the decision map's best (None: not enough seeds, or no decision map)
    not_worse: tuple[str, ...]
    top: str | None  # the highest mean of the row (whatever the seeds)
    ranks: dict[str, float]  # method -> rank by mean in this row (1 = best; ties share the average)
    backbones: dict[str, str] = field(default_factory=dict)  # method -> its backbone, where not the task's own

    def shade(self, method: str) -> float:
        """0 (the row's worst mean) to 1 (its best); 1 when every method scored the same."""
        means = [v.mean for v in self.values.values() if not math.isnan(v.mean)]
        value = self.values[method].mean
        if math.isnan(value) or max(means) == min(means):
            return 1.0
        t = (value - min(means)) / (max(means) - min(means))
        return t if self.higher_is_better else 1.0 - t

    def mark(self, method: str) -> str:
        return BEST if method == self.best else NOT_WORSE if method in self.not_worse else ""


@dataclass(frozen=True)
class Heatmap:
    methods: tuple[str, ...]
    rows: tuple[HeatRow, ...]
    mean_rank: dict[str, tuple[float, int]]  # method -> (mean rank, rows it ran in)

    def html(self) -> str:
        header = ["task", "budget", "metric", *self.methods]
        body: list[list[TD | str]] = []
        for row in self.rows:
            line: list[TD | str] = [row.task, budget_text(row.budget), row.metric]
            for m in self.methods:
                if m not in row.values or math.isnan(row.values[m].mean):
                    line.append(TD("–"))
                    continue
                v = row.values[m]
                text = f"{v.mean:.3f}"
                text = f"<b>{text}</b>" if m == row.top else text
                ci = f"<br><small class='ci' style='{_CI_STYLE}'>{_range(v)}</small>"  # visible, not only hovered
                if m in row.backbones:
                    ci += f"<br><small class='ci' style='{_CI_STYLE}'>on {html.escape(row.backbones[m])}</small>"
                mark = row.mark(m)
                light = 97 - 40 * row.shade(m)
                line.append(
                    TD(
                        (f"{mark} " if mark else "") + text + ci,
                        value=v.mean,
                        style=f"background:hsl(140,45%,{light:.0f}%);padding:.25rem .3rem",
                        title=f"{m} at {budget_text(row.budget)}: {v.describe()}, {v.n} seed{'s' * (v.n != 1)}"
                        + (f"; 95% interval over {KIND_WORDS[v.kind]}" if v.has_interval else ""),
                        raw=True,
                        cls="heat",
                    )
                )
            body.append(line)
        body.append(
            [
                TD("<b>mean rank</b>", raw=True),
                "",
                "",
                *(TD(_rank_text(self.mean_rank.get(m)), value=self.mean_rank.get(m, (None,))[0]) for m in self.methods),
            ]
        )
        return table(header, body)

    def markdown(self) -> list[str]:
        lines = [
            "| task | budget | metric | " + " | ".join(self.methods) + " |",
            "|---" * (3 + len(self.methods)) + "|",
        ]
        for row in self.rows:
            cells = []
            for m in self.methods:
                v = row.values.get(m)
                if v is None or math.isnan(v.mean):
                    cells.append("–")
                    continue
                text = f"**{v.mean:.3f}**" if m == row.top else f"{v.mean:.3f}"
                on = f", on {row.backbones[m]}" if m in row.backbones else ""
                cells.append(f"{text} {row.mark(m)}".strip() + f" ({_range(v)}{on})")
            lines.append(f"| {row.task} | {budget_text(row.budget)} | {row.metric} | " + " | ".join(cells) + " |")
        ranks = " | ".join(_rank_text(self.mean_rank.get(m)) for m in self.methods)
        lines.append(f"| **mean rank** | | | {ranks} |")
        return lines


def build_heatmap(
    cells: Mapping[tuple[str, int], Mapping[str, MethodCell]],
    spec_of: Callable,
    decisions: Mapping[tuple[str, int], object] | None = None,
    tables: Mapping[str, Sequence[Row]] | None = None,
) -> Heatmap:
    """``cells`` from ``bench.analysis.cells.method_cells``; ``decisions`` (task, budget) -> ``Decision``;
    ``tables`` (``bench.analysis.tables.tables``): each cell's primary interval from its row (over seeds and test
    items), the one the leaderboards show; a cell without a row keeps its seeds' t-interval."""
    from scipy.stats import rankdata

    shown = {(r.cell.task, r.budget, r.method): r for rs in (tables or {}).values() for r in rs}
    rows = []
    for task, budget in sorted(cells, key=lambda tb: (task_rank(tb[0]), tb[1] == 0, tb[1])):
        spec = spec_of(task)
        key = metric_key(TEST, spec.primary_metric)
        # columns by label: one name for two mechanisms (fewshot on images and on text) gets two columns
        label = {m: catalog.method_label(m, task) for m in cells[(task, budget)]}
        values = {label[m]: _primary(c, shown.get((task, budget, m)), key) for m, c in cells[(task, budget)].items()}
        other = {  # a cell on another backbone than the task's own says which
            label[m]: ", ".join(shown[(task, budget, m)].backbones)
            for m in cells[(task, budget)]
            if (task, budget, m) in shown and shown[(task, budget, m)].backbones != (spec.backbone,)
        }
        scored = [m for m, v in values.items() if not math.isnan(v.mean)]
        sign = spec.sign
        ranks = rankdata([-sign * values[m].mean for m in scored], method="average") if scored else []
        d = (decisions or {}).get((task, budget))
        rows.append(
            HeatRow(
                task=task,
                budget=budget,
                metric=spec.primary_metric,
                higher_is_better=spec.higher_is_better,
                values=values,
                best=label.get(getattr(d, "best", None)),
                not_worse=tuple(label[m] for m in getattr(d, "equivalent", ()) if m in label),
                backbones=other,
                top=max(scored, key=lambda m: sign * values[m].mean) if scored else None,
                ranks={m: float(r) for m, r in zip(scored, ranks, strict=True)},
            )
        )
    methods = tuple(sorted({m for row in rows for m in row.values}, key=lambda m: (method_rank(m.split(" (")[0]), m)))
    mean_rank = {}
    for m in methods:
        seen = [row.ranks[m] for row in rows if m in row.ranks]
        if seen:
            mean_rank[m] = (float(np.mean(seen)), len(seen))
    return Heatmap(methods, tuple(rows), mean_rank)


def _primary(cell: MethodCell, row: Row | None, key: str) -> Interval:
    """The cell's primary interval: its row's (seeds + items) when there is one, else the seeds' t-interval."""
    return row.metrics[key] if row is not None and key in row.metrics else cell.primary


def _range(v: Interval) -> str:
    """The interval in small type: "0.938–0.971" (with † or ‡ when it is not over seeds and items); "one seed"
    when there is none."""
    if not v.has_interval:
        return "one seed" if v.n == 1 else "–"
    return f"{v.low:.3f}\u2013{v.high:.3f}{KIND_MARK.get(v.kind, '')}"


def _rank_text(rank: tuple[float, int] | None) -> str:
    return "–" if rank is None else f"{rank[0]:.1f} ({rank[1]})"
