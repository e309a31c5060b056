"""Records -> one self-contained HTML report per suite, summary.md and the records as CSV and Parquet.

Every number shown is computed from the suite's records at report time; nothing is typed in. The page opens with a
table of contents and an overview (``bench.analysis.overview``: what ran, hardware, code versions, dates, wall time,
how the cells went), then the decision map, the primary metric of every method at every (task, budget) at a glance
(``bench.report.heatmap``), the sweeps and the figures across tasks (``bench.report.plots.efficiency``: tasks with one
budget share a dot chart); then per task its figures (sample efficiency, metric vs forgetting and costs) and a sortable
leaderboard with intervals over seeds, backbone, costs and flags, each row's records in a collapsed drill-down
(``bench.report.leaderboard``). Cells that failed, timed out or are unsupported are listed with their reason, and
unreadable record files are named at the top. summary.md carries the same overview, decision map and table at a
glance, then the per-task tables (``markdown_tables``); records.csv and records.parquet (``bench.report.exports``) hold
one row per record.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from bench.analysis.overview import METHOD_ORDER, task_rank
from bench.core.record import Record
from bench.core.store import Store
from bench.probes import held_out
from bench.report.data import (
    METHODOLOGY,
    ReportData,
    build_report,
    decision_html,
    summary_markdown,
    sweeps_html,
)
from bench.report.html import CSS, SCRIPT, TD, anchor, table

REPORTS_ROOT = Path(__file__).resolve().parents[2] / "reports"
__all__ = ["METHOD_ORDER", "build_report", "markdown_tables", "render_html", "summarise", "sweeps_html", "write_report"]


def mean_ci(values: list[float]) -> tuple[float, float | None]:
    """Mean and half-width of the 95% t-interval over seeds (None with fewer than two values): see
    ``bench.analysis.stats.seed_summary``, which the summary shares."""
    from bench.analysis.stats import seed_summary

    interval = seed_summary(values)
    return interval.mean, (interval.high - interval.mean) if interval.has_interval else None


def _fmt(m: float, ci: float | None, digits: int = 3) -> str:
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "–"
    return f"{m:.{digits}f}" + (f" ± {ci:.{digits}f}" if ci is not None else " (one seed)")


def _method_rank(name: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(name) if name in METHOD_ORDER else len(METHOD_ORDER), name)


def summarise(records: list[Record]) -> dict[str, list[dict[str, Any]]]:
    """task -> rows (one per method and budget, seeds aggregated), from ok records."""
    groups: dict[tuple[str, str, int], list[Record]] = {}
    for r in records:
        if r.ok:
            groups.setdefault((r.task, r.method, r.budget), []).append(r)
    out: dict[str, list[dict[str, Any]]] = {}
    for (task, method, budget), rs in sorted(
        groups.items(), key=lambda kv: (kv[0][0], _method_rank(kv[0][1]), kv[0][2])
    ):
        metric_names = sorted({k for r in rs for k in r.metrics if k.startswith(("test/", "test_ood/", "gap/"))})
        row: dict[str, Any] = {"task": task, "method": method, "budget": budget, "n": len(rs), "metrics": {}}
        for name in metric_names:
            row["metrics"][name] = mean_ci([r.metrics.get(name, math.nan) for r in rs])
        # a probe that reads the task's own data measures the task, not forgetting: left out (bench.probes.held_out)
        drops = [r.forgetting.drop if held_out(r.forgetting.probe, r.task) else None for r in rs]
        row["forgetting"] = mean_ci([d for d in drops if d is not None]) if any(d is not None for d in drops) else None
        row["forgetting_extra"] = {}
        for name in rs[0].forgetting_extra:
            extra = [
                r.forgetting_extra[name].drop if name in r.forgetting_extra and held_out(name, r.task) else None
                for r in rs
            ]
            if all(d is not None for d in extra):
                row["forgetting_extra"][name] = mean_ci(extra)
        row["probe"] = rs[0].forgetting.probe
        row["probe_held_out"] = held_out(rs[0].forgetting.probe, task)
        row["probe_before"] = rs[0].forgetting.before
        row["params"] = rs[0].params
        cost = [r.cost for r in rs]
        for key in (
            "peak_mem_bytes",
            "peak_mem_delta_bytes",
            "train_samples_per_s",
            "eval_samples_per_s",
            "train_time_s",
            "wall_time_s",
        ):
            vals = [getattr(c, key) for c in cost if getattr(c, key) is not None]
            row[key] = sum(vals) / len(vals) if vals else math.nan
        row["device"] = cost[0].device
        row["backbone"] = rs[0].backbone
        row["degenerate"] = sum("degenerate" in r.flags for r in rs)
        out.setdefault(task, []).append(row)
    return out


def _figure_html(plot) -> str:
    """A ``bench.report.plots.efficiency.Plot`` as an inline PNG with its alt text and caption; with a narrow layout,
    that one in windows up to ``NARROW_PX`` wide (where the wide one would shrink past reading)."""
    from bench.report.plots.efficiency import NARROW_PX

    esc = html.escape
    img = f"<img alt='{esc(plot.alt)}' src='data:image/png;base64,{plot.png}'>"
    if plot.narrow:
        source = f"<source media='(max-width: {NARROW_PX}px)' srcset='data:image/png;base64,{plot.narrow}'>"
        img = f"<picture>{source}{img}</picture>"
    return f"<figure>{img}<figcaption class='meta'>{esc(plot.caption)}</figcaption></figure>"


def _table_rows(rows: list[dict[str, Any]], primary: str) -> tuple[list[str], list[list[str]]]:
    metric_names = sorted({k for r in rows for k in r["metrics"]}, key=lambda k: (k != f"test/{primary}", k))
    header = [
        "method",
        "budget",
        "seeds",
        *metric_names,
        "trainable params",
        "saved MiB",
        "peak mem MiB",
        "train ex/s",
        "eval ex/s",
        "train s",
        "forgetting drop",
    ]
    extra = sorted({name for r in rows for name in r.get("forgetting_extra", {})})
    header += [f"drop {name}" for name in extra]
    body = []
    for r in rows:
        p = r["params"]
        share = 100 * p.trainable_share
        if not r.get("probe_held_out", True):
            forget = "not held out (the probe reads this task's data)"
        else:
            forget = "n/a (random init)" if r["forgetting"] is None else _fmt(*r["forgetting"])
        mark = f" [degenerate: {r['degenerate']} of {r['n']}]" if r.get("degenerate") else ""
        body.append(
            [
                r["method"] + mark,
                str(r["budget"] or "all"),
                str(r["n"]),
                *[_fmt(*r["metrics"][m]) if m in r["metrics"] else "–" for m in metric_names],
                f"{p.trainable:,} ({share:.2f}%)",
                f"{p.adapter_bytes / 2**20:.2f}",
                f"{r['peak_mem_bytes'] / 2**20:,.0f} (+{r['peak_mem_delta_bytes'] / 2**20:,.0f})",
                f"{r['train_samples_per_s']:,.1f}" if not math.isnan(r["train_samples_per_s"]) else "–",
                f"{r['eval_samples_per_s']:,.1f}",
                f"{r['train_time_s']:,.1f}",
                forget,
                *[_fmt(*r["forgetting_extra"][n]) if n in r.get("forgetting_extra", {}) else "–" for n in extra],
            ]
        )
    return header, body


def markdown_tables(records: list[Record]) -> str:
    """The per-task tables as Markdown (used for the README's results table)."""
    from bench.core.registry import TASKS, load_all

    load_all()
    parts = []
    for task, rows in summarise(records).items():
        primary = TASKS.get(task).spec.primary_metric if task in TASKS else "accuracy"
        header, body = _table_rows(rows, primary)
        parts.append(
            f"**{task}** (primary: test/{primary}; forgetting probe: {rows[0]['probe']}, "
            f"base model {rows[0]['probe_before']:.3f})\n"
        )
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|" + "---|" * len(header))
        parts.extend("| " + " | ".join(line) + " |" for line in body)
        if any(r.get("degenerate") for r in rows):
            parts.append(f"\n{DEGENERATE_NOTE}")
        parts.append("")
    return "\n".join(parts)


DEGENERATE_NOTE = (
    "[degenerate: k of n]: in k of the row's n seeds every test prediction was the same class (or a constant "
    "score): training collapsed, and those numbers measure a constant predictor, not the method."
)


def render_html(
    suite: str,
    records: list[Record],
    notes: list[str] | None = None,
    source: str | Path | None = None,
    warnings: list[str] | None = None,
    store: Store | None = None,
) -> str:
    """The report page (see ``build_report`` for the arguments)."""
    return page_html(build_report(suite, records, notes, source, warnings, store))


def page_html(data: ReportData) -> str:
    from bench.core.registry import TASKS
    from bench.report.heatmap import LEGEND
    from bench.report.leaderboard import FLAG_NOTE, leaderboard_html
    from bench.report.plots.efficiency import cross_task_figures, task_figures

    esc = html.escape
    ov = data.overview
    bad = [r for r in data.records if not r.ok]
    tasks = sorted(data.tables, key=task_rank)
    sections = [("overview", "Overview")]
    sections += [("decision-map", "Decision map")] if data.decisions else []
    sections += [("at-a-glance", "Primary test metric at a glance")] if data.heatmap.rows else []
    sweeps = sweeps_html([r for r in data.records if r.ok])
    sections += [("sweeps", "Hyperparameter sweeps")] if sweeps else []
    ok = [r for r in data.records if r.ok]
    cross = cross_task_figures(ok, data.store)
    sections += [("across-tasks", "Across tasks")] if cross else []
    sections += [(anchor("task", t), t) for t in tasks]
    sections += [("not-ok", "Cells that did not produce results")] if bad else []
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
        f"content='width=device-width,initial-scale=1'><title>adaptbench: {esc(data.suite)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>adaptbench report: suite <code>{esc(data.suite)}</code></h1>",
        f"<p class='meta'>Generated {esc(ov.generated)} from the records in <code>{esc(ov.source)}</code>.</p>",
        "<nav class='toc'><b>Contents</b><ol>"
        + "".join(f"<li><a href='#{a}'>{esc(title)}</a></li>" for a, title in sections)
        + "</ol></nav>",
        "<section id='overview'><h2>Overview</h2>",
        "<div class='scroll'><table class='kv'>"
        + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in ov.rows())
        + "</table></div>",
        f"<p class='meta'>{esc(METHODOLOGY)}</p>",
        *(f"<p class='meta'>{esc(note)}</p>" for note in data.notes),
        *(f"<p class='bad'>Warning: {esc(w)} (not in this report; the grid recomputes it)</p>" for w in data.warnings),
        "</section>",
    ]
    if data.decisions:
        out += ["<section id='decision-map'>", *decision_html(data.decisions), "</section>"]
    if data.heatmap.rows:
        out += [
            "<section id='at-a-glance'><h2>Primary test metric at a glance</h2>",
            f"<p class='meta'>Mean over seeds; hover a cell for its interval and seeds. {esc(LEGEND)}</p>",
            data.heatmap.html(),
            "</section>",
        ]
    if sweeps:
        out += ["<section id='sweeps'>", *sweeps, "</section>"]
    if cross:
        out += ["<section id='across-tasks'><h2>Across tasks</h2>", *(_figure_html(p) for p in cross), "</section>"]
    for task in tasks:
        rows = data.tables[task]
        spec = TASKS.get(task).spec if task in TASKS else None
        primary = spec.primary_metric if spec else "accuracy"
        out.append(f"<section id='{anchor('task', task)}'>")
        out.append(
            f"<h2>{esc(task)}</h2><p class='meta'>{esc(spec.description if spec else '')}; primary metric test/"
            f"{esc(primary)} ({'higher' if not spec or spec.higher_is_better else 'lower'} is better); default "
            f"backbone {esc(spec.backbone if spec else '?')}; forgetting probe {esc(str(rows[0]['probe']))} "
            f"(base model: {rows[0]['probe_before']:.3f}).</p>"
        )
        out.extend(_figure_html(plot) for plot in task_figures(task, ok, data.store))
        if task in data.boards:
            out.append(leaderboard_html(task, data.boards[task], spec))
            out.append(f"<p class='meta'>{esc(FLAG_NOTE)}</p>")
        else:  # a task this checkout does not register: the plain table
            header, body = _table_rows(rows, primary)
            out.append(table(header, body))
        if any(r.get("degenerate") for r in rows):
            out.append(f"<p class='bad'>{esc(DEGENERATE_NOTE)}</p>")
        out.append("</section>")
    if bad:
        out.append("<section id='not-ok'><h2 class='bad'>Cells that did not produce results</h2>")
        lines = []
        for r in sorted(bad, key=lambda r: (task_rank(r.task), r.method, r.budget, r.seed)):
            reason = (r.error or "").strip().splitlines()
            cell = f"{r.task} x {r.method} @ {r.budget} seed {r.seed}"
            lines.append([cell, r.status, TD(reason[-1] if reason else "", cls="l")])
        out += [table(["cell", "status", "reason"], lines), "</section>"]
    out.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(out)


