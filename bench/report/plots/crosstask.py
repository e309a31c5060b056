"""The figures across tasks:

- the tasks whose trained methods have one budget, as one dot chart (``dot_chart_figure``): one panel per metric (an
  accuracy and a Pearson correlation are not on one axis), in each a block of rows per task headed by its name,
  budget and backbone, one row per method named on the y axis (with its backbone where it is not the task's, and
  its budget where it is not the trained methods'), its mean with the 95% interval, and the task's majority and chance
  as short segments over its block (named at the row's end when outside the range);
- in-domain vs out-of-domain test metric of the shift tasks (``shift_figure``), one panel per task, with the y = x
  line (a narrow layout of two panels a row when the wide one is too wide to read in a narrow window).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench.core.record import TEST_OOD, metric_key
from bench.report.plots.efficiency import Series, efficiency_series, trained_budgets
from bench.report.plots.style import (
    DPI,
    NARROW_MAX_PX,
    Plot,
    backbone_of,
    budget_labels,
    draw_baselines,
    draw_point,
    interval_ends,
    legend_outside,
    method_label,
    method_rank,
    new_figure,
    note_off_axis,
    png_base64,
    spec_of,
    task_baselines,
    value_limits,
    yerr,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from bench.analysis.baselines import Baselines
    from bench.core.record import Record
    from bench.core.store import Store

DOT_WIDTH = 8.0  # inches: shown whole in an 800 px window, so the dot chart needs no narrow layout
DOT_ROW = 0.2  # inches per row: a method's name at 8 pt, and room between its error bar and the next


# ------------------------------------------------------------------------------------------- dot chart
@dataclass(frozen=True)
class DotRow:
    """One task of the cross-task chart: its metric, the budget its trained methods share, its series and lines."""

    task: str
    metric: str
    series: list[Series]
    base: Baselines | None
    budget: int | None = None  # the effective budget the trained methods share
    labels: dict[int, str] = field(default_factory=dict)  # effective budget -> tick text ("all (N)")

    def budget_text(self, x: int | None) -> str:
        return "–" if x is None else self.labels.get(x, f"{x:,}")

    def backbone(self) -> str:
        """The backbone most of the task's methods ran on."""
        counts = [s.backbone for s in self.series if s.backbone]
        return max(counts, key=counts.count) if counts else ""

    def entries(self) -> list[tuple[Series, int]]:
        """(series, index of its point): one per method, and per budget for a method drawn at several."""
        return [(s, k) for s in sorted(self.series, key=lambda s: method_rank(s.method)) for k in range(len(s.y))]

    def entry_label(self, s: Series, k: int) -> str:
        budget = f"budget {self.budget_text(s.x[k])}" if s.x and s.x[k] != self.budget else ""
        return method_label(s.method, s.backbone if s.backbone != self.backbone() else "", budget)


