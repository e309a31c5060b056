"""The per-task tables as plain cells (``task_table``: summary.md, the README's results tables, and the page's table
for a task this checkout does not register) and as Markdown (``markdown_tables``). They render the rows of
``bench.analysis.tables``: every interval is the clipped one the page's leaderboards show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bench.analysis.flags import DEGENERATE_ROWS
from bench.analysis.overview import method_rank
from bench.analysis.stats import Interval
from bench.analysis.tables import Row, spec_or_none
from bench.core.record import TEST, metric_key

TABLE_COSTS = ["trainable params", "saved MiB", "peak mem MiB", "train ex/s", "eval ex/s", "train s"]


def _interval(i: Interval | None) -> str:
    return "–" if i is None else i.describe()


def _num(x: float, spec: str) -> str:
    return "–" if x != x else format(x, spec)  # NaN: not measured


def task_table(rows: Sequence[Row], primary: str) -> tuple[list[str], list[list[str]]]:
    """(header, body) of one task's table: a row per method and budget (method order, then budget), every test
    metric with its interval, costs and forgetting drops."""
    rows = sorted(rows, key=lambda r: (method_rank(r.method), r.budget))
    names = sorted({k for r in rows for k in r.metrics}, key=lambda k: (k != metric_key(TEST, primary), k))
    extra = sorted({name for r in rows for name in r.forgetting_extra})
    header = ["method", "budget", "seeds", *names, *TABLE_COSTS, "forgetting drop", *(f"drop {n}" for n in extra)]
    body = []
    for r in rows:
        if not r.probe_held_out:
            forget = "not held out (the probe reads this task's data)"
        elif r.forgetting is None:
            forget = "n/a (random init)"
        else:
            forget = r.forgetting.describe()
        mark = f" [degenerate: {r.n_degenerate} of {r.n}]" if r.n_degenerate else ""
        mem, delta = r.costs["peak_mem_bytes"] / 2**20, r.costs["peak_mem_delta_bytes"] / 2**20
        body.append(
            [
                r.method + mark,
                str(r.budget or "all"),
                str(r.n),
                *[_interval(r.metrics.get(m)) for m in names],
                f"{r.trainable:,.0f} ({100 * r.trainable_share:.2f}%)",
                _num(r.saved_bytes / 2**20, ".2f"),
                f"{_num(mem, ',.0f')} (+{_num(delta, ',.0f')})",
                _num(r.costs["train_samples_per_s"], ",.1f"),
                _num(r.costs["eval_samples_per_s"], ",.1f"),
                _num(r.costs["train_time_s"], ",.1f"),
                forget,
                *[_interval(r.forgetting_extra.get(n)) for n in extra],
            ]
        )
    return header, body


def markdown_tables(tables: Mapping[str, Sequence[Row]]) -> str:
    """Every task's table as Markdown (summary.md's "Per task", the README's results tables)."""
    parts = []
    for task, rows in sorted(tables.items()):
        spec = spec_or_none(task)
        primary = spec.primary_metric if spec else "accuracy"
        header, body = task_table(rows, primary)
        first = sorted(rows, key=lambda r: (method_rank(r.method), r.budget))[0]
        before = "not measured" if first.probe_before is None else f"{first.probe_before:.3f}"
        parts.append(f"**{task}** (primary: test/{primary}; forgetting probe: {first.probe}, base model {before})\n")
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|" + "---|" * len(header))
        parts.extend("| " + " | ".join(line) + " |" for line in body)
        if any(r.n_degenerate for r in rows):
            parts.append(f"\n{DEGENERATE_ROWS}")
        parts.append("")
    return "\n".join(parts)