def current_records(suite: str, records: list[Record], suite_file: str | None = None) -> tuple[list[Record], list[str]]:
    """The records of the cells in the suite's current definition (same keys: same code versions, settings and
    budgets), and notes on what was left out or has not run yet. Records of an earlier definition stay on disk.
    ``suite_file`` is the suite's path when it is not one of ``bench/suites/``. Cells tuned by a sweep count with
    the values their sweep's records choose; the sweep cells themselves are left out of the tables (each tried one
    value); a sweep that has not chosen is a note (the sweeps table shows the choices)."""
    from bench.core.api import resolve_hparams
    from bench.suite import expand, load_suite, suite_names

    if suite_file is None and suite not in suite_names():  # records without a suite file (`run --suite adhoc`)
        return records, []
    definition = load_suite(suite_file or suite)
    by_key = {r.key: r for r in records}
    cells, outcomes = expand(definition, by_key.get)
    wanted = {resolve_hparams(cell).key for cell in cells}
    # a sweep's choice is in the sweeps table (page and summary); a sweep that did not choose is a note
    notes = [o.describe() for o in outcomes if o.status != "selected"]
    for o in outcomes:
        if o.status in ("failed", "unsupported"):  # their block cells' records say so, under pending keys
            wanted |= {resolve_hparams(c).pending_key(o.sweep.fields) for c in o.sweep.dependents()}
        elif o.status == "waiting":
            notes.append(f"the cells of {o.sweep.name} wait for their sweep: run the grid to fill them.")
    sweep_only = {resolve_hparams(c).key for c in definition.sweep_cells()} - wanted
    kept = [r for r in records if r.key in wanted]
    swept = sum(r.key in sweep_only for r in records)
    if swept:
        notes.append(f"{swept} sweep cells are not in the tables: each tried one value for the cells tuned by it.")
    if len(kept) + swept < len(records):
        notes.append(
            f"{len(records) - len(kept) - swept} records of cells outside the suite's current definition (earlier "
            "code versions, settings or budgets) are not shown; they stay in the results folder (--all-records shows "
            "them)."
        )
    missing = len(wanted - {r.key for r in kept})
    if missing:
        notes.append(f"{missing} of the suite's {len(wanted)} cells have no record yet (run the grid to fill them).")
    return kept, notes