def by_metric(rows: Sequence[DotRow]) -> dict[str, list[DotRow]]:
    """The rows grouped by metric, the metric with the most tasks first: one panel each."""
    out: dict[str, list[DotRow]] = {}
    for row in rows:
        out.setdefault(row.metric, []).append(row)
    return dict(sorted(out.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def dot_chart_figure(rows: Sequence[DotRow]) -> Figure:
    """One panel per metric; in each, task blocks top to bottom, a method per row (named on the y axis), the metric
    on the x axis with each point's interval; the task's majority and chance as black segments over its block."""
    panels = by_metric(rows)
    heights = [sum(1 + len(r.entries()) for r in rs) for rs in panels.values()]
    fig = new_figure(DOT_WIDTH, 0.8 + 0.75 * len(panels) + DOT_ROW * sum(heights))
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (metric, group) in zip(axes, panels.items(), strict=True):
        _dot_panel(ax, metric, group)
    title = "Tasks with one budget: primary test metric per method, one panel per metric"
    legend_outside(fig, where="top", ncols=2, title=title)
    return fig


def _dot_panel(ax: Axes, metric: str, rows: Sequence[DotRow]) -> None:
    limits = value_limits([v for r in rows for s in r.series for i in s.y for v in interval_ends(i)], metric)
    ax.set_xlim(*limits)
    y, ticks, names = 0.0, [], []
    for n, row in enumerate(rows):
        header = y
        if n:
            ax.axhline(header + 0.5, color="#bbbbbb", linewidth=0.8, zorder=0)
        title = f"{row.task} · budget {row.budget_text(row.budget)}" + (
            f" · {row.backbone()}" if row.backbone() else ""
        )
        box = {"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1}
        ax.text(0.005, header, title, transform=ax.get_yaxis_transform(), ha="left", va="center", fontsize=9,
                fontweight="bold", bbox=box)  # fmt: skip
        for s, k in row.entries():
            y -= 1
            i = s.y[k]
            ax.axhline(y, color="#eeeeee", linewidth=0.6, zorder=0)  # a guide from the name to its point
            draw_point(ax, [i.mean], [y], s.method, f"dot:{row.task}:{s.method}", xerr=yerr([i]), label="_nolegend_")
            ticks.append(y)
            names.append(row.entry_label(s, k))
        off = draw_baselines(ax, row.base, horizontal=False, span=(y - 0.45, header - 0.55), within=limits)
        note_off_axis(ax, off, limits, at=header)
        y -= 1
    ax.set_yticks(ticks, names, fontsize=8)
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(y + 0.5, 0.5)
    ax.set_xlabel(f"test {metric}", fontsize=9)
    ax.grid(axis="x", alpha=0.3)


def dot_chart_plot(records_by_task: dict[str, list[Record]], store: Store | None) -> Plot:
    rows, notes = [], {}
    for task, rs in sorted(records_by_task.items()):
        metric = spec_of(task).primary_metric
        series = efficiency_series(rs, metric)
        trained = sorted(trained_budgets(series)) or sorted({x for s in series for x in s.x})
        base, note = task_baselines(task, rs, store)
        if base is None:
            notes[task] = note.removeprefix("No majority-class or chance line: ").rstrip(".")
        rows.append(DotRow(task, metric, series, base, trained[0] if trained else None, budget_labels(rs)))
    metrics = list(by_metric(rows))
    caption = (
        f"The {len(rows)} tasks whose trained methods ran at one budget, gathered in one chart with one panel per "
        f"metric ({', '.join(metrics)}): each task's primary test metric, a row per method named on the left (in "
        "brackets its backbone where it is not the one in the task's heading, and its budget where it is not the "
        "trained methods'), mean over seeds with its 95% t-interval (none with one seed). Black segments: the "
        "task's majority class (dashed) and chance (dotted) on its test labels, one where they coincide; a "
        "baseline outside the panel's range is named at the right end of the task's heading."
    )
    if notes:
        caption += " No segments for " + "; ".join(f"{t} ({n})" for t, n in notes.items()) + "."
    alt = "dot chart of the primary test metric per method for the tasks with one budget: " + ", ".join(records_by_task)
    return Plot(alt, caption, png_base64(dot_chart_figure(rows)))


# ----------------------------------------------------------------------------------------------- shift
def shift_tasks(records: Sequence[Record]) -> dict[str, list[Record]]:
    """Tasks whose ok records have an out-of-domain primary metric, with those records."""
    out: dict[str, list[Record]] = {}
    for r in records:
        if r.ok and metric_key(TEST_OOD, spec_of(r.task).primary_metric) in r.metrics:
            out.setdefault(r.task, []).append(r)
    return dict(sorted(out.items()))


def shift_figure(tasks: dict[str, list[Record]], per_row: int = 4) -> Figure:
    """One panel per task, at most ``per_row`` a row (rows balanced: 5 panels as 3 + 2, not 4 + 1)."""
    nrows = math.ceil(len(tasks) / per_row)
    ncols = math.ceil(len(tasks) / nrows)
    fig = new_figure(3.2 * ncols + 2.0, 3.3 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(tasks) :]:
        ax.set_visible(False)
    for ax, (task, rs) in zip(axes.flat, tasks.items(), strict=False):
        metric = spec_of(task).primary_metric
        inside = efficiency_series(rs, metric, "test")
        outside = {s.method: s for s in efficiency_series(rs, metric, "test_ood")}
        several = len({x for s in inside for x in s.x}) > 1
        shown: list[float] = []
        for s in inside:
            o = outside[s.method]
            xs, ys = [i.mean for i in s.y], [i.mean for i in o.y]
            draw_point(ax, xs, ys, s.method, f"shift:{task}:{s.method}", xerr=yerr(s.y), yerr=yerr(o.y))
            for x, i, j in zip(s.x if several else (), s.y, o.y, strict=False):  # zeroshot has no budget
                ax.annotate(f"{x:,}", (i.mean, j.mean), xytext=(5, 4), textcoords="offset points", fontsize=8)
            shown += [v for i in (*s.y, *o.y) for v in interval_ends(i)]
        lo, hi = value_limits(shown, metric)
        diagonal = {"color": "black", "linestyle": "--", "linewidth": 0.9, "zorder": 1, "gid": "identity"}
        ax.plot([lo, hi], [lo, hi], label="y = x (no loss out of domain)", **diagonal)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal", adjustable="box")
        backbone = backbone_of(rs)
        ax.set_title(f"{task}\n{backbone}" if backbone else task, fontsize=9)
        ax.set_xlabel(f"in-domain test {metric}", fontsize=9)
        ax.set_ylabel(f"out-of-domain test {metric}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle("Domain shift: in domain vs out of domain", fontsize=10)
    legend_outside(fig)
    return fig


def shift_plot(records: Sequence[Record]) -> Plot | None:
    tasks = shift_tasks(records)
    if not tasks:
        return None
    caption = (
        "Domain shift: each method's in-domain test metric (x) against its out-of-domain one (y), one panel per "
        "task (its backbone under its name); below the dashed diagonal a method does worse out of domain, by the "
        "vertical distance (gap/ in the tables). Bars: 95% t-interval over seeds (none with one seed); a budget is "
        "written beside its point when a task has several."
    )
    alt = "in-domain vs out-of-domain test metric per method for " + ", ".join(tasks)
    wide = shift_figure(tasks)
    narrow = shift_figure(tasks, per_row=2) if wide.get_figwidth() * DPI > NARROW_MAX_PX else None
    return Plot(alt, caption, png_base64(wide), png_base64(narrow) if narrow is not None else "")
