"""The report's table at a glance: the primary test metric of every method at every (task, budget), mean over
seeds, shaded within its row, with the decision map's best and not-significantly-worse methods marked, and each
method's mean rank over the rows where it ran.

Marks come from ``bench.analysis.decision_map`` (the choice on validation; ☆ only for a method equivalent to it on
test, never for one merely not shown worse); without enough seeds nothing is starred and only the highest mean of the
row is bold, which is a description of these seeds, not a ranking.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from bench.analysis.cells import MethodCell
from bench.analysis.overview import method_rank, task_rank
from bench.analysis.stats import Interval
from bench.report.html import TD, table

BEST, NOT_WORSE = "\u2605", "\u2606"  # ★ ☆
LEGEND = (
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
    values: dict[str, Interval]  # method -> primary test metric over seeds
    best: str | None  # the decision map's best (None: not enough seeds, or no decision map)
    not_worse: tuple[str, ...]
    top: str | None  # the highest mean of the row (whatever the seeds)
    ranks: dict[str, float]  # method -> rank by mean in this row (1 = best; ties share the average)

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
            line: list[TD | str] = [row.task, _budget(row.budget), row.metric]
            for m in self.methods:
                if m not in row.values or math.isnan(row.values[m].mean):
                    line.append(TD("–"))
                    continue
                v = row.values[m]
                text = f"{v.mean:.3f}"
                text = f"<b>{text}</b>" if m == row.top else text
                mark = row.mark(m)
                light = 97 - 40 * row.shade(m)
                line.append(
                    TD(
                        (f"{mark} " if mark else "") + text,
                        value=v.mean,
                        style=f"background:hsl(140,45%,{light:.0f}%)",
                        title=f"{m} at {_budget(row.budget)}: {v.describe()}, {v.n} seed{'s' * (v.n != 1)}",
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
                cells.append(f"{text} {row.mark(m)}".strip())
            lines.append(f"| {row.task} | {_budget(row.budget)} | {row.metric} | " + " | ".join(cells) + " |")
        ranks = " | ".join(_rank_text(self.mean_rank.get(m)) for m in self.methods)
        lines.append(f"| **mean rank** | | | {ranks} |")
        return lines


def build_heatmap(
    cells: Mapping[tuple[str, int], Mapping[str, MethodCell]],
    spec_of: Callable,
    decisions: Mapping[tuple[str, int], object] | None = None,
) -> Heatmap:
    """``cells`` from ``bench.analysis.cells.method_cells``; ``decisions`` (task, budget) -> ``Decision``."""
    from scipy.stats import rankdata

    rows = []
    for task, budget in sorted(cells, key=lambda tb: (task_rank(tb[0]), tb[1] == 0, tb[1])):
        spec = spec_of(task)
        values = {m: c.primary for m, c in cells[(task, budget)].items()}
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
                best=getattr(d, "best", None),
                not_worse=tuple(getattr(d, "equivalent", ())),
                top=max(scored, key=lambda m: sign * values[m].mean) if scored else None,
                ranks={m: float(r) for m, r in zip(scored, ranks, strict=True)},
            )
        )
    methods = tuple(sorted({m for row in rows for m in row.values}, key=method_rank))
    mean_rank = {}
    for m in methods:
        seen = [row.ranks[m] for row in rows if m in row.ranks]
        if seen:
            mean_rank[m] = (float(np.mean(seen)), len(seen))
    return Heatmap(methods, tuple(rows), mean_rank)


def _rank_text(rank: tuple[float, int] | None) -> str:
    return "–" if rank is None else f"{rank[0]:.1f} ({rank[1]})"


def _budget(b: int) -> str:
    return "all" if b == 0 else str(b)