def shown_records(
    suite: str, records: list[Record], suite_file: str | None, where: str | Path, all_records: bool = False
) -> tuple[list[Record], list[str]]:
    """The records a report or summary shows (``current_records``) and its notes; when none belong to the suite's
    current definition (an archive of an earlier one, such as the baselines), all of them, with a note saying so."""
    if all_records or not records:
        return records, []
    kept, notes = current_records(suite, records, suite_file)
    if kept:
        return kept, notes
    return records, [
        f"None of the {len(records)} records in {where} belong to the current definition of suite {suite} "
        f"(earlier code versions, settings or budgets): all of them are shown, as --all-records does. "
        f"`adaptbench grid --suite {suite}` runs today's cells."
    ]


def write_report(
    suite: str,
    store: Store | None = None,
    out_dir: str | Path | None = None,
    all_records: bool = False,
    folder: str | None = None,
    labels_from_data: bool = True,
) -> Path:
    """index.html and summary.md of a suite's records in ``out_dir`` (default
    ``reports/<folder>``). ``folder``: the folder under ``store.root`` that holds them (default: the suite's name;
    ``bench.core.store.locate`` finds records filed under another name, such as ``results/baselines/default-cpu``), and
    beside them records.csv and records.parquet of every record read (``in_report``: whether the page shows it)."""
    from bench.core.store import atomic_write_text
    from bench.report.exports import write_exports

    store = store or Store()
    suite_file = None
    if suite.endswith(".toml"):  # a path, as `grid` takes it: the records are filed under the file's stem
        suite_file, suite = suite, Path(suite).stem
    folder = folder or suite
    where = store.suite_dir(folder)
    records = store.records(folder)
    own = [r for r in records if r.suite == suite]
    if own and len(own) < len(records):  # a folder holding several suites' records: this suite's
        records = own
    if not records:
        raise ValueError(
            f"no records for suite {suite!r} under {where}; run `adaptbench grid --suite {suite}` first, or point "
            f"--results at a folder of records (suites with records under {store.root}: "
            f"{', '.join(store.suites()) or 'none'})"
        )
    read = records
    records, notes = shown_records(suite, records, suite_file, where, all_records)
    out = Path(out_dir) if out_dir else REPORTS_ROOT / Path(folder).name
    out.mkdir(parents=True, exist_ok=True)
    data = build_report(suite, records, notes, where, store.warnings(), store, labels_from_data, len(read))
    atomic_write_text(out / "index.html", page_html(data))
    atomic_write_text(out / "summary.md", summary_markdown(data))
    write_exports(read, out, shown={r.key for r in records})
    for note in notes:
        print(f"note: {note}")
    return out / "index.html"
