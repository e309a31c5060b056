"""What every figure of the report shares: one (colour, marker) per method for the whole page, in the method
registry's order; every legend outside its axes (right of the panels), so it never covers a point or a label; the
y range around the points, the intervals and the baselines, at least ``MIN_SPAN`` wide, inside the metric's range;
the majority-class and chance lines (``bench.analysis.cells.baselines``, from the stored test labels or the data
root); and the PNG encoding (``png_base64``) of the ``Figure`` builders (matplotlib's object API on the Agg canvas:
no pyplot state).
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

from bench import catalog
from bench.analysis import baselines as bl
from bench.analysis import cells as cl
from bench.analysis.overview import METHOD_ORDER
from bench.analysis.stats import Interval
from bench.catalog import METHODS
from bench.core.metrics import metric_range

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from bench.analysis.baselines import Baselines
    from bench.core.record import Record
    from bench.core.store import Store

DPI = 100  # figures are 9-13 in wide: 900-1300 px, legible at the page's 1300 px without scaling
NARROW_PX = 1150  # windows up to this wide get a figure's narrow layout (Plot.narrow): the wide one would shrink
MIN_SPAN = 0.1  # the least y range in metric units: a 0.007 difference takes 7% of the axis, not all of it
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


# ------------------------------------------------------------------------------------------------ styles
def method_order() -> list[str]:
    """``bench.analysis.overview.METHOD_ORDER`` first, then the other registered methods by name."""
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
    return catalog.method_class(method).trains


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
    low_bound, high_bound = metric_range(metric) or (0.0, 1.0)
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
    return catalog.spec(task) if catalog.known(task) else _Unregistered()


def task_baselines(task: str, records: Sequence[Record], store: Store | None) -> tuple[Baselines | None, str]:
    """The task's majority-class and chance scores and a sentence for the caption saying where the labels came
    from, or why there are no lines."""
    spec = spec_of(task)
    if isinstance(spec, _Unregistered):
        return None, "No majority-class or chance line: the task is not registered in this checkout."
    labels, source = (bl.stored_test_labels(store, records), "stored with the predictions") if store else (None, "")
    if labels is None and records:
        labels, source = bl.data_test_labels(records[0]), "read from the data root"
    if labels is None:
        return None, (
            "No majority-class or chance line: the test labels are neither stored with the records' predictions "
            "nor readable from the data root."
        )
    try:
        base = bl.of_labels(spec, labels)
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
        x = cl.effective_budget(r)
        if x is not None:
            out[x] = f"all ({x:,})" if r.budget == 0 else f"{x:,}"
    return out
