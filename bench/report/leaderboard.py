"""One task's leaderboard for the report: a row per (method, budget) with the mean and 95% interval over seeds of
every test metric (``bench.analysis.stats.seed_summary``), the backbone the cells ran on, the gain over scratch, costs,
forgetting and flags, sortable by any column; below it, each row's records in a collapsed drill-down
(hyperparameters, the sweep that chose them, environment, git sha, record file).

Flags are the summary's (``bench.report.text.cell_flags``: did-not-learn, degenerate, negative-transfer) plus
"probe not held out" when the forgetting probe reads the task's own data (``bench.probes.held_out``), whose drop
measures the task, not forgetting.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.analysis.derived import Gain, MethodCell
from bench.analysis.overview import method_rank
from bench.analysis.stats import Interval, seed_summary
from bench.probes import held_out
from bench.report.html import TD, anchor, table

if TYPE_CHECKING:
    from bench.core.api import TaskSpec
    from bench.core.record import Record
    from bench.core.store import Store

NOT_HELD_OUT = "probe not held out"
FLAG_NOTE = (
    "Flags: did-not-learn = the interval reaches the majority-class baseline (one seed: the paired bootstrap against "
    "the majority predictor); degenerate = k of n seeds predicted one class for every test item (training "
    "collapsed); negative-transfer = significantly below scratch; probe not held out = the forgetting probe reads "
    "this task's own data, so its drop is left out. Click a column header to sort."
)


@dataclass(frozen=True)
class LeaderRow:
    cell: MethodCell
    backbones: tuple[str, ...]
    metrics: dict[str, Interval]  # every test, test_ood and gap metric over seeds
    gain: Gain | None  # over scratch at the same budget (None: no scratch, or scratch itself)
    forgetting: Interval | None  # held-out probe drop over seeds (None: not measured, or not held out)
    probe_held_out: bool
    flags: tuple[str, ...]

    @property
    def method(self) -> str:
        return self.cell.method

    @property
    def budget(self) -> int:
        return self.cell.budget


def build_rows(
    store: Store,
    cells_by_budget: Mapping[int, Mapping[str, MethodCell]],
    spec: TaskSpec,
    labels: np.ndarray | None,
) -> list[LeaderRow]:
    """Rows in budget order, then the usual method order; ``labels`` (the test labels) give the did-not-learn
    baseline (None: unknown, no did-not-learn flag)."""
    from bench.analysis import derived
    from bench.report.text import cell_flags

    base = derived.baselines(spec, labels) if labels is not None else None
    rows = []
    for budget in sorted(cells_by_budget, key=lambda b: (b == 0, b)):
        cells = cells_by_budget[budget]
        for method in sorted(cells, key=method_rank):
            c = cells[method]
            flags, gain = cell_flags(store, c, spec, base, cells.get(derived.SCRATCH))
            flags = [f for f in flags if f != "few-seeds"]  # the seeds column says it
            n_degenerate = sum("degenerate" in r.flags for r in c.records)
            flags = [f"degenerate: {n_degenerate} of {len(c.records)}" if f == "degenerate" else f for f in flags]
            probes_held_out = all(held_out(r.forgetting.probe, r.task) for r in c.records if r.forgetting)
            if not probes_held_out:
                flags.append(NOT_HELD_OUT)
            drops = [r.forgetting.drop for r in c.records if r.forgetting and r.forgetting.drop is not None]
            names = sorted({k for r in c.records for k in r.metrics if k.startswith(("test/", "test_ood/", "gap/"))})
            primary = f"test/{spec.primary_metric}"
            names.sort(key=lambda k: (k != primary, k))
            rows.append(
                LeaderRow(
                    cell=c,
                    backbones=tuple(sorted({r.backbone for r in c.records})),
                    metrics={k: seed_summary([r.metrics.get(k) for r in c.records], k) for k in names},
                    gain=gain,
                    forgetting=seed_summary(drops) if drops and probes_held_out else None,
                    probe_held_out=probes_held_out,
                    flags=tuple(flags),
                )
            )
    return rows


def leaderboard_html(task: str, rows: Sequence[LeaderRow], spec: TaskSpec) -> str:
    """The sortable table, then the drill-down of every row's records."""
    primary = f"test/{spec.primary_metric}"
    metrics = sorted({k for row in rows for k in row.metrics}, key=lambda k: (k != primary, k))
    header = ["method", "budget", "backbone", "seeds", *(f"{m} [95%]" for m in metrics)]
    header += ["gain over scratch [95%]", "trainable params", "saved MiB", "peak mem MiB", "train s", "wall s"]
    header += ["forgetting drop [95%]", "flags"]
    body = []
    for row in rows:
        c = row.cell
        records = c.records
        wall = _mean([r.cost.wall_time_s for r in records if r.cost])
        saved = _mean([r.params.adapter_bytes for r in records if r.params])
        share = _mean([r.params.trainable_share for r in records if r.params])
        if not row.probe_held_out:
            forgetting = TD("not held out")
        elif row.forgetting is None:
            forgetting = TD("n/a (random init)" if c.method == "scratch" else "–")
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
                TD(_count(c.trainable, share), value=_num(c.trainable)),
                TD(_float(saved / 2**20, 2), value=_num(saved)),
                TD(_float(c.peak_mem_bytes / 2**20, 0), value=_num(c.peak_mem_bytes)),
                TD(_float(c.train_time_s, 1), value=_num(c.train_time_s)),
                TD(_float(wall, 1), value=_num(wall)),
                forgetting,
                TD(", ".join(row.flags), cls="flag l"),
            ]
        )
    return table(header, body, cls="sortable") + drilldown_html(task, rows)


def drilldown_html(task: str, rows: Sequence[LeaderRow]) -> str:
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
    from bench.analysis.sweeps import sweep_rows

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


def _mean(values: Sequence[float | None]) -> float:
    vals = [float(v) for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


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
