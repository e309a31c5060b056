"""The "Hardware" section: which method is cheapest on the machine the records came from, as HTML and as summary.md.

First, per machine, a short answer table (``bench.analysis.hardware.Answers``): at each task and budget the method
that trains in the least time, serves the most test examples per second, needs the least peak memory and saves the
fewest bytes, each with its median and the runner-up. Then per task and machine the costs of every method and budget
(``CostRow``): medians with their range over seeds, the feature cache's state per seed, and a legend that defines
each column once. Records of different machines are never pooled: each machine has its own tables, named above them.
The numbers are computed in ``bench.analysis.hardware``; this module only words them.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.analysis.hardware import (
    CACHE_DEPENDENT,
    CACHE_STATES,
    COLD,
    NO_TRAINING,
    UNUSED,
    WARM,
    Answer,
    Answers,
    CostRow,
    HardwareReport,
    Machine,
    Measured,
)
from bench.analysis.overview import budget_text, task_rank
from bench.analysis.tables import Spread
from bench.report.data import ReportData
from bench.report.html import TD, table

esc = html.escape
ANCHOR = "hardware"
TITLE = "Cost on the hardware the records came from"

MEM_KIND = {
    "process_peak_rss": "process peak RSS (the whole process's resident memory at its peak: Python, torch, the loaded "
    "models and data included)",
    "cuda_max_allocated": "CUDA max allocated (the most tensor memory allocated on the GPU; the allocator's cache not "
    "included)",
}


# ------------------------------------------------------------------------------------------------ numbers
def rate(x: float) -> str:
    """Examples per second: "118,718", "326", "75.6", "5.56"."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def seconds(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def mib(x: float) -> str:
    return f"{x / 2**20:,.0f}"


def saved_mib(x: float) -> str:
    return f"{x / 2**20:,.2f}" if x else "0"


def flops(x: float) -> str:
    """FLOPs with an SI prefix, 3 significant digits: "62.7M", "2.59G", "73.9k"."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= factor:
            return f"{x / factor:.3g}{prefix}"
    return f"{x:.3g}"


def percent(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.1 else f"{100 * x:.1f}%"


# a cell's parts: (text, role), role "" the value, "range" its range over seeds, "note" a line of its own below it
# (a warm measurement, the merge's check); summary.md writes them on one line, the page one below the other
Part = tuple[str, str]


def spread_parts(s: Spread | None, fmt: Callable[[float], str], prefix: str = "") -> list[Part]:
    if s is None:
        return [] if prefix else [("–", "")]
    low, high = fmt(s.low), fmt(s.high)
    out = [(prefix + fmt(s.median), "note" if prefix else "")]
    return [*out, (f"({low}–{high})", "range")] if s.n > 1 and low != high else out


def measured_parts(m: Measured, fmt: Callable[[float], str]) -> list[Part]:
    """The cold seeds' median (range); the warm seeds' apart, after "warm:" (never pooled with the cold ones)."""
    warm = spread_parts(m.warm, fmt, prefix="warm: ")
    return warm if m.value is None and warm else [*spread_parts(m.value, fmt), *warm]


def parts_text(parts: Sequence[Part]) -> str:
    """One line: "73.5 (72.0–75.0); warm: 118,718"."""
    out = ""
    for i, (text, role) in enumerate(parts):
        out += text if i == 0 else f" {text}" if role == "range" else f"; {text}"
    return out


def measured_text(m: Measured, fmt: Callable[[float], str]) -> str:
    return parts_text(measured_parts(m, fmt))


def _spread(s: Spread | None, fmt: Callable[[float], str]) -> str:
    return parts_text(spread_parts(s, fmt))


def _counts(values: list[int], noun: str) -> str:
    """ "376 examples", "376 examples each", "332, 339 served"."""
    if len(values) == 1:
        return f"{values[0]:,} {noun}"
    if len(set(values)) == 1:
        return f"{values[0]:,} {noun} each"
    return f"{', '.join(f'{v:,}' for v in values)} {noun}"


def cache_text(row: CostRow) -> str:
    """Per seed, where the cell's backbone features came from, grouped by state, with the examples served from the
    cache and computed: "computed in the cell (2 seeds, 500 examples each); partly served from the cache (seed 2:
    437 served, 63 computed)"; "–": the method has no feature cache."""
    if not row.cache:
        return "–"
    parts = []
    for state in CACHE_STATES:
        seeds = [c for c in row.cache if c.state == state]
        n = f"seed {seeds[0].seed}" if len(seeds) == 1 else f"{len(seeds)} seeds"
        if not seeds:
            continue
        if state == UNUSED:
            parts.append(f"{state} ({n})")
        elif state == COLD:
            parts.append(f"{state} ({n}, {_counts([c.computed for c in seeds], 'examples')})")
        elif state == WARM:
            parts.append(f"{state} ({n}, {_counts([c.hits for c in seeds], 'examples')})")
        else:
            served, computed = (
                _counts([c.hits for c in seeds], "served"),
                _counts([c.computed for c in seeds], "computed"),
            )
            parts.append(f"{state} ({n}: {served}, {computed})")
    return "; ".join(parts)


