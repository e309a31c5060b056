"""One task's leaderboard for the report: the rows of ``bench.analysis.tables`` (per method and budget, the mean and
95% interval over seeds of every test metric, the backbone the cells ran on, the gain over scratch, costs, forgetting
and flags), sortable by any column; below it, each row's records in a collapsed drill-down (hyperparameters, the
sweep that chose them, environment, git sha, record file).

Flags are ``bench.analysis.flags``' (computed and explained there), shown as ``board_flags`` says: "degenerate: k of
n", "probe not held out" when the forgetting probe reads the task's own data, and no few-seeds (the seeds column).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bench import catalog
from bench.analysis.flags import NOT_HELD_OUT
from bench.analysis.sweeps import sweep_rows
from bench.analysis.tables import Row
from bench.core.record import TEST, metric_key
from bench.report.html import TD, anchor, table

if TYPE_CHECKING:
    from bench.core.api import TaskSpec
    from bench.core.record import Record

# the flags a leaderboard shows (its legend); few-seeds is left out: the seeds column says it
BOARD_FLAGS = (
    "did-not-learn",
    "degenerate",
    "negative-transfer",
    "still-improving k/n",
    "grid-edge k/n",
    NOT_HELD_OUT,
)


def board_flags(row: Row) -> list[str]:
    """The row's flags as the leaderboard shows them: "degenerate: k of n", "probe not held out", no few-seeds."""
    flags = [f for f in row.flags if f != "few-seeds"]
    flags = [f"degenerate: {row.n_degenerate} of {row.n}" if f == "degenerate" else f for f in flags]
    return [*flags, NOT_HELD_OUT] if not row.probe_held_out else flags


def leaderboard_html(task: str, rows: Sequence[Row], spec: TaskSpec) -> str:
    """The sortable table, then the drill-down of every row's records."""
    primary = metric_key(TEST, spec.primary_metric)
    metrics = sorted({k for row in rows for k in row.metrics}, key=lambda k: (k != primary, k))
    header = ["method", "budget", "backbone", "seeds", *(f"{m} [95%]" for m in metrics)]
    header += ["gain over scratch [95%]", "trainable params", "saved MiB", "peak mem MiB", "train s", "wall s"]
    header += ["forgetting drop [95%]", "flags"]
    body = []
    for row in rows:
        c = row.cell
        if not row.probe_held_out:
            forgetting = TD("not held out")
        elif row.forgetting is None:
            forgetting = TD("n/a (random init)" if not catalog.method_class(c.method).pretrained else "–")
        else:
            forgetting = TD(row.forgetting.describe(), value=row.forgetting.mean)
        link = f"<a href='#{anchor('cell', task, c.method, c.budget)}'>{html.escape(c.method)}</a>"
        body.append(
            [
                TD(link, value=c.method, raw=True),
                TD(_budget(c.budget), value=c.budget or 10**9),
                TD(", ".join(row.backbones), cls="l"),
                TD(str(c.primary.n), value=c.primary.n),
                *(
                    TD(row.metrics[m].describe(), value=_num(row.metrics[m].mean)) if m in row.metrics else TD("–")
                    for m in metrics
                ),
                TD(row.gain.describe(), value=_num(row.gain.diff)) if row.gain else TD("–"),
                TD(_count(c.trainable, row.trainable_share), value=_num(c.trainable)),
                TD(_float(row.saved_bytes / 2**20, 2), value=_num(row.saved_bytes)),
                TD(_float(c.peak_mem_bytes / 2**20, 0), value=_num(c.peak_mem_bytes)),
                TD(_float(c.train_time_s, 1), value=_num(c.train_time_s)),
                TD(_float(row.costs["wall_time_s"], 1), value=_num(row.costs["wall_time_s"])),
                forgetting,
                TD(", ".join(board_flags(row)), cls="flag l"),
            ]
        )
    return table(header, body, cls="sortable") + drilldown_html(task, rows)


def drilldown_html(task: str, rows: Sequence[Row]) -> str:
    n = sum(len(row.cell.records) for row in rows)
    out = [
        f"<details class='drill'><summary>The {n} records behind this table: hyperparameters, sweeps, environment, "
        "git sha, record files</summary>"
    ]
    for row in rows:
        c = row.cell
        seeds = ", ".join(str(r.seed) for r in c.records)
        out.append(
            f"<details id='{anchor('cell', task, c.method, c.budget)}'><summary>{html.escape(c.method)} @ "
            f"{_budget(c.budget)}: {len(c.records)} record{'s' * (len(c.records) != 1)} (seeds {seeds})</summary>"
        )
        out.extend(_records_html(c.records))
        out.append("</details>")
    out.append("</details>")
    return "\n".join(out)


def _records_html(records: Sequence[Record]) -> list[str]:
    esc = html.escape
    out = []
    hparams = {_hparams_text(r.hparams) for r in records}
    if len(hparams) == 1:
        out.append(f"<pre>{esc(hparams.pop())}</pre>")
    tuned = {str(r.tuned_from.get("sweep")): r for r in records if r.tuned_from}
    for name, r in sorted(tuned.items()):
        swept = sweep_rows([r])
        text = swept[0].describe() if swept else f"{name}: {r.tuned_from}"
        out.append(f"<p class='meta'>Tuned by {esc(text)}</p>")
    lines = []
    for r in records:
        sha = (r.env.git_sha or "?")[:10] + (" (dirty)" if r.env.dirty else "") if r.env else "?"
        lines.append(
            [
                str(r.seed),
                r.status,
                r.created_at[:19].replace("T", " "),
                sha,
                TD(_env_text(r.env), cls="l"),
                TD(f"<code>{esc(_path(r))}</code>", raw=True, cls="l"),
            ]
        )
        if len(hparams) > 1:
            lines.append([TD(f"<pre>{esc(_hparams_text(r.hparams))}</pre>", raw=True, cls="l"), "", "", "", "", ""])
    out.append(table(["seed", "status", "written (UTC)", "git sha", "environment", "record file"], lines))
    return out


def _env_text(env) -> str:
    """Package versions, then the machine: "torch 2.9; transformers 5.2; AMD EPYC 7B13, 2 threads"."""
    if env is None:
        return "not recorded"
    packages = ("torch", "transformers", "peft", "timm")
    versions = [f"{name} {getattr(env, name)}" for name in packages if getattr(env, name)]
    threads = f"{env.threads} threads" if env.threads else None
    machine = ", ".join(str(v) for v in (env.cpu_model or env.cpu, env.gpu_name, threads) if v)
    return "; ".join([*versions, machine] if machine else versions)


def _hparams_text(hparams: dict) -> str:
    """One line per section: ``method: lr=0.001, r=8``."""
    lines = []
    for section, values in sorted(hparams.items()):
        if isinstance(values, dict):
            lines.append(f"{section}: " + ", ".join(f"{k}={v}" for k, v in sorted(values.items())))
        else:
            lines.append(f"{section}: {values}")
    return "\n".join(lines) or "(none)"


def _path(record: Record) -> str:
    if record.source is None:
        return f"(not read from a file) {record.key}"
    path = Path(record.source)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _num(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 6)


def _float(x: float, digits: int) -> str:
    return "–" if math.isnan(x) else f"{x:,.{digits}f}"


def _count(trainable: float, share: float) -> str:
    if math.isnan(trainable):
        return "–"
    return f"{trainable:,.0f}" + ("" if math.isnan(share) else f" ({100 * share:.2f}%)")


def _budget(b: int) -> str:
    return "all" if b == 0 else str(b)
