"""The report's figures (matplotlib's object API on the Agg canvas: no pyplot state), as PNGs in base64 for the page.

- One (colour, marker) per method for the whole page, in the method registry's order (``method_styles``); every
  legend sits outside its axes (right of the panels), so it never covers a point or a label.
- Per task (``task_figures``): sample efficiency, the primary test metric vs labelled examples on a log axis (budget
  0, "all", at the training-set size: ``bench.analysis.derived.effective_budget``), when the methods that train have
  two or more budgets; then the cost trade-offs (``bench.report.plots.tradeoff``) at each budget with at least three
  methods.
- Across tasks (``cross_task_figures``): tasks whose trained methods have one budget, as one dot chart instead of
  many near-empty plots, and in-domain vs out-of-domain for the shift tasks.

Points are the mean over seeds with the 95% t-interval (``bench.analysis.stats.seed_summary``; none with one seed).
Methods that do not train are not trends: zeroshot reads no training example, so it is one horizontal line; fewshot's
seeds are draws of demonstrations from a budget, so each budget is its own marker, never joined. The majority-class and
chance lines (``bench.analysis.derived.baselines``, from the stored test labels or the data root) are drawn where the
labels can be had, and the y range keeps them and at least ``MIN_SPAN``, so a 0.007 difference does not fill the chart.
Builders return the ``Figure`` (tests inspect its artists; ids in ``gid``); ``png_base64`` encodes one.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from bench.analysis import derived
from bench.analysis.stats import Interval, seed_summary
from bench.core.metrics import METRIC_RANGE

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from bench.analysis.derived import Baselines
    from bench.core.record import Record
    from bench.core.store import Store

DPI = 100  # figures are 9-13 in wide: 900-1300 px, legible at the page's 1300 px without scaling
NARROW_PX = 1150  # windows up to this wide get a figure's narrow layout (Plot.narrow): the wide one would shrink
MIN_SPAN = 0.1  # the least y range in metric units: a 0.007 difference takes 7% of the axis, not all of it
BUDGET_FREE = {"zeroshot"}  # reads no training example: the same cell at every budget
BASELINE_LINES = {"majority": (0, (6, 3)), "chance": (0, (1, 2))}  # black, so no method's colour is taken
# tab10's colours (less its grey, which the baselines' black and grey would blur), then saturated ones apart from
# them, so the 16 registered methods have 16 colours legible on white; then tab20's light shades and Dark2. 27
# colours and 13 markers (coprime) give every method a distinct (colour, marker) pair for 351 methods.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#000075", "#800000", "#469990", "#e6ab02", "#f032e6", "#ff9896", "#7b2d6b",
    "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#dbdb8d", "#9edae5",
    "#1b9e77", "#d95f02", "#7570b3", "#66a61e",
)  # fmt: skip
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p", "d")
FALLBACK_COLOURS = ("#7f7f7f", "#4d4d4d", "#b0b0b0")  # methods outside the registry: greys, marker from the name


class Style(NamedTuple):
    colour: str
    marker: str


class Plot(NamedTuple):
    """One figure for the page: its alt text, its caption and the PNG as base64; ``narrow``, when a figure is too
    wide to read in a window under ``NARROW_PX``, the same figure laid out narrower for it."""

    alt: str
    caption: str
    png: str
    narrow: str = ""


@dataclass(frozen=True)
class Series:
    """A method's points on the sample-efficiency plot. ``kind``: "curve" (it trains: lines join its budgets),
    "points" (it does not train: one marker per budget, not joined) or "reference" (it reads no training example:
    one horizontal line; ``x`` empty, ``y`` pools its seeds)."""

    method: str
    kind: str
    x: tuple[int, ...]
    y: tuple[Interval, ...]


# ------------------------------------------------------------------------------------------------ styles
def method_order() -> list[str]:
    """``bench.report.page.METHOD_ORDER`` first, then the other registered methods by name."""
    from bench.core.registry import METHODS, load_all
    from bench.report.page import METHOD_ORDER

    load_all()
    return [*METHOD_ORDER, *(m for m in METHODS.names() if m not in METHOD_ORDER)]


@cache
def method_styles() -> dict[str, Style]:
    return {m: Style(PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]) for i, m in enumerate(method_order())}


def style_of(method: str) -> Style:
    styles = method_styles()
    if method in styles:
        return styles[method]
    h = int(hashlib.sha256(method.encode()).hexdigest(), 16)  # stable across plots and runs
    return Style(FALLBACK_COLOURS[h % len(FALLBACK_COLOURS)], MARKERS[h % len(MARKERS)])


def method_rank(method: str) -> tuple[int, str]:
    order = method_order()
    return (order.index(method) if method in order else len(order), method)


def trains(method: str) -> bool:
    from bench.core.registry import METHODS, load_all

    load_all()
    return METHODS.get(method).trains if method in METHODS else True


# ---------------------------------------------------------------------------------------------- helpers
def new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_base64(fig: Figure) -> str:
    """The figure as a 256-colour PNG (a third of matplotlib's RGBA bytes, no visible loss on these flat charts:
    the page carries every figure inline, some twice), base64."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    with Image.open(buf) as rgba:
        flat = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba.convert("RGBA")).convert("RGB")
    out = io.BytesIO()
    flat.quantize(256, method=Image.Quantize.MEDIANCUT).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def legend_outside(fig: Figure) -> None:
    """One legend for the figure, right of every panel (constrained layout makes room); duplicates merged."""
    entries: dict[str, Any] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    order = method_order()  # methods in registry order, then the lines (baselines, Pareto, y = x) as drawn
    labels = sorted(entries, key=lambda label: order.index(label.split()[0]) if label.split()[0] in order else 999)
    if labels:
        handles = [entries[label] for label in labels]
        fig.legend(handles, labels, loc="outside right upper", fontsize=9, frameon=False)