def merged_parts(row: CostRow) -> list[Part]:
    """Merged test ex/s with the merge's largest output difference below it; why merging failed, where it did."""
    if row.merged_ex_s.value is None and row.merged_ex_s.warm is None:
        return [("failed", ""), *((e, "note") for e in row.merge_errors)] if row.merge_errors else [("–", "")]
    speedup = [] if row.merge_speedup is None else [(f"{row.merge_speedup.median:.2f}x unmerged", "note")]
    diff = [] if row.merge_max_abs_diff is None else [(f"max abs diff {row.merge_max_abs_diff:.1e}", "note")]
    return [*measured_parts(row.merged_ex_s, rate), *speedup, *diff]


# ---------------------------------------------------------------------------------------------- answers
def _value(s: Spread | None, fmt: Callable[[float], str], unit: str, of: int = 0) -> str:
    """ "1.1 s"; "0.5 s (1 of 3 seeds)" when the median rests on fewer seeds than the row has (its cold ones)."""
    if s is None:
        return "–"
    fewer = f" ({s.n} of {of} seeds)" if s.n < of else ""
    return f"{fmt(s.median)}\u00a0{unit}{fewer}"  # no break between the number and its unit


def answer_lines(a: Answer, fmt: Callable[[float], str], unit: str) -> tuple[str, list[str]]:
    """(the best, with its median; the lines below it: the runner-up, the methods left out and why)."""
    if not a.best:
        head = "no cold measurement"
    else:
        head = f"{', '.join(a.best)}: {_value(a.value, fmt, unit, a.best_of)}"
    lines = []
    if a.runner_up is not None:
        overlap = ", ranges overlap" if a.overlap else ""
        lines.append(f"next: {a.runner_up} {_value(a.runner_value, fmt, unit, a.runner_of)}{overlap}")
    none = [x for x in a.left if x.why == NO_TRAINING]
    if none:
        paid = [x.method + ("" if x.value is None else f" (test {rate(x.value)}\u00a0ex/s)") for x in none]
        lines.append(f"no training: {', '.join(paid)}")
    warm = [x for x in a.left if x.why != NO_TRAINING]
    if warm:
        lines.append(f"{', '.join(x.method for x in warm)}: not ranked (warm cache)")
    lines += [f"{m} merged: {x:.2f}x unmerged" for m, x in a.speedups]
    return head, lines


def _answer_cells(a: Answers) -> list[tuple[str, list[str]]]:
    return [
        answer_lines(a.train, seconds, "s"),
        answer_lines(a.serve, rate, "ex/s"),
        answer_lines(a.memory, mib, "MiB"),
        answer_lines(a.store, saved_mib, "MiB"),
    ]


ANSWER_HEADER = [
    "task",
    "budget",
    "fastest to train",
    "fastest to serve",
    "lightest in peak memory",
    "smallest to store",
]

ANSWER_NOTE = (
    'Per task and budget, the method with the best median over seeds, and the runner-up ("ranges overlap": their '
    "ranges over seeds overlap, so the seeds do not separate them). Fastest to train: the least training time, every "
    "candidate of nested tuning included (tuning s where the cell tuned, else train s). Fastest to serve: the most "
    "test examples per second over the whole test set (LoRA unmerged, as evaluated; what merging its adapters "
    "changes, merged / unmerged speed on the same 256 test examples, is named below). Lightest: the least peak memory. "
    "Smallest to store: the fewest bytes saved beside the base model (the task head not counted). Few- and "
    "zero-shot predictors take no training steps: they are named apart, with the test speed they pay instead. Seeds "
    "served features from the feature cache skipped the backbone pass: their costs are not used, and a method with "
    "only such seeds is named as not ranked."
)


