"""The report's sections, each declared once: its entries in the table of contents, its HTML and, when summary.md
carries it, its Markdown. The page (``bench.report.page``) renders the contents and the body from ``SECTIONS`` and
summary.md from the same list, so a new section is one ``Section`` here and nothing else; a section with no entry
(nothing to show) is left out of the contents and the body alike.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

from bench.analysis.flags import DEGENERATE_ROWS, NOT_HELD_OUT, legend
from bench.analysis.overview import method_rank, task_rank
from bench.analysis.rules import FAMILY as RULES_FAMILY
from bench.analysis.tables import spec_or_none
from bench.report import profile_section as prof
from bench.report import references_section as refs
from bench.report.data import METHODOLOGY, ReportData
from bench.report.decision import EXPLAINED as DECISION_EXPLAINED
from bench.report.decision import decision_html as map_html
from bench.report.decision import decision_markdown as map_markdown
from bench.report.decision import map_rows
from bench.report.glossary import glossary_html, glossary_markdown
from bench.report.hardware import hardware_entries, hardware_html, hardware_markdown
from bench.report.heatmap import LEGEND
from bench.report.html import TD, anchor, table
from bench.report.leaderboard import AGAINST_NOTE, BOARD_FLAGS, CAVEATS, COSTS_NOTE, leaderboard_html
from bench.report.markdown import markdown_tables
from bench.report.plots import NARROW_PX, Plot, task_figures
from bench.report.text import rule_text

esc = html.escape


@dataclass(frozen=True)
class Section:
    """``entries(data)``: (anchor, title) pairs for the contents, one per part (empty: the section is absent);
    ``html(data)``: the section's HTML, wrapped in its ``<section>`` elements; ``markdown(data)``: its summary.md
    lines (None: the page only)."""

    entries: Callable[[ReportData], list[tuple[str, str]]]
    html: Callable[[ReportData], list[str]]
    markdown: Callable[[ReportData], list[str]] | None = None


def figure_html(plot: Plot) -> str:
    """A figure as an inline PNG with its alt text and caption; with a narrow layout, that one in windows up to
    ``NARROW_PX`` wide (where the wide one would shrink past reading)."""
    img = f"<img alt='{esc(plot.alt)}' src='data:image/png;base64,{plot.png}'>"
    if plot.narrow:
        source = f"<source media='(max-width: {NARROW_PX}px)' srcset='data:image/png;base64,{plot.narrow}'>"
        img = f"<picture>{source}{img}</picture>"
    return f"<figure>{img}<figcaption class='meta'>{esc(plot.caption)}</figcaption></figure>"


def _when(condition: Callable[[ReportData], object], anchor_id: str, title: str):
    return lambda data: [(anchor_id, title)] if condition(data) else []


# ---------------------------------------------------------------------------------------------- overview
def overview_html(data: ReportData) -> list[str]:
    ov = data.overview
    return [
        "<section id='overview'><h2>Overview</h2>",
        "<div class='scroll'><table class='kv'>"
        + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in ov.rows())
        + "</table></div>",
        f"<p class='meta'>{esc(METHODOLOGY)}</p>",
        *(f"<p class='meta'>{esc(note)}</p>" for note in data.notes),
        *(f"<p class='bad'>Warning: {esc(w)} (not in this report; the grid recomputes it)</p>" for w in data.warnings),
        "</section>",
    ]


def overview_markdown(data: ReportData) -> list[str]:
    lines = [*data.overview.markdown(), ""]
    return lines + [f"- {note}" for note in data.notes] + [f"- warning: {w}" for w in data.warnings]


# ------------------------------------------------------------------------------------------ decision map
def decision_html(data: ReportData) -> list[str]:
    """The decision map (``bench.analysis.decision_map``, the same as ``adaptbench summary``): the verdict per
    (task, budget) with what it rests on (``bench.report.decision``)."""
    return [
        "<section id='decision-map'>",
        "<h2>Decision map</h2>",
        f"<p class='meta'>{esc(rule_text())}</p>",
        f"<p class='meta'>{esc(DECISION_EXPLAINED)}</p>",
        map_html(map_rows(data.decisions, data.tables)),
        "</section>",
    ]


def decision_markdown(data: ReportData) -> list[str]:
    return ["## Decision map", "", DECISION_EXPLAINED, "", *map_markdown(map_rows(data.decisions, data.tables))]


# ------------------------------------------------------------------------------------------- at a glance
def glance_html(data: ReportData) -> list[str]:
    return [
        "<section id='at-a-glance'><h2>Primary test metric at a glance</h2>",
        f"<p class='meta'>Hover a cell for its seeds. {esc(LEGEND)}</p>",
        data.heatmap.html(),
        "</section>",
    ]


def glance_markdown(data: ReportData) -> list[str]:
    return ["## Primary test metric at a glance", "", LEGEND, "", *data.heatmap.markdown()]


# ------------------------------------------------------------------------------------------ rules of thumb
RULE_HEADER = ["task", "budget", "rule", "verdict", "estimate [95%]"]


def rules_html(data: ReportData) -> list[str]:
    rows = [
        [
            TD(r.task, cls="l"),
            str(r.budget or "all"),
            TD(r.claim, cls="l"),
            TD(r.verdict, cls="l"),
            TD(r.estimate, cls="l"),
        ]
        for r in data.rules
    ]
    return [
        "<section id='rules'><h2>Rules of thumb</h2>",
        f"<p class='meta'>What practitioners adapt by (DOMAIN.md), each as a quantity the records estimate, with a "
        f"verdict: holds, fails, inconclusive, or not tested where the suite ran none of the methods it names. "
        f"The family: {esc(RULES_FAMILY)}. How each rule is turned into a test: bench/analysis/rules.py.</p>",
        table(RULE_HEADER, rows),
        "</section>",
    ]


def rules_markdown(data: ReportData) -> list[str]:
    lines = ["## Rules of thumb", "", f"The family: {RULES_FAMILY}.", "", "| " + " | ".join(RULE_HEADER) + " |"]
    lines.append("|---" * len(RULE_HEADER) + "|")
    for r in data.rules:
        cells = [r.task, str(r.budget or "all"), r.claim, r.verdict, r.estimate]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return lines


# ------------------------------------------------------------------------------------------------ sweeps
def sweeps_html(data: ReportData) -> list[str]:
    """The sweeps behind the tuned cells (``bench.analysis.sweeps``): values tried, validation scores, the choice."""
    lines = []
    for row in sorted(data.sweeps, key=lambda row: (task_rank(row.task), row.method)):
        tried = "; ".join(  # each value with its score on one line ("lr=5e-05: 0.788" never breaks at the "-")
            f"<span class='nw'>{esc(v)}: {'–' if s is None else f'{s:.3f}'}</span>" for v, s in row.tried
        )
        chosen = row.chosen + (" (at the grid's edge)" if row.at_edge else "")
        cells = [row.task, row.method, str(row.budget), ",".join(map(str, row.seeds)), row.on]
        lines.append([*(TD(c, cls="l") for c in cells), TD(tried, cls="l", raw=True), TD(chosen, cls="l")])
    header = ["task", "method", "budget", "seeds", "validation metric", "tried (mean validation score)", "chosen"]
    return [
        "<section id='sweeps'>",
        "<h2>Hyperparameter sweeps</h2>",
        "<p class='meta'>Each tuned method's value was chosen once per task on validation (mean over the sweep's "
        "seeds, at the sweep's budget) and reused for every budget and seed of its block. The sweep cells are "
        "records of their own; they are not in the tables below. A choice at the grid's edge may have a better "
        "value outside the grid.</p>",
        table(header, lines),
        "</section>",
    ]


def tuning_html(data: ReportData) -> list[str]:
    """Nested tuning (``bench.run.tuning``): what each seed chose on its own validation data, and how."""
    lines = []
    for row in sorted(data.tuning, key=lambda row: (task_rank(row.task), row.method, row.budget)):
        picks = "; ".join(f"<span class='nw'>s{s}: {esc(v)}</span>" for s, v in row.chosen)
        n = len(row.chosen)
        notes = [f"widened {row.widened}/{n}" if row.widened else "", f"lengthened {row.lengthened}/{n}"
                 if row.lengthened else "", f"at the edge after widening {row.at_edge}/{n}" if row.at_edge else "",
                 f"still improving {row.still_improving}/{n}" if row.still_improving else ""]  # fmt: skip
        cells = [row.task, row.method, str(row.budget or "all"), row.space, row.selection]
        lines.append(
            [*(TD(c, cls="l") for c in cells), TD(picks, cls="l", raw=True), TD(f"{row.steps:.0f}"),
             TD("; ".join(x for x in notes if x) or "–", cls="l")]
        )  # fmt: skip
    header = ["task", "method", "budget", "space", "selection", "chosen per seed", "steps per seed", "notes"]
    return [
        "<section id='tuning'>",
        "<h2>Nested tuning</h2>",
        "<p class='meta'>Every seed tuned its own hyperparameters on its own labelled examples (successive halving; a "
        "best value at a grid's edge added the next value outward; k-fold selection with a refit on small budgets; a "
        "run still improving at its end was run again twice as long), so the intervals over seeds include the "
        "tuning's noise. Steps per seed count every candidate and fold.</p>",
        table(header, lines),
        "</section>",
    ]


# ------------------------------------------------------------------------------------------ across tasks
def across_html(data: ReportData) -> list[str]:
    figures = [figure_html(p) for p in data.cross_figures]
    return ["<section id='across-tasks'><h2>Across tasks</h2>", *figures, "</section>"]


# ------------------------------------------------------------------------------------------------ tasks
def _tasks(data: ReportData) -> list[str]:
    return sorted(data.tables, key=task_rank)


def tasks_html(data: ReportData) -> list[str]:
    out = []
    for task in _tasks(data):
        rows = data.tables[task]
        spec = spec_or_none(task)
        primary = spec.primary_metric if spec else "accuracy"
        first = sorted(rows, key=lambda r: (method_rank(r.method), r.budget))[0]
        before = "not measured" if first.probe_before is None else f"{first.probe_before:.3f}"
        out.append(f"<section id='{anchor('task', task)}'>")
        out.append(
            f"<h2>{esc(task)}</h2><p class='meta'>{esc(spec.description if spec else '')}; primary metric test/"
            f"{esc(primary)} ({spec.direction if spec else 'higher is better'}); default "
            f"backbone {esc(spec.backbone if spec else '?')}; forgetting probe {esc(str(first.probe))} "
            f"(base model: {before}).</p>"
        )
        out.extend(figure_html(plot) for plot in task_figures(task, data.ok, data.store))
        # one table builder for every task (a task this checkout does not register: no flags, primary accuracy)
        out.append(leaderboard_html(task, rows, spec, [d for d in data.decisions if d.task == task]))
        out.append(
            f"<p class='meta'>Flags: {esc(legend(BOARD_FLAGS))}; {esc(CAVEATS)}. {esc(AGAINST_NOTE)} "
            f"{esc(COSTS_NOTE)} Click a column header to sort.</p>"
        )
        if any(r.n_degenerate for r in rows):
            out.append(f"<p class='bad'>{esc(DEGENERATE_ROWS)}</p>")
        out.append("</section>")
    return out


def tasks_markdown(data: ReportData) -> list[str]:
    return ["## Per task", "", markdown_tables(data.tables, data.decisions)]


# ---------------------------------------------------------------------------------------------- not ok
def not_ok_html(data: ReportData) -> list[str]:
    lines = []
    for r in sorted(data.not_ok, key=lambda r: (task_rank(r.task), r.method, r.budget, r.seed)):
        reason = (r.error or "").strip().splitlines()
        cell = f"{r.task} x {r.method} @ {r.budget} seed {r.seed}"
        lines.append([cell, r.status, TD(reason[-1] if reason else "", cls="l")])
    return [
        "<section id='not-ok'><h2 class='bad'>Cells that did not produce results</h2>",
        table(["cell", "status", "reason"], lines),
        "</section>",
    ]


# ------------------------------------------------------------------------------------------------ glossary
def _pairs(data: ReportData) -> list[tuple[str, str]]:
    return sorted({(r.task, r.method) for r in data.ok})


def glossary_section_html(data: ReportData) -> list[str]:
    return glossary_html(_pairs(data))


def glossary_section_markdown(data: ReportData) -> list[str]:
    return glossary_markdown(_pairs(data))


SECTIONS: tuple[Section, ...] = (
    Section(lambda data: [("overview", "Overview")], overview_html, overview_markdown),
    Section(_when(lambda d: d.decisions, "decision-map", "Decision map"), decision_html, decision_markdown),
    Section(_when(refs.shown, refs.ANCHOR, refs.TITLE), refs.references_html, refs.references_markdown),
    Section(
        _when(lambda d: d.heatmap.rows, "at-a-glance", "Primary test metric at a glance"), glance_html, glance_markdown
    ),
    Section(hardware_entries, hardware_html, hardware_markdown),
    Section(_when(lambda d: d.rules, "rules", "Rules of thumb"), rules_html, rules_markdown),
    Section(
        _when(prof.shown, prof.ANCHOR, prof.TITLE), lambda d: prof.profile_html(d, figure_html), prof.profile_markdown
    ),
    Section(_when(lambda d: d.sweeps, "sweeps", "Hyperparameter sweeps"), sweeps_html),
    Section(_when(lambda d: d.tuning, "tuning", "Nested tuning"), tuning_html),
    Section(_when(lambda d: d.cross_figures, "across-tasks", "Across tasks"), across_html),
    Section(lambda data: [(anchor("task", t), t) for t in _tasks(data)], tasks_html, tasks_markdown),
    Section(_when(lambda d: d.not_ok, "not-ok", "Cells that did not produce results"), not_ok_html),
    Section(_when(lambda d: d.ok, "glossary", "Glossary"), glossary_section_html, glossary_section_markdown),
)

__all__ = ["NOT_HELD_OUT", "SECTIONS", "Section"]
