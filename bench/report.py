"""Records -> one self-contained HTML report per suite (tables + inline PNG plots), plus a Markdown summary.

Every number shown is computed from the suite's records at report time; nothing is typed in. Per task: a table
with one row per (method, budget) and its figures (``bench.plots``: sample efficiency, metric vs cost); tasks with
one budget share a cross-task chart. Over several seeds a cell shows the mean and a 95% t-interval; with one seed it
shows the value and says n=1. Cells that failed, timed out or are unsupported are listed with their reason; rows
with a collapsed run (``degenerate`` flag) are marked, and unreadable record files are named at the top.
"""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.probes import held_out
from bench.record import Env, Record
from bench.store import Store

REPORTS_ROOT = Path(__file__).resolve().parent.parent / "reports"
METHOD_ORDER = ["scratch", "frozen", "full", "lora"]


def mean_ci(values: list[float]) -> tuple[float, float | None]:
    """Mean and half-width of the 95% t-interval over seeds (None with fewer than two values): see
    ``bench.stats.seed_summary``, which the summary shares."""
    from bench.stats import seed_summary

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
    """A ``bench.plots.Plot`` as an inline PNG with its alt text and caption."""
    esc = html.escape
    return (
        f"<figure><img style='max-width:100%' alt='{esc(plot.alt)}' src='data:image/png;base64,{plot.png}'>"
        f"<figcaption class='meta'>{esc(plot.caption)}</figcaption></figure>"
    )


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
    from bench.registry import TASKS, load_all

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
CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1300px;color:#222;padding:0 1rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
.meta{color:#555;font-size:.85rem} .bad{color:#a00} code{background:#f5f5f5;padding:0 .2rem}
"""


def render_html(
    suite: str,
    records: list[Record],
    notes: list[str] | None = None,
    source: str | Path | None = None,
    warnings: list[str] | None = None,
    store: Store | None = None,
) -> str:
    """The report page. ``source`` names the records folder read; ``warnings`` (unreadable record files) are
    shown at the top in red; with the ``store`` the records came from, the page opens with the decision map
    (paired tests need the per-example predictions stored beside the records)."""
    from bench.registry import TASKS, load_all

    load_all()
    esc = html.escape
    ok = [r for r in records if r.ok]
    bad = [r for r in records if not r.ok]
    n_degenerate = sum("degenerate" in r.flags for r in ok)
    shas = sorted({(r.env.git_sha if r.env else None) or "?" for r in ok})
    dirty = any(r.env and r.env.dirty for r in ok)
    devices = sorted({str(r.cost.device) for r in ok if r.cost})
    threads = sorted({str(r.env.threads) for r in ok if r.env})
    env = ok[0].env if ok and ok[0].env else Env()
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>adaptbench: {esc(suite)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>adaptbench report: suite <code>{esc(suite)}</code></h1>",
        f"<p class='meta'>{len(ok)} ok cells ({n_degenerate} flagged degenerate), {len(bad)} not ok"
        f"{f', {len(warnings)} unreadable' if warnings else ''}. Generated "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC from the records in <code>{esc(str(source or suite))}</code>. "
        f"Code {', '.join(s[:10] for s in shas)}{' (uncommitted changes)' if dirty else ''}; device "
        f"{', '.join(devices)}; torch threads {', '.join(threads)}; torch {esc(str(env.torch))}, "
        f"transformers {esc(str(env.transformers))}, peft {esc(str(env.peft))}, "
        f"timm {esc(str(env.timm))}.</p>",
        "<p class='meta'>Test metrics are from the epoch selected on validation (test is evaluated once per "
        "cell). Forgetting drop = probe on the untouched pretrained backbone minus probe on the adapted "
        "backbone (positive = forgot). Peak memory: process peak RSS on the CPU (in brackets the cell's own "
        "increase), CUDA max allocated on a GPU. Throughput excludes warm-up steps; for cached-feature methods "
        "it includes the one backbone pass.</p>",
        *(f"<p class='meta'>{esc(note)}</p>" for note in notes or []),
        *(f"<p class='bad'>Warning: {esc(w)} (not in this report; the grid recomputes it)</p>" for w in warnings or []),
    ]
    if store is not None:
        out.extend(_decision_html([r for r in ok if r.task in TASKS], store))
    out.extend(_sweeps_html(ok))
    from bench.plots import cross_task_figures, task_figures

    cross = cross_task_figures(ok, store)
    if cross:
        out.append("<h2>Across tasks</h2>")
        out.extend(_figure_html(plot) for plot in cross)
    for task, rows in summarise(records).items():
        spec = TASKS.get(task).spec if task in TASKS else None
        primary = spec.primary_metric if spec else "accuracy"
        out.append(
            f"<h2>{esc(task)}</h2><p class='meta'>{esc(spec.description if spec else '')}; backbone "
            f"{esc(spec.backbone if spec else '?')}; forgetting probe {esc(str(rows[0]['probe']))} "
            f"(base model: {rows[0]['probe_before']:.3f}).</p>"
        )
        out.extend(_figure_html(plot) for plot in task_figures(task, ok, store))
        header, body = _table_rows(rows, primary)
        out.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        out.extend("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in line) + "</tr>" for line in body)
        out.append("</table>")
        if any(r.get("degenerate") for r in rows):
            out.append(f"<p class='bad'>{esc(DEGENERATE_NOTE)}</p>")
    if bad:
        out.append(
            "<h2 class='bad'>Cells that did not produce results</h2><table><tr><th>cell</th><th>status</th>"
            "<th>reason</th></tr>"
        )
        for r in sorted(bad, key=lambda r: (r.task, r.method, r.budget)):
            reason = (r.error or "").strip().splitlines()
            out.append(
                f"<tr><td>{esc(r.task)} x {esc(r.method)} @ {r.budget} seed {r.seed}</td>"
                f"<td>{esc(r.status)}</td><td style='text-align:left'>{esc(reason[-1] if reason else '')}"
                "</td></tr>"
            )
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def _decision_html(records: list[Record], store: Store) -> list[str]:
    """The decision map (``bench.decision_map``, the same as ``adaptbench summary``) as an HTML table."""
    from bench.decision_map import decision_map
    from bench.summary import rule_text

    esc = html.escape
    out = [
        "<h2>Decision map</h2>",
        f"<p class='meta'>Best method by mean primary test metric, then a paired bootstrap of every other method "
        f"against it. {esc(rule_text())}</p>",
        "<table><tr><th>task</th><th>budget</th><th>best</th><th>not significantly worse</th><th>worse</th>"
        "<th>left out</th></tr>",
    ]
    for d in decision_map(store, records):
        left_out = "; ".join(f"{m}: {why}" for m, why in sorted(d.excluded.items()))
        best = d.best or d.note
        if d.best and d.note:
            best += f" ({d.note})"
        cells = [d.task, str(d.budget or "all"), best, ", ".join(d.not_worse), ", ".join(d.worse), left_out]
        out.append("<tr>" + "".join(f"<td style='text-align:left'>{esc(c)}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return out


def _sweeps_html(records: list[Record]) -> list[str]:
    """The sweeps behind the tuned cells (``bench.sweep_table``): values tried, validation scores, the choice."""
    from bench.sweep_table import sweep_rows

    rows = sweep_rows(records)
    if not rows:
        return []
    esc = html.escape
    out = [
        "<h2>Hyperparameter sweeps</h2>",
        "<p class='meta'>Each tuned method's value was chosen once per task on validation (mean over the sweep's "
        "seeds, at the sweep's budget) and reused for every budget and seed of its block. The sweep cells are "
        "records of their own; they are not in the tables below. A choice at the grid's edge may have a better "
        "value outside the grid.</p>",
        "<table><tr><th>task</th><th>method</th><th>budget</th><th>seeds</th><th>validation metric</th>"
        "<th>tried (mean validation score)</th><th>chosen</th></tr>",
    ]
    for row in rows:
        tried = "; ".join(f"{v}: {'–' if s is None else f'{s:.3f}'}" for v, s in row.tried)
        chosen = row.chosen + (" (at the grid's edge)" if row.at_edge else "")
        cells = [row.task, row.method, str(row.budget), ",".join(map(str, row.seeds)), row.on, tried, chosen]
        out.append("<tr>" + "".join(f"<td style='text-align:left'>{esc(c)}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return out


def current_records(suite: str, records: list[Record], suite_file: str | None = None) -> tuple[list[Record], list[str]]:
    """The records of the cells in the suite's current definition (same keys: same code versions, settings and
    budgets), and notes on what was left out or has not run yet. Records of an earlier definition stay on disk.
    ``suite_file`` is the suite's path when it is not one of ``bench/suites/``. Cells tuned by a sweep count with
    the values their sweep's records choose; the sweep cells themselves are left out of the tables (each tried one
    value) and each sweep's choice is a note."""
    from bench.api import resolve_hparams
    from bench.suite import expand, load_suite, suite_names

    if suite_file is None and suite not in suite_names():  # records without a suite file (`run --suite adhoc`)
        return records, []
    definition = load_suite(suite_file or suite)
    by_key = {r.key: r for r in records}
    cells, outcomes = expand(definition, by_key.get)
    wanted = {resolve_hparams(cell).key for cell in cells}
    notes = [o.describe() for o in outcomes]
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


