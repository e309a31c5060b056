"""The report's section "Across (task, budget) rows": the performance profile and the mean ranks over the rows every
compared method ran in (``bench.analysis.profile``), as one figure (the profile beside the ranks; stacked in a
narrow window) and a table per method, with the Markdown form of the table.

It stands beside the table at a glance, whose mean rank counts only the rows a method ran in: here a row a method
did not run in counts against it (profile) or is not used for anyone (ranks).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING

from bench.analysis.overview import budget_text
from bench.analysis.profile import Profile, RankView
from bench.report.html import TD, table
from bench.report.plots.style import Plot, legend_outside, new_figure, png_base64, style_of

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from bench.report.data import ReportData

esc = html.escape
TAUS = (0.01, 0.02, 0.05, 0.10)  # the table's columns: within this much of the row's best, in metric units
ANCHOR, TITLE = "across-rows", "Across (task, budget) rows"


def shown(data: ReportData) -> bool:
    """Two or more rows and two or more methods: otherwise there is nothing across rows to compare."""
    p = data.profile
    return len(p.rows) >= 2 and len(p.methods) >= 2


def _rows_text(rows) -> str:
    return ", ".join(f"{r.task} @ {budget_text(r.budget)}" for r in rows)


# ------------------------------------------------------------------------------------------------ figure
def _profile_axes(ax: Axes, p: Profile) -> None:
    for method in p.methods:
        xs, ys = p.steps(method)
        style = style_of(method)
        (line,) = ax.plot(
            xs, ys, drawstyle="steps-post", color=style.colour, linewidth=1.6, marker=style.marker, markersize=5,
            markevery=list(range(len(xs) - 1)), label=method, zorder=3,
        )  # fmt: skip
        line.set_gid(f"profile:{method}")
    ax.set_xscale("function", functions=(lambda x: x**0.5, lambda y: y**2))
    ticks = [t for t in (0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0) if t <= p.tau_max * 1.02]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlim(0, p.tau_max * 1.02)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("τ: gap to the row's best mean, in metric units (square-root axis)", fontsize=9)
    ax.set_ylabel(f"share of the {len(p.rows)} rows within τ", fontsize=9)
    ax.set_title("Performance profile (a row not run counts as not within τ)", fontsize=10)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)


def _rank_axes(ax: Axes, v: RankView) -> None:
    k = len(v.methods)
    for y, method in enumerate(v.methods):
        style = style_of(method)
        m, lo, hi = v.mean_rank[method], v.low[method], v.high[method]
        bars = ax.errorbar(
            [m], [-y], xerr=[[m - lo], [hi - m]], color=style.colour, marker=style.marker, markersize=6,
            capsize=3, linestyle="none", zorder=3,
        )  # fmt: skip
        bars.lines[0].set_gid(f"rank:{method}")
    ax.set_yticks([-y for y in range(k)], list(v.methods), fontsize=8)
    ax.set_ylim(-k + 0.5, 0.5)
    ax.set_xlim(0.7, k + 0.3)
    ax.set_xticks(range(1, k + 1))
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("mean rank (1 = best mean in every row)", fontsize=9)
    ax.set_title(f"Mean rank over the {len(v.rows)} rows all {k} methods ran in, 95% bootstrap", fontsize=10)
    ax.grid(axis="x", alpha=0.3)


def profile_figure(p: Profile, v: RankView | None, narrow: bool = False) -> Figure:
    """The profile and, when some methods share two rows, the ranks: side by side, or stacked (``narrow``)."""
    k = len(v.methods) if v else 0
    rank_height = 0.9 + 0.22 * k
    if narrow:
        fig = new_figure(7.4, 4.2 + (rank_height + 0.3 if v else 0))
        grid = fig.add_gridspec(2 if v else 1, 1, height_ratios=[4.2, rank_height] if v else [1])
        axes = [fig.add_subplot(grid[0, 0])] + ([fig.add_subplot(grid[1, 0])] if v else [])
    else:
        fig = new_figure(12.0, max(4.4, rank_height))
        grid = fig.add_gridspec(1, 2 if v else 1, width_ratios=[1.5, 1] if v else [1])
        axes = [fig.add_subplot(grid[0, 0])] + ([fig.add_subplot(grid[0, 1])] if v else [])
    _profile_axes(axes[0], p)
    if v:
        _rank_axes(axes[1], v)
    legend_outside(fig)
    for legend in fig.legends:
        for text in legend.get_texts():
            text.set_fontsize(8)
    return fig


def _caption(p: Profile, v: RankView | None) -> str:
    text = (
        f"The profile: for each method, the share of all {len(p.rows)} (task, budget) rows in which its mean over "
        "seeds is within τ of the row's best mean (τ: the absolute difference in the row's primary test metric, "
        "in its better direction; the primary metrics are bounded scores, [0, 1] or [-1, 1]). A row the method "
        "did not run in counts as not within τ for every τ, so a method that ran in one row and won it reaches at "
        f"most 1/{len(p.rows)}. At τ = 0 a curve starts at the share of rows the method is best in (ties count for "
        "each). Means only: a gap smaller than the seeds' noise is not a difference (the decision map tests them)."
    )
    if v is None:
        return text + " No two methods ran in the same two rows, so there are no mean ranks over common rows."
    left = "; ".join(f"{m} ({n} of {len(p.rows)})" for m, n in v.left_out.items())
    return text + (
        f" The ranks: mean rank (1 = best, ties share the average) over the {len(v.rows)} rows in which every one of "
        f"the {len(v.methods)} methods shown ran ({_rows_text(v.rows)}); the methods and rows are chosen to compare "
        "the most (method, row) scores. Bars: 95% percentile intervals of a two-level bootstrap "
        f"({v.n_boot} replicates): rows resampled with replacement, and within each drawn row every method's seeds "
        "resampled before ranking."
        + (f" Not ranked (too few shared rows; rows run in brackets): {left}." if left else "")
    )


def profile_plot(p: Profile, v: RankView | None) -> Plot:
    alt = "Performance profile of every method across (task, budget) rows" + (
        ", and mean ranks over the rows all compared methods ran in" if v else ""
    )
    return Plot(alt, _caption(p, v), png_base64(profile_figure(p, v)), png_base64(profile_figure(p, v, narrow=True)))


# ------------------------------------------------------------------------------------------------ table
def header(p: Profile, v: RankView | None) -> list[str]:
    out = ["method", f"rows run (of {len(p.rows)})", "best in", *(f"within {t:g}" for t in TAUS)]
    out.append(f"profile area (τ 0–{p.tau_max:.2f})")
    return out + ([f"mean rank over the {len(v.rows)} common rows [95%]"] if v else [])


def cells(p: Profile, v: RankView | None, method: str) -> list[str]:
    n = len(p.rows)
    out = [method, str(p.ran(method)), f"{round(p.share(method, 0) * n)}/{n}"]
    out += [f"{round(p.share(method, t) * n)}/{n}" for t in TAUS]
    out.append(f"{p.area(method):.2f}")
    if v:
        out.append(
            f"{v.mean_rank[method]:.2f} [{v.low[method]:.2f}, {v.high[method]:.2f}]"
            if method in v.mean_rank
            else "not ranked"
        )
    return out


TABLE_NOTE = (
    "Per method: the rows it ran in, and in how many of all rows its mean is the best (τ = 0) or within τ of the "
    "best; profile area = the mean of its profile over τ from 0 to the largest gap shown (1 = best in every row; a "
    "row not run adds 0). Sorted by the area. Unlike the mean rank at a glance, which averages only over the rows a "
    "method ran in, neither number rewards a method for running in few rows."
)


def profile_html(data: ReportData, figure_html: Callable[[Plot], str]) -> list[str]:
    """The section; ``figure_html`` renders a ``Plot`` as the page's other figures are."""
    p, v = data.profile, data.rank_view
    rows = [[TD(c, cls="l" if i == 0 else "nw") for i, c in enumerate(cells(p, v, m))] for m in p.methods]
    return [
        f"<section id='{ANCHOR}'><h2>{esc(TITLE)}</h2>",
        f"<p class='meta'>{len(p.rows)} rows: {esc(_rows_text(p.rows))}.</p>",
        figure_html(profile_plot(p, v)),
        table(header(p, v), rows),
        f"<p class='meta'>{esc(TABLE_NOTE)}</p>",
        "</section>",
    ]


def profile_markdown(data: ReportData) -> list[str]:
    p, v = data.profile, data.rank_view
    head = header(p, v)
    lines = [f"## {TITLE}", "", f"{len(p.rows)} rows: {_rows_text(p.rows)}.", "", "| " + " | ".join(head) + " |"]
    lines.append("|---" * len(head) + "|")
    lines += ["| " + " | ".join(cells(p, v, m)) + " |" for m in p.methods]
    return [*lines, "", TABLE_NOTE, "", _caption(p, v)]


__all__ = ["ANCHOR", "TITLE", "profile_html", "profile_markdown", "shown"]
