"""The report's figures, as PNGs in base64 for the page (``Plot``).

- Per task (``task_figures``): sample efficiency (``efficiency``: the primary test metric vs labelled examples on a
  log axis, budget 0, "all", at the training-set size), when the methods that train have two or more budgets; then
  the trade-offs against training and serving cost (``tradeoff``, ``serving``) at each budget with at least three
  methods.
- Across tasks (``cross_task_figures``, ``crosstask``): tasks whose trained methods have one budget, as one dot chart
  (a panel per metric) instead of many near-empty plots, and in-domain vs out-of-domain for the shift tasks.

Points are the mean over seeds with the 95% t-interval (``bench.analysis.stats.seed_summary``; none with one seed) as
error bars. Methods that do not train are not trends: a method that reads no training example (``Method.budget_free``,
zeroshot) is one labelled horizontal line; fewshot's seeds are draws of demonstrations from a budget, so each budget
is its own marker, never joined. What every figure shares (styles, baselines, axes, sizes, encoding) is ``style``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench.report.plots.crosstask import dot_chart_plot, shift_plot
from bench.report.plots.efficiency import efficiency_plot, efficiency_series, trained_budgets
from bench.report.plots.style import NARROW_PX, Plot, spec_of, task_baselines
from bench.report.plots.tradeoff import tradeoff_plot

if TYPE_CHECKING:
    from bench.core.record import Record
    from bench.core.store import Store

__all__ = ["NARROW_PX", "Plot", "cross_task_figures", "single_budget_tasks", "task_figures"]


def task_figures(task: str, records: Sequence[Record], store: Store | None = None) -> list[Plot]:
    """The task's figures for the report: sample efficiency (when its trained methods have two or more budgets;
    otherwise the task is in ``cross_task_figures``) and the cost trade-offs."""
    rs = [r for r in records if r.ok and r.task == task]
    if not rs:
        return []
    metric = spec_of(task).primary_metric
    base, base_note = task_baselines(task, rs, store)
    plots = [efficiency_plot(task, rs, metric, base, base_note), tradeoff_plot(task, rs, base, base_note)]
    return [p for p in plots if p is not None]


def single_budget_tasks(records: Sequence[Record]) -> list[str]:
    """Tasks whose trained methods have one budget (or none train): they go to the cross-task dot chart."""
    by_task: dict[str, list[Record]] = {}
    for r in records:
        if r.ok:
            by_task.setdefault(r.task, []).append(r)
    return sorted(t for t, rs in by_task.items() if len(trained_budgets(efficiency_series(rs, "accuracy"))) <= 1)


def cross_task_figures(records: Sequence[Record], store: Store | None = None) -> list[Plot]:
    """The single-budget tasks as one dot chart, and in-domain vs out-of-domain for the shift tasks."""
    ok = [r for r in records if r.ok]
    out = []
    single = single_budget_tasks(ok)
    if single:
        out.append(dot_chart_plot({t: [r for r in ok if r.task == t] for t in single}, store))
    shift = shift_plot(ok)
    if shift is not None:
        out.append(shift)
    return out