def value_limits(values: Iterable[float], metric: str, min_span: float = MIN_SPAN) -> tuple[float, float]:
    """A range around ``values`` (points, interval ends, baselines) of at least ``min_span``, within the metric's
    bounds."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    low_bound, high_bound = METRIC_RANGE.get(metric, (0.0, 1.0))
    if not finite:
        return low_bound, high_bound
    lo, hi = min(finite), max(finite)
    pad = max(0.08 * (hi - lo), (min_span - (hi - lo)) / 2, 0.02)
    lo, hi = lo - pad, hi + pad
    if lo < low_bound:  # shift the window inside the bounds rather than shrink it
        lo, hi = low_bound, min(high_bound, hi + (low_bound - lo))
    if hi > high_bound:
        lo, hi = max(low_bound, lo - (hi - high_bound)), high_bound
    return lo, hi


def interval_ends(i: Interval) -> list[float]:
    return [i.mean, i.low, i.high]


def yerr(intervals: Sequence[Interval]) -> list[list[float]] | None:
    if not any(i.has_interval for i in intervals):
        return None
    return [
        [i.mean - i.low if i.has_interval else 0.0 for i in intervals],
        [i.high - i.mean if i.has_interval else 0.0 for i in intervals],
    ]


def draw_point(ax: Axes, xs, ys, method: str, gid: str, xerr=None, yerr=None, joined: bool = False, label=None):
    """A method's markers (joined by a line only when ``joined``) with error bars; ``gid`` names the marker line."""
    style = style_of(method)
    bars = ax.errorbar(
        xs, ys, xerr=xerr, yerr=yerr, color=style.colour, marker=style.marker, markersize=6.5, capsize=3,
        linestyle="-" if joined else "none", linewidth=1.6, label=label or method, zorder=3,
    )  # fmt: skip
    bars.lines[0].set_gid(gid)
    return bars


def baseline_values(base: Baselines | None) -> list[float]:
    return [] if base is None else [v for v in (base.majority, base.chance) if math.isfinite(v)]


def draw_baselines(
    ax: Axes,
    base: Baselines | None,
    horizontal: bool = True,
    span: tuple[float, float] = (0, 1),
    within: tuple[float, float] | None = None,
) -> None:
    """Majority-class and chance lines (one line when they coincide, as for AUROC); vertical segments over
    ``span`` (data units) for a dot chart's row; only those inside ``within`` when given."""
    if base is None:
        return
    lines = {"majority": base.majority, "chance": base.chance}
    if math.isfinite(base.majority) and abs(base.majority - base.chance) < 1e-9:
        lines = {"majority": base.majority}
    for name, value in lines.items():
        if not math.isfinite(value) or (within and not within[0] <= value <= within[1]):
            continue
        label = "majority class" if name == "majority" else "chance"
        kw = {"color": "black", "linestyle": BASELINE_LINES[name], "linewidth": 1.0, "label": label, "zorder": 1}
        artist = ax.axhline(value, **kw) if horizontal else ax.vlines(value, *span, **kw)
        artist.set_gid(name)


