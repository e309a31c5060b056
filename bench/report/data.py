"""The report's numbers, computed once (``ReportData``, ``build_report``), and the sections the HTML page and
summary.md share: the decision map, the sweeps and the Markdown summary. ``bench.report.page`` assembles the page.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.analysis.overview import Overview, build_overview, method_rank, task_rank
from bench.core.record import Record
from bench.core.store import Store
from bench.report.html import TD, table

if TYPE_CHECKING:
    from bench.analysis.decision_map import Decision
    from bench.report.heatmap import Heatmap
    from bench.report.leaderboard import LeaderRow

METHODOLOGY = (
    "Test metrics are from the checkpoint selected on validation (test is evaluated once per cell). Intervals are "
    "95% t-intervals over seeds; one seed has none. Forgetting drop = probe on the untouched pretrained backbone "
    "minus probe on the adapted backbone (positive = forgot). Peak memory: process peak RSS on the CPU, CUDA max "
    "allocated on a GPU. Throughput excludes warm-up steps; for cached-feature methods it includes the one "
    "backbone pass."
)


@dataclass
class ReportData:
    """Everything the page and summary.md show, computed once from the records."""

    suite: str
    records: list[Record]
    notes: list[str]
    warnings: list[str]
    overview: Overview
    tables: dict[str, list[dict[str, Any]]]  # ``summarise``: per task, the rows the plots draw
    decisions: list[Decision]  # empty without a store (no stored predictions to pair)
    heatmap: Heatmap
    boards: dict[str, list[LeaderRow]]  # registered task -> leaderboard rows
    store: Store | None = None  # where the records came from (the figures read stored predictions)


def build_report(
    suite: str,
    records: list[Record],
    notes: list[str] | None = None,
    source: str | Path | None = None,
    warnings: list[str] | None = None,
    store: Store | None = None,
    labels_from_data: bool = True,
    n_read: int | None = None,
) -> ReportData:
    """The report's numbers. With the ``store`` the records came from, the decision map (paired tests need the
    per-example predictions stored beside the records); ``labels_from_data``: read test labels from the data
    root for the did-not-learn baseline when no predictions are stored; ``n_read``: the records the folder held,
    when ``records`` are fewer (the suite's current cells)."""
    from bench.analysis import derived
    from bench.analysis.decision_map import decision
    from bench.analysis.stats import CachedPredictions
    from bench.core.registry import TASKS, load_all
    from bench.report.heatmap import build_heatmap
    from bench.report.leaderboard import build_rows
    from bench.report.page import summarise

    load_all()
    cached = CachedPredictions(store or Store())
    known = [r for r in records if r.ok and r.task in TASKS]
    cells = derived.method_cells(known)
    order = sorted(cells, key=lambda tb: (task_rank(tb[0]), tb[1] == 0, tb[1]))
    decisions = [decision(cached, cells[tb], derived.registry_spec(tb[0])) for tb in order] if store else []
    by_task: dict[str, dict[int, Any]] = {}
    for (task, budget), c in cells.items():
        by_task.setdefault(task, {})[budget] = c
    boards = {}
    for task in sorted(by_task, key=task_rank):
        task_records = [r for r in known if r.task == task]
        labels = derived.stored_test_labels(cached, task_records)
        if labels is None and labels_from_data:
            labels = derived.data_test_labels(task_records[0])
        boards[task] = build_rows(cached, by_task[task], derived.registry_spec(task), labels)
    warnings = list(warnings or [])
    return ReportData(
        suite=suite,
        records=records,
        notes=list(notes or []),
        warnings=warnings,
        overview=build_overview(suite, records, source, unreadable=len(warnings), n_read=n_read),
        tables=summarise(records),
        decisions=decisions,
        heatmap=build_heatmap(cells, derived.registry_spec, {(d.task, d.budget): d for d in decisions}),
        boards=boards,
        store=store,
    )


def summary_markdown(data: ReportData) -> str:
    """summary.md: the page's overview, decision map and table at a glance, then the per-task tables."""
    from bench.report.heatmap import LEGEND
    from bench.report.page import markdown_tables

    lines = [f"# adaptbench report: suite {data.suite}", "", *data.overview.markdown(), ""]
    lines += [f"- {note}" for note in data.notes] + [f"- warning: {w}" for w in data.warnings]
    if data.decisions:
        lines += ["", "## Decision map", "", "| task | budget | best | not significantly worse | worse | left out |"]
        lines.append("|---|---|---|---|---|---|")
        for d in data.decisions:
            lines.append("| " + " | ".join(c.replace("|", "/") for c in decision_cells(d)) + " |")
    if data.heatmap.rows:
        lines += ["", "## Primary test metric at a glance", "", LEGEND, "", *data.heatmap.markdown()]
    lines += ["", "## Per task", "", markdown_tables(data.records)]
    return "\n".join(lines)


def decision_cells(d: Decision) -> list[str]:
    """task, budget, best, not significantly worse, worse, left out (methods grouped by the reason)."""
    best = (d.best or d.note) + (f" ({d.note})" if d.best and d.note else "")
    reasons: dict[str, list[str]] = {}
    for method, why in d.excluded.items():
        reasons.setdefault(why, []).append(method)
    left_out = "; ".join(
        f"{', '.join(sorted(ms, key=method_rank))}: {why}" for why, ms in sorted(reasons.items(), key=lambda kv: kv[0])
    )
    return [d.task, str(d.budget or "all"), best, ", ".join(d.not_worse), ", ".join(d.worse), left_out]


def decision_html(decisions: list[Decision]) -> list[str]:
    """The decision map (``bench.analysis.decision_map``, the same as ``adaptbench summary``) as an HTML table."""
    from bench.report.text import rule_text

    esc = html.escape
    out = [
        "<h2>Decision map</h2>",
        f"<p class='meta'>Best method by mean primary test metric, then a paired bootstrap of every other method "
        f"against it. {esc(rule_text())}</p>",
    ]
    rows = [[TD(c, cls="l") for c in decision_cells(d)] for d in decisions]
    out.append(table(["task", "budget", "best", "not significantly worse", "worse", "left out"], rows))
    return out


def sweeps_html(records: list[Record]) -> list[str]:
    """The sweeps behind the tuned cells (``bench.analysis.sweeps``): values tried, validation scores, the choice."""
    from bench.analysis.sweeps import sweep_rows

    rows = sweep_rows(records)
    if not rows:
        return []
    lines = []
    for row in sorted(rows, key=lambda row: (task_rank(row.task), row.method)):
        tried = "; ".join(  # each value with its score on one line ("lr=5e-05: 0.788" never breaks at the "-")
            f"<span class='nw'>{html.escape(v)}: {'–' if s is None else f'{s:.3f}'}</span>" for v, s in row.tried
        )
        chosen = row.chosen + (" (at the grid's edge)" if row.at_edge else "")
        cells = [row.task, row.method, str(row.budget), ",".join(map(str, row.seeds)), row.on]
        lines.append([*(TD(c, cls="l") for c in cells), TD(tried, cls="l", raw=True), TD(chosen, cls="l")])
    header = ["task", "method", "budget", "seeds", "validation metric", "tried (mean validation score)", "chosen"]
    return [
        "<h2>Hyperparameter sweeps</h2>",
        "<p class='meta'>Each tuned method's value was chosen once per task on validation (mean over the sweep's "
        "seeds, at the sweep's budget) and reused for every budget and seed of its block. The sweep cells are "
        "records of their own; they are not in the tables below. A choice at the grid's edge may have a better "
        "value outside the grid.</p>",
        table(header, lines),
    ]