def machine_line(rows: Sequence[CostRow]) -> str:
    """How many records, what peak memory measures and what MFU is against, for one machine's rows."""
    kinds = sorted({row.peak_mem_kind for row in rows if row.peak_mem_kind})
    basis = sorted({b for row in rows for b in row.mfu_basis})
    seeds = sum(row.seeds for row in rows)
    mem = "; ".join(MEM_KIND.get(k, k) for k in kinds) or "not recorded"
    return f"{seeds} ok records on this machine. Peak memory: {mem}. MFU basis: {'; '.join(basis) or 'none recorded'}."


# ------------------------------------------------------------------------------------------ detail tables
Cell = tuple[list[Part], float | str | None]  # the parts, and what the column sorts by ("": last)


@dataclass(frozen=True)
class Column:
    """A column of the per-task tables: its header, its cell for a row, and what it is in words (the legend; "{mem}"
    is what peak memory measures on the machine)."""

    header: str
    cell: Callable[[CostRow], Cell]
    words: str


def _measured(get: Callable[[CostRow], Measured], fmt: Callable[[float], str]) -> Callable[[CostRow], Cell]:
    """A cache-dependent measure; it sorts by its cold median (warm-only rows last: never ranked among cold ones)."""
    return lambda row: (measured_parts(get(row), fmt), get(row).value.median if get(row).value else "")


def _spread_cell(get: Callable[[CostRow], Spread | None], fmt: Callable[[float], str]) -> Callable[[CostRow], Cell]:
    return lambda row: (spread_parts(get(row), fmt), get(row).median if get(row) else "")


COLUMNS = (
    Column("method", lambda row: ([(row.method, "")], row.method), "the adaptation method."),
    Column("budget", lambda row: ([(budget_text(row.budget), "")], row.budget or 10**9),
           "labelled training examples (all: the whole pool)."),
    Column("seeds", lambda row: ([(str(row.seeds), "")], row.seeds),
           "records (one per seed) in the row. Every number is the median over them with their range, "
           "\"22 (20–270)\" (on the page the range is in grey below the median); one seed, or every seed the "
           "same: the value alone. \"–\": not measured."),
    Column("feature cache", lambda row: ([(cache_text(row), "")], None),
           "for methods that read backbone features through the cache shared across cells: per seed whether they "
           "were computed in the cell or served from the cache, with the examples served and computed. A served "
           f"(warm) seed's {CACHE_DEPENDENT} are shown apart, after \"warm:\"; the column sorts by the cold seeds."),
    Column("train ex/s", _measured(lambda r: r.train_ex_s, rate),
           "training examples per second over the timed steps (warm-up steps excluded); \"–\" for methods that "
           "take no steps through the backbone (a frozen backbone's head trains on cached features: its cost is in "
           "train s)."),
    Column("test ex/s", _measured(lambda r: r.test_ex_s, rate),
           "test examples per second, as the test set was evaluated (methods on cached features: the backbone's "
           "pass over the test set included, unless the features came from the cache)."),
    Column("merged ex/s", lambda row: (merged_parts(row), row.merged_ex_s.value.median if row.merged_ex_s.value
                                       else ""),
           "mergeable methods (LoRA): test examples per second on the first 256 test examples (not the whole test "
           "set: compare it with unmerged ex/s, not with test ex/s) with the adapters folded into the weights; below "
           "it the median speed-up over unmerged, and max abs diff: the largest output difference from the unmerged "
           "model over seeds (merging must keep the function)."),
    Column("unmerged ex/s", _measured(lambda r: r.unmerged_ex_s, rate),
           "the same examples with the adapters kept separate, timed just before."),
    Column("peak mem MiB", _measured(lambda r: r.peak_mem, mib), "peak memory of the cell: {mem}."),
    Column("own Δ MiB", _measured(lambda r: r.peak_mem_delta, mib),
           "the cell's own increase over the memory it started with."),
    Column("saved MiB", _spread_cell(lambda r: r.saved_bytes, saved_mib),
           "bytes of backbone tensors the method changed or added: what must be stored beside the base model "
           "(the task head comes on top)."),
    Column("fwd FLOPs/ex", _spread_cell(lambda r: r.fwd_flops, flops),
           "forward FLOPs per example (k, M, G: 10^3, 10^6, 10^9), counted on the model (multiply-adds as 2; "
           "bench/run/flops.py)."),
    Column("train FLOPs/ex", _spread_cell(lambda r: r.train_flops, flops),
           "training FLOPs per training example seen, backward included as the method needs it."),
    Column("MFU", _spread_cell(lambda r: r.mfu, percent),
           "achieved training FLOP/s (train FLOPs/ex x train ex/s) over the peak of the machine's basis, named "
           "above the table."),
    Column("train s", _measured(lambda r: r.train_s, seconds),
           "training time of the run that produced the tested model (its refit included; on cached features: the "
           "backbone pass plus the head's training)."),
    Column("tuning s", _measured(lambda r: r.tuning_s, seconds),
           "nested tuning's training time over every candidate and fold (the selected run included)."),
    Column("wall s", _measured(lambda r: r.wall_s, seconds),
           "the whole cell: loading, forgetting probes (whose base-model value may come from the probe cache), "
           "tuning, training and test."),
)  # fmt: skip
HEADER = [c.header for c in COLUMNS]