# ------------------------------------------------------------------------------------------- task info
@dataclass(frozen=True)
class _Unregistered:  # records of a task this checkout does not register: what a plot needs, by default
    primary_metric: str = "accuracy"
    higher_is_better: bool = True
    kind: str = "classification"


def spec_of(task: str):
    from bench.core.registry import TASKS, load_all

    load_all()
    return TASKS.get(task).spec if task in TASKS else _Unregistered()


def task_baselines(task: str, records: Sequence[Record], store: Store | None) -> tuple[Baselines | None, str]:
    """The task's majority-class and chance scores and a sentence for the caption saying where the labels came
    from, or why there are no lines."""
    spec = spec_of(task)
    if isinstance(spec, _Unregistered):
        return None, "No majority-class or chance line: the task is not registered in this checkout."
    labels, source = (
        (derived.stored_test_labels(store, records), "stored with the predictions") if store else (None, "")
    )
    if labels is None and records:
        labels, source = derived.data_test_labels(records[0]), "read from the data root"
    if labels is None:
        return None, (
            "No majority-class or chance line: the test labels are neither stored with the records' predictions "
            "nor readable from the data root."
        )
    try:
        base = derived.baselines(spec, labels)
    except ValueError as e:  # a metric without a chance level
        return None, f"No majority-class or chance line: {e}."
    return base, (
        f"Black lines: majority class (dashed) and chance (dotted) on the {base.n_items} test labels ({source}); one "
        "line where they coincide."
    )


def budget_labels(records: Iterable[Record]) -> dict[int, str]:
    """Effective budget -> tick label ("all (N)" for budget 0)."""
    out: dict[int, str] = {}
    for r in records:
        x = derived.effective_budget(r)
        if x is not None:
            out[x] = f"all ({x:,})" if r.budget == 0 else f"{x:,}"
    return out


# ------------------------------------------------------------------------------------ sample efficiency
def efficiency_series(records: Iterable[Record], metric: str, split: str = "test") -> list[Series]:
    """Per method (registry order), ``split/metric`` per effective budget over seeds, and how to draw it."""
    values: dict[str, dict[int, list[float]]] = {}
    for r in records:
        x = derived.effective_budget(r) if r.ok else None
        if x is not None:
            values.setdefault(r.method, {}).setdefault(x, []).append(r.metrics.get(f"{split}/{metric}", math.nan))
    out = []
    for method in sorted(values, key=method_rank):
        per_budget = values[method]
        if method in BUDGET_FREE:
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


# ---------------------------------------------------------------------------------------------- entry points
def task_figures(task: str, records: Sequence[Record], store: Store | None = None) -> list[Plot]:
    """The task's figures for the report: sample efficiency (when its trained methods have two or more budgets;
    otherwise the task is in ``cross_task_figures``) and the cost trade-offs."""
    from bench.report.plots.tradeoff import tradeoff_plot

    rs = [r for r in records if r.ok and r.task == task]
    if not rs:
        return []
    metric = spec_of(task).primary_metric
    base, base_note = task_baselines(task, rs, store)
    series = efficiency_series(rs, metric)
    out = []
    if len(trained_budgets(series)) > 1:
        labels = budget_labels(rs)
        fig = efficiency_figure(task, series, metric, base, labels)
        alt = f"{task}: test {metric} vs labelled training examples, one line per method that trains"
        out.append(Plot(alt, _efficiency_caption(task, series, metric, base_note, labels), png_base64(fig)))
    tradeoff = tradeoff_plot(task, rs, base, base_note)
    if tradeoff is not None:
        out.append(tradeoff)
    return out


def single_budget_tasks(records: Sequence[Record]) -> list[str]:
    """Tasks whose trained methods have one budget (or none train): they go to the cross-task dot chart."""
    by_task: dict[str, list[Record]] = {}
    for r in records:
        if r.ok:
            by_task.setdefault(r.task, []).append(r)
    return sorted(t for t, rs in by_task.items() if len(trained_budgets(efficiency_series(rs, "accuracy"))) <= 1)


def cross_task_figures(records: Sequence[Record], store: Store | None = None) -> list[Plot]:
    """The single-budget tasks as one dot chart, and in-domain vs out-of-domain for the shift tasks."""
    from bench.report.plots.tradeoff import dot_chart_plot, shift_plot

    ok = [r for r in records if r.ok]
    out = []
    single = single_budget_tasks(ok)
    if single:
        out.append(dot_chart_plot({t: [r for r in ok if r.task == t] for t in single}, store))
    shift = shift_plot(ok)
    if shift is not None:
        out.append(shift)
    return out
