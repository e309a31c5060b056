"""What every figure of the report shares: one (colour, marker) per method for the whole page, in the method
registry's order, every pair of the 16 registered methods' colours far apart; legend labels that name a method's
backbone where a figure's methods differ in it (``method_label``); every legend outside its axes, so it never covers
a point or a label; the value range around the points and their intervals (at least ``MIN_SPAN`` wide, inside the
metric's range), not stretched to a baseline far below them; the majority-class and chance lines
(``bench.analysis.cells.baselines``, from the stored test labels or the data root), drawn where they fall inside
that range and otherwise named at the axis' edge (``note_off_axis``); the sideways nudge that keeps overlapping
markers apart (``nudge``); and the PNG encoding (``png_base64``) of the ``Figure`` builders (matplotlib's object API
on the Agg canvas: no pyplot state). Figures are drawn at ``DPI`` with 8-10 pt text, no wider than ``WIDE_MAX_PX``,
with a narrow layout no wider than ``NARROW_MAX_PX`` when the wide one is wider, so each is read at >= 75% of its
size in a 1400 px and an 800 px window.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
from collections import Counter
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

DPI = 100  # a figure is drawn at its pixel size (7-15 in: 700-1500 px), its text at 8-10 pt
NARROW_PX = 1150  # windows up to this wide get a figure's narrow layout (Plot.narrow): the wide one would shrink
WIDE_MAX_PX = 1490  # a figure's widest: shown at >= 75% above NARROW_PX (a 1300 px column less 2 rem of padding)
NARROW_MAX_PX = 1000  # the widest figure an 800 px window shows at >= 75% (768 px of column, a scrollbar less)
MIN_SPAN = 0.1  # the least y range in metric units: a 0.007 difference takes 7% of the axis, not all of it
BASELINE_LINES = {"majority": (0, (6, 3)), "chance": (0, (1, 2))}  # black, so no method's colour is taken
# 16 colours for the 16 registered methods, tab10's blue, orange, green and red first (the default suite's trained
# methods), the rest picked from the xkcd colours of mid lightness (L* 28-72: legible on white, apart from the
# baselines' black) to keep every pair far apart (CIEDE2000 >= 19, CIE76 >= 25, RGB >= 68); then 11 lighter ones for
# methods registered later. 13 filled shapes, then the same hollow (white inside), give the 16 methods 16 shapes; with
# 27 colours every method up to the 702nd has its own (colour, shape, fill).
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#8d5eb7", "#645403", "#fb5ffc", "#c9b003",
    "#13bbaf", "#152eff", "#8c0034", "#0a5f38", "#a75e09", "#fd798f", "#8f99fb", "#751973",
    "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#dbdb8d", "#9edae5",
    "#1b9e77", "#d95f02", "#7570b3", "#66a61e",
)  # fmt: skip
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p", "d")  # no near-twins ("h"/"H", "o"/"8")
FALLBACK_COLOURS = ("#7f7f7f", "#4d4d4d", "#b0b0b0")  # methods outside the registry: greys, marker from the name


class Style(NamedTuple):
    colour: str
    marker: str
    hollow: bool = False  # white inside, the colour on the edge


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
    n = len(MARKERS)
    return {
        m: Style(PALETTE[i % len(PALETTE)], MARKERS[i % n], (i // n) % 2 == 1) for i, m in enumerate(method_order())
    }


def style_of(method: str) -> Style:
    styles = method_styles()
    if method in styles:
        return styles[method]
    h = int(hashlib.sha256(method.encode()).hexdigest(), 16)  # stable across plots and runs
    return Style(FALLBACK_COLOURS[h % len(FALLBACK_COLOURS)], MARKERS[h % len(MARKERS)], h % 2 == 1)


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


def legend_outside(fig: Figure, where: str = "right", ncols: int = 1, title: str = "") -> None:
    """One legend for the figure, right of every panel (``where`` "top": above them, in ``ncols`` columns, headed
    by ``title``, the figure's title, which a suptitle would overlap there), where constrained layout makes room;
    duplicates merged."""
    entries: dict[str, Any] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    order = method_order()  # methods in registry order, then the lines (baselines, Pareto, y = x) as drawn
    labels = sorted(entries, key=lambda label: order.index(label.split()[0]) if label.split()[0] in order else 999)
    if labels:
        handles = [entries[label] for label in labels]
        loc = "outside upper center" if where == "top" else "outside right upper"
        fig.legend(handles, labels, loc=loc, ncols=ncols if where == "top" else 1, fontsize=9, frameon=False,
                   title=title or None, title_fontsize=10)  # fmt: skip
    elif title:
        fig.suptitle(title, fontsize=10)


def backbone_of(records: Iterable[Record]) -> str:
    """The backbone most of ``records`` ran on ("" for none)."""
    counts = Counter(r.backbone for r in records if r.backbone)
    return counts.most_common(1)[0][0] if counts else ""


def method_label(method: str, backbone: str = "", note: str = "") -> str:
    """A legend label: the method first (legends sort by it), then its backbone and a note in brackets."""
    extra = "; ".join(x for x in (backbone, note) if x)
    return f"{method} ({extra})" if extra else method


def nudge(
    points: Sequence[tuple[float, float]], gap: float = 0.03, step: float = 0.03, most: float = 0.12
) -> list[float]:
    """Sideways offsets, in axes fractions, that keep markers (and their error bars) apart: points closer than
    ``gap`` across and ``3 * gap`` up or down (axes fractions) form a cluster, spread ``step`` apart around its
    centre (a crowd over ``most`` at most, so no point leaves the axes' margin); a lone point keeps 0."""
    order = sorted(range(len(points)), key=lambda k: points[k])
    clusters: list[list[int]] = []
    for k in order:
        near = next((c for c in clusters if any(_close(points[k], points[j], gap) for j in c)), None)
        if near is None:
            clusters.append([k])
        else:
            near.append(k)
    out = [0.0] * len(points)
    for c in clusters:
        each = min(step, most / max(len(c) - 1, 1))
        for rank, k in enumerate(c):
            out[k] = each * (rank - (len(c) - 1) / 2)
    return out


def _close(a: tuple[float, float], b: tuple[float, float], gap: float) -> bool:
    return abs(a[0] - b[0]) < gap and abs(a[1] - b[1]) < 3 * gap


def value_limits(values: Iterable[float], metric: str, min_span: float = MIN_SPAN) -> tuple[float, float]:
    """A range around ``values`` (the points and their interval ends) of at least ``min_span``, within the metric's
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
        markerfacecolor="white" if style.hollow else style.colour, markeredgewidth=1.6 if style.hollow else 1.0,
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
) -> list[tuple[str, float]]:
    """Majority-class and chance lines (one line when they coincide, as for AUROC); vertical segments over
    ``span`` (data units) for a dot chart's row; only those inside ``within`` when given. Returns the ones left
    out, (name, value), for ``note_off_axis``."""
    if base is None:
        return []
    lines = {"majority class": base.majority, "chance": base.chance}
    if math.isfinite(base.majority) and abs(base.majority - base.chance) < 1e-9:
        lines = {"majority class": base.majority}
    off = []
    for label, value in lines.items():
        if not math.isfinite(value):
            continue
        if within and not within[0] <= value <= within[1]:
            off.append((label, value))
            continue
        name = "majority" if label == "majority class" else "chance"
        kw = {"color": "black", "linestyle": BASELINE_LINES[name], "linewidth": 1.0, "label": label, "zorder": 1}
        artist = ax.axhline(value, **kw) if horizontal else ax.vlines(value, *span, **kw)
        artist.set_gid(name)
    return off


def note_off_axis(ax: Axes, off: Sequence[tuple[str, float]], limits: tuple[float, float], at: float | None = None):
    """Name the baselines outside the value range at its edge: bottom or top left of a y range, or (``at``: a dot
    chart row's y) at the right end of that row of an x range. A baseline far below the points is a number here,
    not a range stretched to reach it."""
    box = {"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1}
    notes = []
    for below in (True, False):
        mine = [(name, v) for name, v in off if (v < limits[0]) == below]
        if not mine:
            continue
        same = len(mine) == 2 and abs(mine[0][1] - mine[1][1]) < 1e-9
        text = ", ".join(f"{name} {v:.3f}" for name, v in mine) if not same else f"majority = chance {mine[0][1]:.3f}"
        if at is None:
            arrow, where = ("↓", "below") if below else ("↑", "above")
            ax.text(0.01, 0.015 if below else 0.985, f"{arrow} {text}: {where} the axis", transform=ax.transAxes,
                    ha="left", va="bottom" if below else "top", fontsize=8, bbox=box, gid="off-axis")  # fmt: skip
        else:
            notes.append(f"{text}: {'left' if below else 'right'} of the axis")
    if notes:
        ax.text(0.995, at, "; ".join(notes), transform=ax.get_yaxis_transform(), ha="right", va="center", fontsize=8,
                color="#333333", bbox=box, gid="off-axis")  # fmt: skip


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