def row_cells(row: CostRow) -> list[list[Part]]:
    """The cells of ``COLUMNS`` for one row, each as its parts."""
    return [c.cell(row)[0] for c in COLUMNS]


def _short(text: str, limit: int = 160) -> str:
    """A long note (a list of module names) cut at a comma before ``limit`` characters, the cut marked."""
    if len(text) <= limit:
        return text
    cut = text.rfind(", ", 0, limit)
    return f"{text[: cut if cut > 0 else limit]}, and more"


def table_notes(rows: Sequence[CostRow]) -> list[str]:
    """What a machine's rows need said under their table: why MFU is missing, MFU over 100%, warm seeds."""
    notes = []
    missing: dict[str, list[str]] = {}
    for row in rows:
        if row.mfu_missing:
            missing.setdefault(row.mfu_missing, [])
            if row.method not in missing[row.mfu_missing]:
                missing[row.mfu_missing].append(row.method)
    notes += [f"MFU – for {', '.join(methods)}: {_short(why).rstrip('.')}." for why, methods in missing.items()]
    over = sorted({row.method for row in rows if row.mfu is not None and row.mfu.high > 1})
    if over:
        cpu = "the CPU basis is one 2048x2048 fp32 matrix multiply, measured once per machine and cached (a busy " \
              "machine measures it low), and " if any(not row.machine.is_gpu for row in rows) else ""  # fmt: skip
        notes.append(
            f"MFU above 100% ({', '.join(over)}) is not a fraction of what the hardware can do: {cpu}the FLOPs are "
            "counted per example at one test batch's padded length. Compare MFU between methods of one machine only."
        )
    warm = [row for row in rows if row.cold_seeds < row.seeds]
    if warm:
        names = ", ".join(f"{row.method} @ {budget_text(row.budget)}" for row in warm)
        notes.append(
            f'Warm-cache seeds ({names}): their {CACHE_DEPENDENT} are shown apart, after "warm:"; they skipped the '
            "backbone pass, so they are not a cold cell's cost."
        )
    return notes


def legend(rows: Sequence[CostRow]) -> list[tuple[str, str]]:
    """(column, what it is): each column defined once, in ``COLUMNS``."""
    kinds = sorted({row.peak_mem_kind for row in rows if row.peak_mem_kind})
    mem = "; ".join(MEM_KIND.get(k, k) for k in kinds) or "the measure the records name"
    return [(c.header, c.words.replace("{mem}", mem)) for c in COLUMNS]


def _by_machine(report: HardwareReport) -> list[tuple[Machine, list[CostRow], list[Answers]]]:
    return [
        (m, [r for r in report.rows if r.machine == m], [a for a in report.answers if a.machine == m])
        for m in report.machines
    ]


def _tasks(rows: Sequence[CostRow]) -> list[str]:
    return sorted({row.task for row in rows}, key=task_rank)


