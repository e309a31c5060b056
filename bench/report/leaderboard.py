"""One task's leaderboard: the table built once (``board``) from the rows of ``bench.analysis.tables``, rendered to
HTML here (``leaderboard_html``: sortable, each row's records below it in a collapsed drill-down) and to Markdown by
``bench.report.markdown`` (summary.md), so the page and summary.md show the same cells in the same order.

Columns, the verdict first (what a reader needs without scrolling sideways at 1400 px): method, budget, backbone,
seeds, the primary test metric's mean and 95% interval over seeds, the row against the method chosen on validation
(``bench.analysis.decision_map``), flags; then the other test metrics, the gain over scratch, costs (the median over
seeds with the range, ``bench.analysis.tables.Spread``: one slow seed does not move it) and forgetting.

Flags are ``bench.analysis.flags``' (computed and explained there), shown as ``board_flags`` says: "degenerate: k of
n", "k of m seeds", "step cap k/n" (``Row.caveats``, as the decision map words them) and "probe not held out" when
the forgetting probe reads the task's own data.

The drill-down of a row: a line per seed (primary test score, validation score of the selected checkpoint, why the
run stopped, best step of steps run, training time, the seed's flags and its validation curve as an inline SVG
sparkline with the selected step marked), the hyperparameters, the sweep that chose them, environment, git sha and
record file.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench import catalog
from bench.analysis.decision_map import Decision
from bench.analysis.flags import NOT_HELD_OUT
from bench.analysis.overview import budget_text
from bench.analysis.stats import interval_kinds
from bench.analysis.sweeps import sweep_rows
from bench.analysis.tables import Row
from bench.core.record import TEST, VAL, metric_key
from bench.report.html import TD, anchor, table

if TYPE_CHECKING:
    from bench.core.api import TaskSpec
    from bench.core.record import Record

# the flags a leaderboard shows (its legend: ``flags.legend``, then ``CAVEATS``)
BOARD_FLAGS = (
    "did-not-learn",
    "degenerate",
    "negative-transfer",
    "still-improving k/n",
    "grid-edge k/n",
    NOT_HELD_OUT,
)
CAVEATS = (
    "k of m seeds = fewer seeds than the m a ranking needs; step cap k/n = k of n seeds ended at the step cap "
    "(max_steps), not by patience"
)
AGAINST = "against the choice"
CHOSEN = "★ chosen on validation"
COSTS_NOTE = (
    "Costs: median over seeds, with the range (lowest–highest) when the seeds differ. Peak mem: the process's peak "
    "(CPU: RSS; GPU: CUDA max allocated); peak rise: the cell's own increase over the memory it started with."
)
AGAINST_NOTE = (
    f"{AGAINST}: ★ marks the method chosen on validation at the row's budget; every other row gives the test set's "
    "verdict on it against that choice (better, worse, equivalent within the metric's margin, undecided), the "
    "difference row minus choice [95%] and its Holm-adjusted p, or why the method was left out of the decision."
)
# the verdict and flag columns: a line per statement or flag (explicit breaks, none inside one), narrower than the
# page's default for flags, so the verdict columns fit a 1400 px window
_VERDICT = "white-space:nowrap"
_REASON = "white-space:normal;min-width:12rem"  # why a method was left out: a sentence, wrapped
_FLAGS = "white-space:nowrap;min-width:6rem"


def board_flags(row: Row) -> list[str]:
    """The row's caveats as the decision map words them (``Row.caveats``: "degenerate: k of n", "k of m seeds",
    "step cap k/n", ...), and "probe not held out"."""
    return [*row.caveats, NOT_HELD_OUT] if not row.probe_held_out else list(row.caveats)


@dataclass(frozen=True)
class Board:
    """One task's table as cells: ``header``, and per row of ``rows`` its cells (``TD``: text, sort value, ``l`` for
    left-aligned text, ``flag`` for the flags). A cell's text is plain; ``\\n`` separates its lines."""

    task: str
    header: list[str]
    rows: list[Row]
    cells: list[list[TD]]


