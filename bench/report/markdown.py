"""The per-task tables in Markdown (summary.md's "Per task", the README's results tables): the page's leaderboards
(``bench.report.leaderboard.board``, one builder for both) rendered as Markdown, so summary.md shows the same columns,
intervals (clipped to the metric's range), verdicts against the validation choice, row order and task order
(``bench.analysis.overview.task_rank``) as the page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bench.analysis.decision_map import Decision
from bench.analysis.flags import DEGENERATE_ROWS, legend
from bench.analysis.overview import method_rank, task_rank
from bench.analysis.tables import Row, spec_or_none
from bench.report.html import TD
from bench.report.leaderboard import AGAINST_NOTE, BOARD_FLAGS, CAVEATS, COSTS_NOTE, board


def _text(cell: TD) -> str:
    """A board cell as Markdown: its lines joined by "; " (each flag in brackets, "[degenerate: 1 of 3]"), no
    pipes."""
    lines = [line for line in cell.text.split("\n") if line]
    if "flag" in cell.cls.split():
        text = " ".join(f"[{line}]" for line in lines)
    else:
        text = "; ".join(lines)
    return text.replace("|", "/")


def task_table(task: str, rows: Sequence[Row], decisions: Sequence[Decision] = ()) -> tuple[list[str], list[list[str]]]:
    """(header, body) of one task's table as plain text: the page's leaderboard cells (``board``), row for row."""
    b = board(task, rows, spec_or_none(task), decisions)
    return b.header, [[_text(cell) for cell in line] for line in b.cells]


def markdown_tables(tables: Mapping[str, Sequence[Row]], decisions: Sequence[Decision] = ()) -> str:
    """Every task's table as Markdown, in the page's task order; ``decisions``: the report's decision map (for the
    column against the validation choice)."""
    parts = []
    for task in sorted(tables, key=task_rank):
        rows = tables[task]
        spec = spec_or_none(task)
        primary = spec.primary_metric if spec else "accuracy"
        header, body = task_table(task, rows, decisions)
        first = sorted(rows, key=lambda r: (method_rank(r.method), r.budget))[0]
        before = "not measured" if first.probe_before is None else f"{first.probe_before:.3f}"
        parts.append(f"**{task}** (primary: test/{primary}; forgetting probe: {first.probe}, base model {before})\n")
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|" + "---|" * len(header))
        parts.extend("| " + " | ".join(line) + " |" for line in body)
        if any(r.n_degenerate for r in rows):
            parts.append(f"\n{DEGENERATE_ROWS}")
        parts.append("")
    if parts:
        parts += [f"Flags: {legend(BOARD_FLAGS)}; {CAVEATS}.", "", AGAINST_NOTE, "", COSTS_NOTE, ""]
    return "\n".join(parts)
