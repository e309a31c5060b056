"""The cost trade-offs of one task: its primary test metric against forgetting (only held-out probes,
``bench.probes.held_out``, as ``bench.analysis.cells.method_cells`` counts them, and only the probe most methods share:
fewshot's causal LM reads WikiText perplexity, another scale), trainable parameters, peak memory, training time and,
beside them, serving time per test example (``bench.report.plots.serving``: the inference side, where the methods
that train nothing are the slowest), log axes but forgetting, one row per budget with at least ``MIN_METHODS``
methods.

Each panel rings the Pareto front of the means (``bench.analysis.cells.pareto_front`` on the panel's points, as
``pareto_fronts`` does: higher metric, lower cost). The means ignore the noise, so every point carries its 95%
interval over seeds (serving time: the range over seeds, sideways) and a dashed ring marks a method off that front
whose interval still reaches every method that dominates it: its place behind the front is within noise. Markers
that would overlap are nudged apart sideways (``style.nudge``).
"""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench import catalog
from bench.analysis import cells as cl
from bench.analysis.stats import Interval
from bench.report.plots.serving import ENCODING, MERGED, serving_cost
from bench.report.plots.style import (
    MIN_SPAN,
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
    nudge,
    png_base64,
    spec_of,
    value_limits,
    yerr,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from bench.analysis.baselines import Baselines
    from bench.analysis.cells import MethodCell
    from bench.core.record import Record

NARROW_PER_ROW = 2  # panels per row in the layout for windows under NARROW_PX: 720 px wide instead of 1440
MIN_METHODS = 3  # a front of two points says no more than the table: fewer methods at a budget, no trade-off row
SERVING = "serving time"
COST_AXES = {  # panel name (bench.analysis.cells.PARETO_AXES, and serving) -> (x label, factor to display, log axis)
    "forgetting": ("forgetting drop on {probe} (> 0: forgot)", 1.0, False),
    "trainable params": ("trainable parameters", 1.0, True),
    "peak memory": ("peak memory (MiB)", 2.0**-20, True),
    "train time": ("training time (s)", 1.0, True),
    SERVING: ("serving time per test example (ms)", 1.0, True),
}
PANEL_W, NARROW_PANEL_W, PANEL_H, FRAME_W = 2.8, 3.4, 2.9, 0.4  # inches: a panel (wide, narrow); the y label


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


def cost_points(
    group: dict[str, MethodCell], name: str, probe: str | None
) -> tuple[dict[str, float], dict[str, str], dict[str, tuple[float, float]]]:
    """One panel's x values in display units (method -> x), why the others have no point, and (serving time) the
    range over seeds of each x."""
    xs, missing, spread = {}, {}, {}
    for m, c in sorted(group.items(), key=lambda kv: method_rank(kv[0])):
        if name == SERVING:
            cost, why = serving_cost(c.records)
            if cost is None:
                missing[m] = why
            else:
                xs[m], spread[m] = cost.median_ms, (cost.low_ms, cost.high_ms)
            continue
        x = getattr(c, cl.PARETO_AXES[name][0]) * COST_AXES[name][1]
        if not math.isfinite(x):
            missing[m] = "not measured"
        elif name == "forgetting" and _probe(c) != probe:
            missing[m] = f"on {_probe(c)}"
        else:
            xs[m] = x
    return xs, missing, spread


def within_noise(points: dict[str, tuple[Interval, float]], front: Sequence[str], higher_is_better: bool) -> list[str]:
    """The methods off the Pareto front of the means that no method beats beyond noise: every method at most as
    costly whose mean is better has an interval that overlaps theirs (without intervals, the means decide)."""

    def ends(i: Interval) -> tuple[float, float]:
        return (i.low, i.high) if i.has_interval else (i.mean, i.mean)

    out = []
    for m, (i, cost) in points.items():
        if m in front:
            continue
        lo, hi = ends(i)
        beaten = any(
            (ends(j)[0] > hi if higher_is_better else ends(j)[1] < lo)
            for n, (j, c) in points.items()
            if n != m and c <= cost
        )
        if not beaten:
            out.append(m)
    return out


def _short(v: float) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= size:
            return f"{v / size:g}{unit}"
    return f"{v:g}"


def log_axis(ax: Axes, xs: dict[str, float], extent: Sequence[float] = ()) -> dict[str, float]:
    """A log x axis over the panel's values (and ``extent``: the ends of their bars), ticks at decades (or 1-2-5
    steps over a narrow range) labelled 1k, 2M; a value of 0 (fewshot's trainable parameters) sits at a "0" tick
    left of the rest. Returns where to draw."""
    from matplotlib.ticker import NullLocator

    positive = [x for x in xs.values() if x > 0]
    if not positive:
        return xs
    lo, hi = min(positive + [x for x in extent if x > 0]), max(positive + list(extent))
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
    ax.xaxis.set_minor_locator(NullLocator())  # labelled decades only: unlabelled minors cost time and say little
    return {m: x if x > 0 else zero_at for m, x in xs.items()}


def _linear_axis(ax: Axes, xs: dict[str, float]) -> None:
    values = [0.0, *xs.values()]
    lo, hi = min(values), max(values)
    pad = 0.14 * (hi - lo) if hi > lo else 0.05
    ax.set_xlim(lo - pad, hi + pad)
    ax.axvline(0.0, color="#999999", linewidth=0.8, zorder=0)


def _nudged(ax: Axes, xs: dict[str, float], ys: dict[str, float], log: bool) -> dict[str, float]:
    """``xs`` moved sideways where markers would overlap (``nudge``, in axes fractions of the panel; kept inside)."""
    (left, right), (lo, hi) = ax.get_xlim(), ax.get_ylim()
    names = list(xs)

    def frac(x: float) -> float:
        return math.log(x / left) / math.log(right / left) if log else (x - left) / (right - left)

    def back(f: float) -> float:
        return left * (right / left) ** f if log else left + f * (right - left)

    at = {m: frac(xs[m]) for m in names}
    offsets = nudge([(at[m], (ys[m] - lo) / (hi - lo)) for m in names])
    moved = {m: at[m] + off for m, off in zip(names, offsets, strict=True)}
    return {
        m: back(min(max(f, 0.02), 0.98)) if off else xs[m] for (m, f), off in zip(moved.items(), offsets, strict=True)
    }


def draw_panel(
    ax: Axes,
    group: dict[str, MethodCell],
    name: str,
    probe: str | None,
    higher_is_better: bool,
    gid: str,
    labels: dict[str, str] | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """One cost panel: the methods' points (nudged apart; ``labels``: their legend labels), the Pareto front of the
    means ringed and the methods within noise of it ringed dashed. Returns where each method was drawn and why the
    others were not."""
    xlabel, _, log = COST_AXES[name]
    values, missing, spread = cost_points(group, name, probe)
    xs = log_axis(ax, values, [v for r in spread.values() for v in r]) if log else values
    if not log and values:
        _linear_axis(ax, values)
    means = {m: group[m].primary.mean for m in xs}
    xs = _nudged(ax, xs, means, log) if xs else xs
    front = cl.pareto_front({m: (means[m], values[m]) for m in values}, (higher_is_better, False))
    noise = within_noise({m: (group[m].primary, values[m]) for m in values}, front, higher_is_better)
    for m, x in xs.items():
        i = group[m].primary
        xerr = None
        if m in spread:  # the range over seeds, around the median (drawn where the median was nudged to)
            low, high = spread[m]
            xerr = [[x * (1 - low / values[m])], [x * (high / values[m] - 1)]]
        draw_point(ax, [x], [i.mean], m, f"{gid}:{m}", xerr=xerr, yerr=yerr([i]), label=(labels or {}).get(m))
    front.sort(key=lambda m: xs[m])
    if front:
        fx, fy = [xs[m] for m in front], [means[m] for m in front]
        ax.plot(fx, fy, color="black", linewidth=0.8, alpha=0.5, zorder=2)
        ring = ax.scatter(fx, fy, s=240, facecolors="none", edgecolors="black", linewidths=1.3, zorder=4,
                          label="Pareto front of the means (ring)")  # fmt: skip
        ring.set_gid(gid.replace("point:", "pareto:", 1))
    if noise:
        ring = ax.scatter([xs[m] for m in noise], [means[m] for m in noise], s=170, facecolors="none",
                          edgecolors="#555555", linewidths=1.0, linestyles="--", zorder=4,
                          label="off it by the means only: within noise (dashed ring)")  # fmt: skip
        ring.set_gid(gid.replace("point:", "noise:", 1))
    if not xs:
        why = "no held-out forgetting probe" if name == "forgetting" else "not recorded"
        ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", color="#555555")
    by_reason: dict[str, list[str]] = {}
    for m, why in missing.items():
        by_reason.setdefault(why, []).append(m)
    note = "; ".join(f"{why}: {', '.join(ms)}" for why, ms in by_reason.items())
    xlabel = xlabel.format(probe=probe or "no probe")
    ax.set_xlabel(textwrap.fill(f"{xlabel}\n(no point: {note})" if note else xlabel, 42), fontsize=9)
    ax.grid(alpha=0.3)
    return xs, missing


def tradeoff_figure(
    task: str,
    metric: str,
    cells: dict[int, dict[str, MethodCell]],
    higher_is_better: bool,
    base: Baselines | None,
    labels: dict[int, str],
    per_row: int = len(COST_AXES),
) -> Figure:
    """One row of the cost panels per budget; ``per_row`` 2 wraps each budget's panels onto rows of two, a figure
    half as wide for narrow windows (``NARROW_PER_ROW``). The legend sits above the panels."""
    wraps = math.ceil(len(COST_AXES) / per_row)
    backbones = {m: backbone_of(c.records) for g in cells.values() for m, c in g.items()}
    named = len(set(backbones.values()) - {""}) > 1  # name each method's backbone where they differ
    legend = {m: method_label(m, backbone if named else "") for m, backbone in backbones.items()}
    methods = sorted({m for g in cells.values() for m in g}, key=method_rank)
    legend_rows = math.ceil((len(methods) + 4) / (6 if per_row > NARROW_PER_ROW else 3))
    panel_w = PANEL_W if per_row > NARROW_PER_ROW else NARROW_PANEL_W
    fig = new_figure(FRAME_W + panel_w * per_row, 0.5 + 0.2 * legend_rows + PANEL_H * len(cells) * wraps)
    grid = fig.subplots(len(cells) * wraps, per_row, squeeze=False, sharey="row")
    probe = main_probe(cells)
    for b, (budget, group) in enumerate(cells.items()):
        # the methods' spread sets the range here (at least MIN_SPAN): what a trade-off compares is the methods;
        # a baseline outside it is named at the first panel's edge
        limits = value_limits([v for c in group.values() for v in interval_ends(c.primary)], metric)
        for k, name in enumerate(COST_AXES):
            ax = grid[b * wraps + k // per_row][k % per_row]
            ax.set_ylim(*limits)
            draw_panel(ax, group, name, probe, higher_is_better, f"point:{budget}:{name}", legend)
            off = draw_baselines(ax, base, within=limits)
            if k % per_row == 0:
                note_off_axis(ax, off, limits)
            if b == 0 or wraps > 1:
                ax.set_title(f"vs {name}", fontsize=10)
        for row in grid[b * wraps : (b + 1) * wraps]:
            row[0].set_ylabel(f"test {metric}\nbudget {labels.get(_effective(group), budget)}", fontsize=9)
        for ax in grid[(b + 1) * wraps - 1][len(COST_AXES) - (wraps - 1) * per_row :]:
            fig.delaxes(ax)  # the last row's empty slots
    rows = "one row" if wraps == 1 else f"{wraps} rows"
    title = f"{task}: metric vs training and serving cost, {rows} per budget"
    legend_outside(fig, where="top", ncols=6 if per_row > NARROW_PER_ROW else 3, title=title)
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
        "process peak RSS on the CPU, CUDA max allocated on a GPU), training time and serving time (log axes; 0 at "
        f"its own tick), one row per budget (rows of two in a narrow window) with at least {MIN_METHODS} methods. "
        + _serving_caption(cells)
        + f" Rings: the Pareto front of each panel (higher {metric}, lower cost) drawn from the means alone; where "
        "a ring's lead over its neighbours is smaller than their error bars it is within noise. Dashed rings: "
        "methods that only the means put behind the front (every method that dominates them has an overlapping "
        f"interval). Bars: 95% t-interval over seeds (none with one seed). The y range is the methods' own (at "
        f"least {MIN_SPAN}); a baseline outside it is named at the edge. Overlapping markers are nudged apart "
        "sideways."
    )
    free = sorted({m for g in cells.values() for m in g if _budget_free(m)})
    if free:
        caption += f" {', '.join(free)} reads no training example: the same cell in every row."
    alt = f"{task}: test {metric} against forgetting, trainable parameters, peak memory, training and serving time"
    return Plot(alt, f"{caption} {base_note}", *map(png_base64, figures))


def _serving_caption(cells: dict[int, dict[str, MethodCell]]) -> str:
    """What the serving panel's x is, in the words of the rates the cells used."""
    costs = [serving_cost(c.records)[0] for g in cells.values() for c in g.values()]
    sources = {s for c in costs if c for s in c.sources}
    devices = sorted({d for c in costs if c for d in c.devices})
    text = (
        "Serving time: milliseconds per test example from the throughput measured on the test split at the "
        f"evaluation batch size ({', '.join(devices) or 'no device recorded'}; not one request's latency), median "
        "over seeds with their range as sideways bars"
    )
    if MERGED in sources:
        text += "; a method with a merged form (LoRA, IA3 folded into the backbone) at its merged rate"
    if ENCODING in sources:
        text += (
            "; where features came from the feature cache, the test pass read stored features, so the backbone's "
            "encoding rate in the same cell stands for it"
        )
    return text + "."


def _budget_free(method: str) -> bool:
    """A method that reads no training example (zeroshot): the same cell at every budget."""
    return catalog.method_class(method).budget_free
