"""The report's figures (matplotlib's object API on the Agg canvas: no pyplot state), as PNGs in base64 for the page.

- One (colour, marker) per method for the whole page, in the method registry's order (``method_styles``); every
  legend sits outside its axes (right of the panels), so it never covers a point or a label.
- Per task (``task_figures``): sample efficiency, the primary test metric vs labelled examples on a log axis (budget
  0, "all", at the training-set size: ``bench.analysis.cells.effective_budget``), when the methods that train have
  two or more budgets; then the cost trade-offs (``bench.report.plots.tradeoff``) at each budget with at least three
  methods.
- Across tasks (``cross_task_figures``): tasks whose trained methods have one budget, as one dot chart instead of
  many near-empty plots, and in-domain vs out-of-domain for the shift tasks.

Points are the mean over seeds with the 95% t-interval (``bench.analysis.stats.seed_summary``; none with one seed).
Methods that do not train are not trends: zeroshot reads no training example, so it is one horizontal line; fewshot's
seeds are draws of demonstrations from a budget, so each budget is its own marker, never joined. The majority-class and
chance lines (``bench.analysis.cells.baselines``, from the stored test labels or the data root) are drawn where the
labels can be had, and the y range keeps them and at least ``MIN_SPAN``, so a 0.007 difference does not fill the chart.
Builders return the ``Figure`` (tests inspect its artists; ids in ``gid``); ``png_base64`` encodes one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench import catalog
from bench.analysis import cells as cl
from bench.analysis.stats import Interval, seed_summary
from bench.report.plots.style import (
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
    style_of,
    trains,
    value_limits,
    yerr,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bench.analysis.baselines import Baselines
    from bench.core.record import Record


@dataclass(frozen=True)
class Series:
    """A method's points on the sample-efficiency plot. ``kind``: "curve" (it trains: lines join its budgets),
    "points" (it does not train: one marker per budget, not joined) or "reference" (it reads no training example:
    one horizontal line; ``x`` empty, ``y`` pools its seeds)."""

    method: str
    kind: str
    x: tuple[int, ...]
    y: tuple[Interval, ...]


# ------------------------------------------------------------------------------------ sample efficiency
def efficiency_series(records: Iterable[Record], metric: str, split: str = "test") -> list[Series]:
    """Per method (registry order), ``split/metric`` per effective budget over seeds, and how to draw it."""
    values: dict[str, dict[int, list[float]]] = {}
    for r in records:
        x = cl.effective_budget(r) if r.ok else None
        if x is not None:
            values.setdefault(r.method, {}).setdefault(x, []).append(r.metrics.get(f"{split}/{metric}", math.nan))
    out = []
    for method in sorted(values, key=method_rank):
        per_budget = values[method]
        if catalog.method_class(method).budget_free:
            pooled = seed_summary([v for vs in per_budget.values() for v in vs])
            out.append(Series(method, "reference", (), (pooled,)))
            continue
        xs = tuple(sorted(per_budget))
        kind = "curve" if trains(method) else "points"
        out.append(Series(method, kind, xs, tuple(seed_summary(per_budget[x]) for x in xs)))
    return out


def trained_budgets(series: Iterable[Series]) -> set[int]:
    return {x for s in series if s.kind == "curve" for x in s.x}


def efficiency_figure(
    task: str, series: Sequence[Series], metric: str, base: Baselines | None, labels: dict[int, str]
) -> Figure:
    fig = new_figure(9.5, 4.8)
    ax = fig.add_subplot()
    budgets = sorted({x for s in series for x in s.x})
    dodged = [s for s in series if s.kind != "reference"]
    for s in series:
        style = style_of(s.method)
        if s.kind == "reference":
            i = s.y[0]
            label = f"{s.method} (no training example)"
            line = ax.axhline(i.mean, color=style.colour, linestyle="--", linewidth=1.6, label=label)
            line.set_gid(f"reference:{s.method}")
            if i.has_interval:
                ax.axhspan(i.low, i.high, color=style.colour, alpha=0.12, linewidth=0)
            continue
        # neighbours at one budget are nudged apart (x 2^±0.15 at most) so their error bars do not overlap
        shift = 2 ** (0.3 * ((dodged.index(s) + 0.5) / len(dodged) - 0.5)) if len(dodged) > 1 else 1.0
        xs = [x * shift for x in s.x]
        means = [i.mean for i in s.y]
        joined = s.kind == "curve"
        label = s.method if joined else f"{s.method} (no training: draws per budget)"
        draw_point(ax, xs, means, s.method, f"{s.kind}:{s.method}", yerr=yerr(s.y), joined=joined, label=label)
        if joined and len(xs) > 1 and all(i.has_interval for i in s.y):
            ax.fill_between(xs, [i.low for i in s.y], [i.high for i in s.y], color=style.colour, alpha=0.12, lw=0)
    draw_baselines(ax, base)
    shown = [v for s in series for i in s.y for v in interval_ends(i)]
    ax.set_ylim(*value_limits(shown + baseline_values(base), metric))
    ax.set_xscale("log")
    if budgets:
        ax.set_xticks(budgets, [labels.get(b, f"{b:,}") for b in budgets])
        ax.set_xlim(budgets[0] / 1.6, budgets[-1] * 1.6)
    ax.minorticks_off()
    ax.set_xlabel("labelled training examples (log scale)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{task}: sample efficiency", fontsize=11)
    ax.grid(alpha=0.3)
    legend_outside(fig)
    return fig


def _efficiency_caption(task: str, series: Sequence[Series], metric: str, base_note: str, labels) -> str:
    seeds = sorted({i.n for s in series for i in s.y})
    pool = "; 'all' is the whole training pool" if any(v.startswith("all") for v in labels.values()) else ""
    if seeds[-1] <= 1:
        spread = "One seed per point: no interval."
    else:
        n = f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else f"{seeds[0]}"
        spread = f"Mean over seeds ({n} per point) with its 95% t-interval as bars and band (none with one seed)."
    parts = [f"{task}: test {metric} against labelled training examples (log axis{pool}). {spread}"]
    parts.append(" Points at one budget are nudged apart.")
    if any(s.kind == "reference" for s in series):
        parts.append(" Dashed coloured line: a method that reads no training example, the same at every budget.")
    if any(s.kind == "points" for s in series):
        parts.append(" Unjoined markers: a method that does not train; each budget is its own draw, not a trend.")
    return "".join(parts) + f" {base_note}"


def efficiency_plot(task: str, records: Sequence[Record], metric: str, base: Baselines | None, base_note: str):
    """The task's sample-efficiency ``Plot`` when its trained methods have two or more budgets, else None (the task
    is then in the cross-task dot chart)."""
    series = efficiency_series(records, metric)
    if len(trained_budgets(series)) <= 1:
        return None
    labels = budget_labels(records)
    fig = efficiency_figure(task, series, metric, base, labels)
    alt = f"{task}: test {metric} vs labelled training examples, one line per method that trains"
    return Plot(alt, _efficiency_caption(task, series, metric, base_note, labels), png_base64(fig))