def board(task: str, rows: Sequence[Row], spec: TaskSpec | None, decisions: Sequence[Decision] = ()) -> Board:
    """The table of ``rows`` in their order (budget, then method); ``spec`` None: a task this checkout does not
    register (primary accuracy, no flags); ``decisions``: the report's decision map (those of other tasks are
    ignored; none: the verdict column says "–")."""
    primary = metric_key(TEST, spec.primary_metric if spec else "accuracy")
    metrics = sorted({k for row in rows for k in row.metrics}, key=lambda k: (k != primary, k))
    extra = sorted({name for row in rows for name in row.forgetting_extra})
    by_budget = {d.budget: d for d in decisions if d.task == task}
    header = [
        "method",
        "budget",
        "backbone",
        "seeds",
        f"{primary} [95%: {interval_kinds(r.metrics.get(primary) for r in rows)}]",
        AGAINST,
        "flags",
    ]
    header += [f"{m} [95%: {interval_kinds(r.metrics.get(m) for r in rows)}]" for m in metrics if m != primary]
    header += ["gain over scratch [95%]", "trainable params", "saved MiB", "peak mem MiB", "peak rise MiB"]
    header += ["train s", "wall s", "train ex/s", "eval ex/s", "forgetting drop [95%]"]
    header += [f"drop {name} [95%]" for name in extra]
    cells = []
    for row in rows:
        c = row.cell
        costs = row.costs
        cells.append(
            [
                TD(catalog.method_label(c.method, task), value=c.method),
                TD(budget_text(c.budget), value=c.budget or 10**9),
                TD(", ".join(row.backbones), cls="l"),
                TD(str(c.primary.n), value=c.primary.n),
                _metric(row, primary),
                against(row, by_budget.get(c.budget)),
                TD("\n".join(board_flags(row)), cls="flag l", style=_FLAGS),
                *(_metric(row, m) for m in metrics if m != primary),
                TD(row.gain.describe(), value=_num(row.gain.diff)) if row.gain else TD("–"),
                TD(_count(row.trainable, row.trainable_share), value=_num(row.trainable)),
                TD(_float(row.saved_bytes / 2**20, 2), value=_num(row.saved_bytes)),
                _cost(costs["peak_mem_bytes"], 2**-20),
                _cost(costs["peak_mem_delta_bytes"], 2**-20),
                _cost(costs["train_time_s"]),
                _cost(costs["wall_time_s"]),
                _cost(costs["train_samples_per_s"]),
                _cost(costs["eval_samples_per_s"]),
                _forgetting(row),
                *(
                    TD(row.forgetting_extra[n].describe(), value=_num(row.forgetting_extra[n].mean))
                    if n in row.forgetting_extra
                    else TD("–")
                    for n in extra
                ),
            ]
        )
    return Board(task, header, list(rows), cells)


def against(row: Row, d: Decision | None) -> TD:
    """The row against the method chosen on validation at its budget: "★ chosen on validation"; the outcome, the
    difference row minus choice [95%] and the Holm-adjusted p; or why the method was left out. Sorts by the
    difference (the choice: 0)."""
    method = row.method
    if d is None:
        return TD("–")
    if method == d.best:
        return TD(CHOSEN, value=0.0, style=_VERDICT, cls="l")
    if method in d.diffs:
        diff = d.diffs[method]  # the choice minus this method
        outcome = _outcome(d, method)
        p = diff.p if diff.p_adjusted is None else diff.p_adjusted
        p_text = ("p<0.001" if p < 0.001 else f"p={p:.3f}") + (" (Holm)" if diff.p_adjusted is not None else "")
        if outcome == "undecided":
            more = diff.more_seeds()
            p_text += "; more test items needed" if more is None else f"; ~{more} more seeds"
        text = f"{outcome}: {-diff.diff:+.3f} [{-diff.high:+.3f}, {-diff.low:+.3f}]\n{p_text}"
        return TD(text, value=_num(-diff.diff), style=_VERDICT, cls="l")
    if method in d.excluded:
        return TD(f"left out: {d.excluded[method]}", style=_REASON, cls="l")
    if d.best is None:
        return TD(f"no choice: {d.note}", style=_REASON, cls="l")
    return TD("–")


