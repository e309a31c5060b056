"""The sample-efficiency figure: a task's primary test metric against labelled training examples on a log axis
(budget 0, "all", at the training-set size: ``bench.analysis.cells.effective_budget``), when the methods that train
have two or more budgets; and the per-method series (``efficiency_series``) the other figures read too.

Points are the mean over seeds with the 95% t-interval (``bench.analysis.stats.seed_summary``; none with one seed) as
error bars, neighbours at one budget nudged apart; no shaded bands, whose overlaps blend into colours no legend
names. Methods that do not train are not trends: a method that reads no labelled example (zeroshot) is one labelled
horizontal line, its interval as two thin dotted lines; fewshot's seeds are draws of demonstrations from a budget, so
each budget is its own marker, never joined. The y range fits the points and their intervals (at least ``MIN_SPAN``);
the majority-class and chance lines are drawn where they fall inside it and otherwise named at its edge. Where the
methods run on different backbones, the legend names each one's. Builders return the ``Figure`` (tests inspect its
artists; ids in ``gid``); ``png_base64`` encodes one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench import catalog
from bench.analysis import cells as cl
from bench.analysis.stats import Interval, seed_summary
from bench.report.plots.style import (
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
    style_of,
    trains,
    value_limits,
    yerr,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from bench.analysis.baselines import Baselines
    from bench.core.record import Record


@dataclass(frozen=True)
class Series:
    """A method's points on the sample-efficiency plot. ``kind``: "curve" (it trains: lines join its budgets),
    "points" (it does not train: one marker per budget, not joined) or "reference" (it reads no training example:
    one horizontal line; ``x`` empty, ``y`` pools its seeds). ``backbone``: the one most of its records ran on."""

    method: str
    kind: str
    x: tuple[int, ...]
    y: tuple[Interval, ...]
    backbone: str = ""


# ------------------------------------------------------------------------------------ sample efficiency
def efficiency_series(records: Iterable[Record], metric: str, split: str = "test") -> list[Series]:
    """Per method (registry order), ``split/metric`` per effective budget over seeds, and how to draw it."""
    values: dict[str, dict[int, list[float]]] = {}
    kept: dict[str, list[Record]] = {}
    for r in records:
        x = cl.effective_budget(r) if r.ok else None
        if x is not None:
            values.setdefault(r.method, {}).setdefault(x, []).append(r.metrics.get(f"{split}/{metric}", math.nan))
            kept.setdefault(r.method, []).append(r)
    out = []
    for method in sorted(values, key=method_rank):
        per_budget, backbone = values[method], backbone_of(kept[method])
        if catalog.method_class(method).budget_free:
            pooled = seed_summary([v for vs in per_budget.values() for v in vs])
            out.append(Series(method, "reference", (), (pooled,), backbone))
            continue
        xs = tuple(sorted(per_budget))
        kind = "curve" if trains(method) else "points"
        out.append(Series(method, kind, xs, tuple(seed_summary(per_budget[x]) for x in xs), backbone))
    return out


def trained_budgets(series: Iterable[Series]) -> set[int]:
    return {x for s in series if s.kind == "curve" for x in s.x}


def several_backbones(series: Iterable[Series]) -> bool:
    return len({s.backbone for s in series if s.backbone}) > 1


def efficiency_figure(
    task: str, series: Sequence[Series], metric: str, base: Baselines | None, labels: dict[int, str]
) -> Figure:
    fig = new_figure(9.5, 4.8)
    ax = fig.add_subplot()
    budgets = sorted({x for s in series for x in s.x})
    named = several_backbones(series)
    limits = value_limits([v for s in series for i in s.y for v in interval_ends(i)], metric)
    ax.set_ylim(*limits)
    ax.set_xscale("log")
    if budgets:
        ax.set_xticks(budgets, [labels.get(b, f"{b:,}") for b in budgets])
        ax.set_xlim(budgets[0] / 1.6, budgets[-1] * 1.6)
    dodged = [s for s in series if s.kind != "reference"]
    drawn: list[tuple[float, Interval]] = []  # (x, interval) of every marker, for placing the reference labels
    for s in dodged:
        # neighbours at one budget are nudged apart (x 2^±0.15 at most) so their error bars do not overlap
        shift = 2 ** (0.3 * ((dodged.index(s) + 0.5) / len(dodged) - 0.5)) if len(dodged) > 1 else 1.0
        xs = [x * shift for x in s.x]
        joined = s.kind == "curve"
        note = "" if joined else "not trained"
        label = method_label(s.method, s.backbone if named else "", note)
        draw_point(ax, xs, [i.mean for i in s.y], s.method, f"{s.kind}:{s.method}", yerr=yerr(s.y), joined=joined,
                   label=label)  # fmt: skip
        drawn += zip(xs, s.y, strict=True)
    for s in series:
        if s.kind == "reference":
            legend = method_label(s.method, s.backbone if named else "", "no labelled data")
            _reference(ax, s, legend, method_label(s.method, s.backbone if named else ""), drawn, budgets)
    note_off_axis(ax, draw_baselines(ax, base, within=limits), limits)
    ax.minorticks_off()
    ax.set_xlabel("labelled training examples (log scale)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{task}: sample efficiency", fontsize=10)
    ax.grid(alpha=0.3)
    legend_outside(fig)
    return fig


def _reference(ax: Axes, s: Series, legend: str, label: str, drawn: Sequence[tuple[float, Interval]], budgets) -> None:
    """A method that reads no labelled example: a dashed line at its mean across the axes, its interval as two thin
    dotted lines (no fill to blend with others), and its name written on the line where the fewest error bars
    cross it: between two budgets or at an end."""
    style, i = style_of(s.method), s.y[0]
    line = ax.axhline(i.mean, color=style.colour, linestyle="--", linewidth=1.6, label=legend, zorder=2)
    line.set_gid(f"reference:{s.method}")
    if i.has_interval:
        for v in (i.low, i.high):
            ax.axhline(v, color=style.colour, linestyle=":", linewidth=0.9, zorder=2).set_gid(f"interval:{s.method}")
    (left, right), (lo, hi) = ax.get_xlim(), ax.get_ylim()
    width = ax.figure.get_figwidth() * ax.figure.dpi * 0.6  # the axes' share of the figure, roughly
    half = len(label) * 2.5 / width + 0.01  # half the label's width at 8 pt, in axes fractions

    def frac(x: float) -> float:
        return math.log(x / left) / math.log(right / left)

    def crowd(centre: float) -> int:  # error bars crossing the label's box
        margin = 0.1 * (hi - lo)
        return sum(
            1
            for x, j in drawn
            if abs(frac(x) - centre) < half + 0.02
            and min(v for v in interval_ends(j) if math.isfinite(v)) - margin < i.mean
            and i.mean < max(v for v in interval_ends(j) if math.isfinite(v)) + margin
        )

    gaps = [(frac(a) + frac(b)) / 2 for a, b in itertools.pairwise(budgets)]
    centre = min([*gaps, 0.99 - half, 0.01 + half], key=crowd)
    above = i.mean < lo + 0.85 * (hi - lo)
    ax.annotate(label, (centre, i.mean), xycoords=ax.get_yaxis_transform(), xytext=(0, 3 if above else -3),
                textcoords="offset points", ha="center", va="bottom" if above else "top", fontsize=8,
                color=style.colour, gid=f"label:{s.method}",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.75, "pad": 1})  # fmt: skip


def _efficiency_caption(task: str, series: Sequence[Series], metric: str, base_note: str, labels) -> str:
    seeds = sorted({i.n for s in series for i in s.y})
    pool = "; 'all' is the whole training pool" if any(v.startswith("all") for v in labels.values()) else ""
    if seeds[-1] <= 1:
        spread = "One seed per point: no interval."
    else:
        n = f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else f"{seeds[0]}"
        spread = f"Mean over seeds ({n} per point) with its 95% t-interval as error bars (none with one seed)."
    parts = [f"{task}: test {metric} against labelled training examples (log axis{pool}). {spread}"]
    parts.append(" Points at one budget are nudged apart sideways.")
    parts.append(" The y range fits the points and their intervals; a baseline outside it is named at its edge.")
    if any(s.kind == "reference" for s in series):
        parts.append(
            " Dashed coloured line, labelled: a method that reads no labelled example (the same at every budget); "
            "its dotted lines are its interval."
        )
    if any(s.kind == "points" for s in series):
        parts.append(" Unjoined markers: a method that does not train; each budget is its own draw, not a trend.")
    if several_backbones(series):
        parts.append(" The methods run on different backbones, named in brackets.")
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