# ------------------------------------------------------------------------------------------------- HTML
def _cell(parts: Sequence[Part], value: float | str | None, first: bool = False, wrap: bool = False) -> TD:
    """The parts one below the other, the range and notes in grey, sorting by ``value``; numbers never wrap (the
    table scrolls in its box, its method and budget columns staying in view), the feature cache's words do."""
    body = "<br>".join(esc(t) if not role else f"<span class='meta'>{esc(t)}</span>" for t, role in parts)
    if wrap:
        return TD(body, value=value, raw=True, cls="l", style="white-space:normal;min-width:12rem")
    return TD(body, value=value, raw=True, cls="l" if first else "")


def hardware_entries(data: ReportData) -> list[tuple[str, str]]:
    return [(ANCHOR, TITLE)] if data.hardware.rows else []


def _answer_td(head: str, lines: list[str]) -> TD:
    name, _, value = head.partition(": ")
    text = f"<b>{esc(name)}</b>: {esc(value)}" if value else esc(head)
    text += "".join(f"<br><span class='meta'>{esc(line)}</span>" for line in lines)
    return TD(text, raw=True, cls="l")


def hardware_html(data: ReportData) -> list[str]:
    report = data.hardware
    groups = _by_machine(report)
    out = [
        f"<section id='{ANCHOR}'><h2>{esc(TITLE)}</h2>",
        "<p class='meta'>Which method is cheapest to train, to serve, to run and to store on the machine that ran "
        "the records, measured on it. Records of different machines are never pooled: each machine has its own "
        "tables.</p>",
    ]
    for machine, rows, found in groups:
        out.append(f"<h3>Answers: {esc(machine.label())}</h3>")
        out.append(f"<p class='meta'>{esc(machine_line(rows))}</p>")
        body = [
            [TD(a.task, cls="l"), budget_text(a.budget), *(_answer_td(h, ls) for h, ls in _answer_cells(a))]
            for a in found
        ]
        out.append(table(ANSWER_HEADER, body, cls="answers"))
        out.append(f"<p class='meta'>{esc(ANSWER_NOTE)}</p>")
    for task in _tasks(report.rows):
        for machine, rows, _ in groups:
            mine = [r for r in rows if r.task == task]
            if not mine:
                continue
            out.append(f"<h3>{esc(task)} on {esc(machine.label())}</h3>")
            body = [[_cell(*c.cell(row), first=i == 0, wrap=c.header == "feature cache")
                     for i, c in enumerate(COLUMNS)] for row in mine]  # fmt: skip
            out.append(table(HEADER, body, cls="sortable"))
            out += [f"<p class='meta'>{esc(n)}</p>" for n in table_notes(mine)]
    out.append("<p class='meta'><b>The columns</b></p><ul class='meta' style='columns:2 26rem;margin-top:0'>")
    out += [f"<li><b>{esc(c)}</b>: {esc(d)}</li>" for c, d in legend(report.rows)]
    out.append("</ul>")
    out.append("</section>")
    return out


# --------------------------------------------------------------------------------------------- Markdown
def _md(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"


def hardware_markdown(data: ReportData) -> list[str]:
    """summary.md's form: the same numbers in the same order."""
    report = data.hardware
    groups = _by_machine(report)
    lines = [f"## {TITLE}", ""]
    for machine, rows, found in groups:
        lines += [f"### Answers: {machine.label()}", "", machine_line(rows), ""]
        lines += [_md(ANSWER_HEADER), "|---" * len(ANSWER_HEADER) + "|"]
        for a in found:
            cells = ["; ".join([h, *ls]) for h, ls in _answer_cells(a)]
            lines.append(_md([a.task, budget_text(a.budget), *cells]))
        lines += ["", ANSWER_NOTE, ""]
    for task in _tasks(report.rows):
        for machine, rows, _ in groups:
            mine = [r for r in rows if r.task == task]
            if not mine:
                continue
            lines += [f"### {task} on {machine.label()}", "", _md(HEADER), "|---" * len(HEADER) + "|"]
            lines += [_md([parts_text(c) for c in row_cells(r)]) for r in mine]
            lines += ["", *(f"- {n}" for n in table_notes(mine)), ""]
    lines += ["Columns:", "", *(f"- **{c}**: {d}" for c, d in legend(report.rows))]
    return lines