def _outcome(d: Decision, method: str) -> str:
    """The method's outcome as the decision files it (better, worse, equivalent or undecided: for the method)."""
    groups = {"better": d.better, "worse": d.worse, "equivalent": d.equivalent, "undecided": d.undecided}
    filed = [name for name, group in groups.items() if method in group]
    if filed:
        return filed[0]
    for_choice = d.diffs[method].outcome(d.higher_is_better)  # an unadjusted decision: file it here
    return {"better": "worse", "worse": "better"}.get(for_choice, for_choice)


def _metric(row: Row, key: str) -> TD:
    if key not in row.metrics:
        return TD("–")
    return TD(row.metrics[key].describe(), value=_num(row.metrics[key].mean))


def _cost(spread, scale: float = 1.0) -> TD:
    return TD(spread.describe(scale), value=_num(spread.median * scale))


def _forgetting(row: Row) -> TD:
    if not row.probe_held_out:
        return TD("not held out")
    if row.forgetting is None:
        return TD("n/a (random init)" if not catalog.method_class(row.method).pretrained else "–")
    return TD(row.forgetting.describe(), value=_num(row.forgetting.mean))


def leaderboard_html(task: str, rows: Sequence[Row], spec: TaskSpec | None, decisions: Sequence[Decision] = ()) -> str:
    """The sortable table (``board``), then the drill-down of every row's records."""
    b = board(task, rows, spec, decisions)
    lines = []
    for row, cells in zip(b.rows, b.cells, strict=True):
        c = row.cell
        label = html.escape(cells[0].text)
        link = f"<a href='#{anchor('cell', task, c.method, c.budget)}' title='{label}'>{label}</a>"
        lines.append([TD(link, value=c.method, raw=True), *(_html_cell(cell) for cell in cells[1:])])
    primary = spec.primary_metric if spec else "accuracy"
    return table(b.header, lines, cls="sortable") + drilldown_html(task, rows, primary)


def _html_cell(cell: TD) -> TD:
    """A board cell with its lines as HTML line breaks."""
    if "\n" not in cell.text:
        return cell
    text = "<br>".join(html.escape(line) for line in cell.text.split("\n"))
    return TD(text, value=cell.value, style=cell.style, title=cell.title, raw=True, cls=cell.cls)


def drilldown_html(task: str, rows: Sequence[Row], primary: str = "accuracy") -> str:
    n = sum(len(row.cell.records) for row in rows)
    out = [
        f"<details class='drill'><summary>The {n} records behind this table: per-seed scores and validation curves, "
        "hyperparameters, sweeps, environment, git sha, record files</summary>"
    ]
    for row in rows:
        c = row.cell
        seeds = ", ".join(str(r.seed) for r in c.records)
        out.append(
            f"<details id='{anchor('cell', task, c.method, c.budget)}'><summary>{html.escape(c.method)} @ "
            f"{budget_text(c.budget)}: {len(c.records)} record{'s' * (len(c.records) != 1)} (seeds {seeds})</summary>"
        )
        out.extend(_records_html(c.records, primary))
        out.append("</details>")
    out.append("</details>")
    return "\n".join(out)