def write_report(
    suite: str, store: Store | None = None, out_dir: str | Path | None = None, all_records: bool = False
) -> Path:
    store = store or Store()
    suite_file = None
    if suite.endswith(".toml"):  # a path, as `grid` takes it: the records are filed under the file's stem
        suite_file, suite = suite, Path(suite).stem
    records = store.records(suite)
    if not records:
        raise ValueError(
            f"no records for suite {suite!r} under {store.suite_dir(suite)}; run "
            f"`adaptbench grid --suite {suite}` first (suites with records: {store.suites() or 'none'})"
        )
    notes: list[str] = []
    if not all_records:
        records, notes = current_records(suite, records, suite_file)
        if not records:
            raise ValueError(
                f"none of the records under {store.suite_dir(suite)} belong to the current definition of suite "
                f"{suite!r}; run `adaptbench grid --suite {suite}`, or pass --all-records to report them anyway"
            )
    folder = Path(out_dir) if out_dir else REPORTS_ROOT / suite
    folder.mkdir(parents=True, exist_ok=True)
    from bench.store import atomic_write_text

    html_text = render_html(
        suite, records, notes, source=store.suite_dir(suite), warnings=store.warnings(), store=store
    )
    atomic_write_text(folder / "index.html", html_text)
    atomic_write_text(folder / "summary.md", markdown_tables(records))
    for note in notes:
        print(f"note: {note}")
    return folder / "index.html"
