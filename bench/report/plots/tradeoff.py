"""The report's scatter and dot charts (styles, encoding and baselines from ``bench.report.plots.efficiency``):

- trade-offs of one task: the primary test metric against forgetting (only held-out probes, ``bench.probes.held_out``,
  as ``bench.analysis.cells.method_cells`` counts them, and only the probe most methods share: fewshot's causal LM
  reads WikiText perplexity, another scale), trainable parameters, peak memory and training time (log axes), one row per
  budget with at least ``MIN_METHODS`` methods, the Pareto front of each panel ringed
  (``bench.analysis.cells.pareto_front`` on the panel's points, as ``pareto_fronts`` does: higher metric, lower cost);
- the tasks whose trained methods have one budget, as one dot chart: task on the y axis, its primary test metric on
  the x axis, one marker per method with its interval, the task's majority and chance as short segments;
- in-domain vs out-of-domain test metric of the shift tasks, one panel per task, with the y = x line.
"""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench import catalog
from bench.analysis import cells as cl
from bench.core.metrics import metric_range
from bench.core.record import TEST_OOD, metric_key
from bench.report.plots.efficiency import Series, efficiency_series, trained_budgets
from bench.report.plots.style import (
    MIN_SPAN,
    Plot,
    baseline_values,
    budget_labels,
    draw_baselines,
    draw_point,
    interval_ends,
    legend_outside,
    method_rank,
    new_figure,
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
    from bench.analysis.cells import MethodCell
    from bench.core.record import Record
    from bench.core.store import Store

NARROW_PER_ROW = (
    2  # the trade-off figure for windows under bench.report.plots.efficiency.NARROW_PX: 770 px wide instead of 1350
)
MIN_METHODS = 3  # a front of two points says no more than the table: fewer methods at a budget, no trade-off row
COST_AXES = {  # bench.analysis.cells.PARETO_AXES name -> (x label, factor to display units, log axis)
    "forgetting": ("forgetting drop on {probe} (> 0: forgot)", 1.0, False),
    "trainable params": ("trainable parameters", 1.0, True),
    "peak memory": ("peak memory (MiB)", 2.0**-20, True),
    "train time": ("training time (s)", 1.0, True),
}


# ---------------------------------------------------------------------------------------------- trade-offs
def tradeoff_cells(records: Sequence[Record]) -> dict[int, dict[str, MethodCell]]:
    """Budget -> method -> MethodCell for the budgets with at least ``MIN_METHODS`` methods; a method that reads no
    training example (zeroshot) joins every budget, as it would give the same cell there."""
    cells = cl.method_cells(records, spec_of)
    free: dict[str, MethodCell] = {}
    for group in cells.values():
        for m, c in group.items():
            if _budget_free(m) and len(c.records) > len(free[m].records if m in free else []):
                free[m] = c
    out = {}
    for (_, budget), group in cells.items():
        trained = {m: c for m, c in group.items() if not _budget_free(m)}
        if len(trained) + len(free) >= MIN_METHODS and trained:
            out[budget] = {**trained, **free}
    return dict(sorted(out.items(), key=lambda kv: (kv[0] == 0, kv[0])))  # "all" (0) last


def main_probe(cells: dict[int, dict[str, MethodCell]]) -> str | None:
    """The held-out probe most methods were measured on: drops on another probe (fewshot's causal LM reads
    WikiText perplexity) are in other units and left off the forgetting panels."""
    probes = Counter(_probe(c) for g in cells.values() for c in g.values() if math.isfinite(c.forgetting))
    return probes.most_common(1)[0][0] if probes else None


def _probe(cell: MethodCell) -> str | None:
    return next((r.forgetting.probe for r in cell.records if r.forgetting), None)


def cost_points(group: dict[str, MethodCell], name: str, probe: str | None) -> tuple[dict[str, float], dict[str, str]]:
    """One panel's x values in display units (method -> x), and why the others have no point."""
    attr, factor = cl.PARETO_AXES[name][0], COST_AXES[name][1]
    xs, missing = {}, {}
    for m, c in sorted(group.items(), key=lambda kv: method_rank(kv[0])):
        x = getattr(c, attr) * factor
        if not math.isfinite(x):
            missing[m] = "not measured"
        elif name == "forgetting" and _probe(c) != probe:
            missing[m] = f"on {_probe(c)}"
        else:
            xs[m] = x
    return xs, missing


def _short(v: float) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= size:
            return f"{v / size:g}{unit}"
    return f"{v:g}"


def log_axis(ax: Axes, xs: dict[str, float]) -> dict[str, float]:
    """A log x axis over the panel's values, ticks at decades (or 1-2-5 steps over a narrow range) labelled 1k, 2M;
    a value of 0 (fewshot's trainable parameters) sits at a "0" tick left of the rest. Returns where to draw."""
    from matplotlib.ticker import NullFormatter

    positive = [x for x in xs.values() if x > 0]
    if not positive:
        return xs
    lo, hi = min(positive), max(positive)
    zero_at = lo / 8 if len(positive) < len(xs) else None
    left, right = (zero_at or lo) / 1.8, hi * 1.8
    ax.set_xscale("log")
    ax.set_xlim(left, right)
    steps = (1, 2, 5) if hi / lo < 30 else (1,)
    ticks = [m * 10.0**k for k in range(math.floor(math.log10(left)), math.ceil(math.log10(right)) + 1) for m in steps]
    ticks = [t for t in ticks if lo / 1.8 <= t <= right]
    if len(ticks) > 6:
        ticks = ticks[len(ticks) % 2 :: 2]
    labels = [_short(t) for t in ticks]
    if zero_at:
        ticks, labels = [zero_at, *ticks], ["0", *labels]
    ax.set_xticks(ticks, labels)
    ax.xaxis.set_minor_formatter(NullFormatter())
    return {m: x if x > 0 else zero_at for m, x in xs.items()}


def tradeoff_figure(
    task: str,
    metric: str,
    cells: dict[int, dict[str, MethodCell]],
    higher_is_better: bool,
    base: Baselines | None,
    labels: dict[int, str],
    per_row: int = len(COST_AXES),
) -> Figure:
    """One row of the four cost panels per budget; ``per_row`` 2 wraps each budget's panels onto two rows, a figure
    half as wide for narrow windows (``NARROW_PER_ROW``)."""
    wraps = math.ceil(len(COST_AXES) / per_row)
    fig = new_figure(1.9 + 2.9 * per_row, 0.8 + 3.2 * len(cells) * wraps)
    grid = fig.subplots(len(cells) * wraps, per_row, squeeze=False, sharey="row")
    probe = main_probe(cells)
    for b, (budget, group) in enumerate(cells.items()):
        # the methods' spread sets the range here (at least MIN_SPAN): what a trade-off compares is the methods, and
        # the sample-efficiency plot already sets them against the baselines, drawn here only where they fall in it
        limits = value_limits([v for c in group.values() for v in interval_ends(c.primary)], metric)
        for k, (name, (xlabel, _, log)) in enumerate(COST_AXES.items()):
            ax = grid[b * wraps + k // per_row][k % per_row]
            values, missing = cost_points(group, name, probe)
            xs = log_axis(ax, values) if log else values
            front = cl.pareto_front({m: (group[m].primary.mean, values[m]) for m in values}, (higher_is_better, False))
            for m, x in xs.items():
                i = group[m].primary
                draw_point(ax, [x], [i.mean], m, f"point:{budget}:{name}:{m}", yerr=yerr([i]))
            front.sort(key=lambda m: xs[m])
            if front:
                fx, fy = [xs[m] for m in front], [group[m].primary.mean for m in front]
                ax.plot(fx, fy, color="black", linewidth=0.8, alpha=0.5, zorder=2)
                ring = ax.scatter(fx, fy, s=240, facecolors="none", edgecolors="black", linewidths=1.3, zorder=4,
                                  label="Pareto front (ringed)")  # fmt: skip
                ring.set_gid(f"pareto:{budget}:{name}")
            if not xs:
                why = "no held-out forgetting probe" if name == "forgetting" else "not recorded"
                ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", color="#555555")
            if not log:
                ax.axvline(0.0, color="#999999", linewidth=0.8, zorder=0)
                ax.margins(x=0.12)
            draw_baselines(ax, base, within=limits)
            by_reason: dict[str, list[str]] = {}
            for m, why in missing.items():
                by_reason.setdefault(why, []).append(m)
            note = "; ".join(f"{why}: {', '.join(ms)}" for why, ms in by_reason.items())
            xlabel = xlabel.format(probe=probe or "no probe")
            ax.set_xlabel(textwrap.fill(f"{xlabel}\n(no point: {note})" if note else xlabel, 48), fontsize=9)
            ax.grid(alpha=0.3)
            if b == 0 or wraps > 1:
                ax.set_title(f"vs {name}", fontsize=10)
        for row in grid[b * wraps : (b + 1) * wraps]:
            row[0].set_ylim(*limits)
            row[0].set_ylabel(f"test {metric}\nbudget {labels.get(_effective(group), budget)}")
    rows = "one row" if wraps == 1 else f"{wraps} rows"
    fig.suptitle(f"{task}: metric vs cost, {rows} per budget", fontsize=11)
    legend_outside(fig)
    return fig


def _effective(group: dict[str, MethodCell]) -> int | None:
    for c in group.values():
        if not _budget_free(c.method):
            return cl.effective_budget(c.records[0])
    return None


def tradeoff_plot(task: str, records: Sequence[Record], base: Baselines | None, base_note: str) -> Plot | None:
    """The task's trade-off figure, or None when no budget has ``MIN_METHODS`` methods."""
    cells = tradeoff_cells(records)
    if not cells:
        return None
    spec = spec_of(task)
    metric = spec.primary_metric
    probe = main_probe(cells)
    figures = [
        tradeoff_figure(task, metric, cells, spec.higher_is_better, base, budget_labels(records), per_row)
        for per_row in (len(COST_AXES), NARROW_PER_ROW)
    ]
    caption = (
        f"{task}: test {metric} against forgetting (the drop of "
        + (f"{probe} from the untouched backbone; a probe on another scale is left off" if probe else "a probe")
        + ", and only a probe apart from the task's data counts), trainable parameters, peak memory (as recorded: "
        "process peak RSS on the CPU, CUDA max allocated on a GPU) and training time (log axes; 0 at its own tick), "
        f"one row per budget (two in a narrow window) with at least {MIN_METHODS} methods. Rings: the Pareto front "
        f"of each panel (higher {metric}, lower cost); the y range is the methods' own (at least {MIN_SPAN}), so a "
        "baseline line shows only where it falls inside. Bars: 95% t-interval over seeds (none with one seed)."
    )
    free = sorted({m for g in cells.values() for m in g if _budget_free(m)})
    if free:
        caption += f" {', '.join(free)} reads no training example: the same cell in every row."
    alt = f"{task}: test {metric} against forgetting, trainable parameters, peak memory and training time"
    return Plot(alt, f"{caption} {base_note}", *map(png_base64, figures))


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


def dot_chart_figure(rows: Sequence[DotRow]) -> Figure:
    """Task on the y axis (top to bottom), metric on the x axis, one marker per method (and budget, written beside
    it, where it is not the row's) with its interval, the task's majority and chance as short black segments."""
    most = max((sum(max(1, len(s.x)) for s in row.series) for row in rows), default=1)
    fig = new_figure(11.0, 0.9 + len(rows) * max(0.6, 0.17 * most))
    ax = fig.add_subplot()
    shown: list[float] = []
    for r, row in enumerate(rows):
        centre = -float(r)
        entries = [(s, k) for s in row.series for k in range(max(1, len(s.x)))]
        for j, (s, k) in enumerate(entries):
            y = centre + 0.7 * ((j + 0.5) / len(entries) - 0.5)
            i = s.y[k]
            label = s.method if s.kind == "curve" else f"{s.method} (no training)"
            draw_point(ax, [i.mean], [y], s.method, f"dot:{row.task}:{s.method}", xerr=yerr([i]), label=label)
            if s.x and s.x[k] != row.budget:  # fewshot at another budget than the row's
                text = row.budget_text(s.x[k])
                ax.annotate(text, (i.mean, y), xytext=(6, 0), textcoords="offset points", fontsize=7, va="center")
            shown += interval_ends(i)
        draw_baselines(ax, row.base, horizontal=False, span=(centre - 0.45, centre + 0.45))
        shown += baseline_values(row.base)
        if r:
            ax.axhline(centre + 0.5, color="#dddddd", linewidth=0.8, zorder=0)
    signed = any((metric_range(row.metric) or (0.0, 1.0))[0] < 0 for row in rows)
    ax.set_xlim(*value_limits(shown, "mcc" if signed else "accuracy"))
    ax.set_ylim(-len(rows) + 0.5, 0.5)
    ax.set_yticks(
        [-float(r) for r in range(len(rows))], [f"{w.task}\n{w.metric}, budget {w.budget_text(w.budget)}" for w in rows]
    )
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("test metric (each task's primary metric, named under it)")
    ax.set_title("Tasks with one budget: primary test metric per method", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    legend_outside(fig)
    return fig


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
    caption = (
        f"The {len(rows)} tasks whose trained methods ran at one budget, gathered in one chart: each task's primary "
        "test metric (named under the task; the tasks' metrics differ, so compare methods within a row), mean over "
        "seeds with its 95% t-interval (none with one seed). Black segments: the task's majority class (dashed) and "
        "chance (dotted) on its test labels; one segment where they coincide."
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


def shift_figure(tasks: dict[str, list[Record]]) -> Figure:
    nrows = math.ceil(len(tasks) / 4)
    ncols = math.ceil(len(tasks) / nrows)  # balanced rows: 5 panels as 3 + 2, not 4 + 1
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
                ax.annotate(f"{x:,}", (i.mean, j.mean), xytext=(5, 4), textcoords="offset points", fontsize=7)
            shown += [v for i in (*s.y, *o.y) for v in interval_ends(i)]
        lo, hi = value_limits(shown, metric)
        diagonal = {"color": "black", "linestyle": "--", "linewidth": 0.9, "zorder": 1, "gid": "identity"}
        ax.plot([lo, hi], [lo, hi], label="y = x (no loss out of domain)", **diagonal)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal", adjustable="box")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel(f"in-domain test {metric}", fontsize=9)
        ax.set_ylabel(f"out-of-domain test {metric}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle("Domain shift: in domain vs out of domain", fontsize=11)
    legend_outside(fig)
    return fig


def shift_plot(records: Sequence[Record]) -> Plot | None:
    tasks = shift_tasks(records)
    if not tasks:
        return None
    caption = (
        "Domain shift: each method's in-domain test metric (x) against its out-of-domain one (y), one panel per "
        "task; below the dashed diagonal a method does worse out of domain, by the vertical distance (gap/ in the "
        "tables). Bars: 95% t-interval over seeds (none with one seed); a budget is written beside its point when a "
        "task has several."
    )
    alt = "in-domain vs out-of-domain test metric per method for " + ", ".join(tasks)
    return Plot(alt, caption, png_base64(shift_figure(tasks)))


def _budget_free(method: str) -> bool:
    """A method that reads no training example (zeroshot): the same cell at every budget."""
    return catalog.method_class(method).budget_free