def seed_lines(records: Sequence[Record], primary: str) -> tuple[list[str], list[list[TD]]]:
    """(header, a line per seed): the primary test score, the selected checkpoint's validation score, why the run
    stopped, best step / steps run, training time, the seed's flags and its validation curve."""
    header = ["seed", f"test/{primary}", f"val/{primary}", "stopped by", "best / steps run", "train s", "flags"]
    header.append("validation curve (● selected step)")
    lines = []
    for r in records:
        sel = r.selection
        test, val = r.metrics.get(metric_key(TEST, primary)), r.metrics.get(metric_key(VAL, primary))
        trains = sel is not None and bool(sel.history)
        stopped = (sel.stopped_by or "schedule end") if trains else "–"  # absent in older records: the schedule's end
        steps = (sel.stopped_at or (r.cost.steps if r.cost else None) or sel.schedule_steps) if sel else None
        best = "–" if sel is None or sel.best_step is None else f"{sel.best_step} / {steps if steps else '?'}"
        train_s = r.cost.train_time_s if r.cost else None
        notes = "; ".join(f"{f}: {r.flag_notes[f]}" for f in r.flags if f in r.flag_notes)
        lines.append(
            [
                TD(str(r.seed), value=r.seed),
                TD(_float(test, 3), value=_num(test)),
                TD(_float(val, 3), value=_num(val)),
                TD(stopped, cls="l"),
                TD(best, cls="l"),
                TD(_float(train_s, 1), value=_num(train_s)),
                TD(", ".join(r.flags) or "–", cls="flag l" if r.flags else "l", title=notes),
                TD(sparkline(sel.history, sel.on, sel.best_step) if trains else "–", raw=trains, cls="l"),
            ]
        )
    return header, lines


def sparkline(history: Sequence[dict], on: str, best_step: int | None, width: int = 120, height: int = 26) -> str:
    """An inline SVG of ``on`` (a validation metric) against step over the run's validation passes, higher values
    up, the selected step as a dot; its tooltip gives the range in numbers. "–" with fewer than two passes."""
    points = [
        (float(h["step"]), float(h[on]))
        for h in history
        if isinstance(h.get("step"), int | float) and isinstance(h.get(on), int | float) and math.isfinite(h[on])
    ]
    if len(points) < 2:
        return "–"
    pad = 3
    steps, values = [p[0] for p in points], [p[1] for p in points]
    s0, s1, v0, v1 = min(steps), max(steps), min(values), max(values)

    def xy(step: float, value: float) -> tuple[float, float]:
        x = pad + (step - s0) / ((s1 - s0) or 1) * (width - 2 * pad)
        y = height / 2 if v1 == v0 else pad + (v1 - value) / (v1 - v0) * (height - 2 * pad)
        return round(x, 1), round(y, 1)

    line = " ".join(f"{x},{y}" for x, y in (xy(*p) for p in points))
    chosen = [p for p in points if p[0] == best_step]
    dot = ""
    label = f"{on} over steps {s0:.0f}–{s1:.0f}: {points[0][1]:.3f} to {points[-1][1]:.3f} (range {v0:.3f}–{v1:.3f})"
    if chosen:
        x, y = xy(*chosen[0])
        dot = f"<circle cx='{x}' cy='{y}' r='2.6' fill='#c30'/>"
        label += f"; selected step {best_step:.0f}: {chosen[0][1]:.3f}"
    label = html.escape(label, quote=True)
    return (
        f"<svg width='{width}' height='{height}' viewBox='0 0 {width} {height}' role='img' aria-label='{label}'>"
        f"<title>{label}</title><polyline fill='none' stroke='#357' stroke-width='1.3' points='{line}'/>{dot}</svg>"
    )


def _records_html(records: Sequence[Record], primary: str = "accuracy") -> list[str]:
    esc = html.escape
    header, per_seed = seed_lines(records, primary)
    out = [table(header, per_seed)]
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


def _float(x: float | None, digits: int) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:,.{digits}f}"


def _count(trainable: float, share: float) -> str:
    if math.isnan(trainable):
        return "–"
    return f"{trainable:,.0f}" + ("" if math.isnan(share) else f" ({100 * share:.2f}%)")
