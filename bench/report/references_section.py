"""The report's section "Published references": the suite's whole-training-set cells against the published test
scores of ``bench/published/*.toml``, as ``adaptbench references`` prints them (``bench.analysis.references``: the
comparisons, standard errors, differences and verdicts are its, not recomputed here), one table per source, with
the Markdown form.

Present whenever a record of the report matches a reference (an ok cell of a reference's task trained on the whole
training set, budget 0).
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

from bench.analysis.references import Comparison
from bench.report.html import TD, table

if TYPE_CHECKING:
    from bench.report.data import ReportData

esc = html.escape
ANCHOR, TITLE = "references", "Published references"

HEADER = [
    "task",
    "our cell",
    "budget",
    "seeds",
    "published model",
    "metric",
    "ours",
    "published",
    "difference",
    "verdict",
    "what differs in setup",
]
NOTE = (
    "Each row holds one of our whole-training-set cells (mean over its seeds) against one published model, a line "
    "per metric (in summary.md, a row per metric), as `adaptbench references` computes it "
    "(bench/analysis/references.py). Where the reference gives its test set's class counts, both sides are a mean "
    "± standard error: the test set's sampling error (accuracy: binomial; binary AUROC: Hanley and McNeil, 1982) "
    "and the seeds' spread (ours: their variance over their number; the published score is one run: our seeds' "
    "variance once); the difference is also given in combined standard errors (SE), and the verdict is reproduced "
    "when it is within 1.96 of them (within SE for another model: a match, not a reproduction), above or below "
    "when further. Without the counts, ours is the mean with its 95% interval over seeds and the verdict reads the "
    "reference's band: reproduced (the published value inside our interval, which is no wider than the band), "
    "within band, inconclusive (inside only because the interval is wider than the band), above or below. Both "
    "sides score the same official test set, so the shared item noise makes the test conservative."
)


def shown(data: ReportData) -> bool:
    return bool(data.references)


def _train_sizes(data: ReportData) -> dict[str, int]:
    """task -> the training-set size of its whole-training-set records (the budget "all" means)."""
    return {r.task: r.splits.train for r in data.ok if r.budget == 0 and r.splits and r.splits.train}


def metric_cells(c: Comparison) -> list[str]:
    """metric, ours, published, difference, verdict: ``adaptbench references``' numbers for one metric."""
    ref, published = c.reference, c.reference.scores[c.metric]
    diff = c.ours.mean - published
    if math.isnan(c.se_ours):
        ours = c.ours.describe()
        theirs = f"{published:.3f} (band ±{ref.band.get(c.metric, 0):.3f})"
        difference = f"{diff:+.3f}"
    else:
        ours = f"{c.ours.mean:.3f} ± {c.se_ours:.3f}"
        theirs = f"{published:.3f} ± {c.se_published:.3f}"
        difference = f"{diff:+.3f} = {c.z:+.1f} SE"
    return [c.metric, ours, theirs, difference, c.verdict]


def group_cells(c: Comparison, sizes: dict[str, int]) -> list[str]:
    """task, our cell, budget, seeds, published model, what differs: the same for every metric of one of our
    cells against one reference."""
    ref = c.reference
    size = f" @{c.image_size}px" if c.image_size else ""
    differs = list(c.differences) or ["same setup"]
    if c.other_model:
        differs.insert(0, "a different model: a comparison, not a reproduction")
    budget = f"all ({sizes[ref.task]:,})" if ref.task in sizes else "all"
    return [ref.task, f"{c.method} ({c.backbone}{size})", budget, str(c.ours.n), ref.model, "; ".join(differs)]


def _groups(found: list[Comparison]) -> list[list[Comparison]]:
    """The comparisons of one of our cells against one reference, together (one per metric), in order."""
    out: dict[tuple, list[Comparison]] = {}
    for c in found:
        out.setdefault((id(c.reference), c.method, c.backbone, c.image_size), []).append(c)
    return list(out.values())


def _by_source(data: ReportData) -> dict[str, list[Comparison]]:
    out: dict[str, list[Comparison]] = {}
    for c in data.references:
        out.setdefault(c.reference.citation, []).append(c)
    return out


def uncovered(data: ReportData) -> list[str]:
    """Tasks of the report that have a published reference but no whole-training-set cell to hold against it."""
    covered = {c.reference.task for c in data.references}
    tasks = {r.task for r in data.ok}
    return sorted({ref.task for ref in data.published} & tasks - covered)


def references_html(data: ReportData) -> list[str]:
    sizes = _train_sizes(data)
    out = [f"<section id='{ANCHOR}'><h2>{esc(TITLE)}</h2>", f"<p class='meta'>{esc(NOTE)}</p>"]
    for citation, found in _by_source(data).items():
        out.append(f"<p>Source: {esc(citation)}</p>")
        rows = []
        for group in _groups(found):
            task, cell, budget, seeds, model, differs = group_cells(group[0], sizes)
            lines = list(zip(*(metric_cells(c) for c in group), strict=True))  # per column, a line per metric
            per_metric = [TD("<br>".join(esc(x) for x in column), raw=True, cls="nw") for column in lines]
            per_metric[0] = TD(per_metric[0].text, raw=True, cls="l nw")
            per_metric[-1] = TD(per_metric[-1].text, raw=True, cls="l nw")
            rows.append(
                [TD(task, cls="l"), TD(cell, cls="l"), TD(budget, cls="nw"), seeds, TD(model, cls="l nw"),
                 *per_metric, TD(differs, cls="l", style="min-width:24rem")]
            )  # fmt: skip
        out.append(table(HEADER, rows))
    for task in uncovered(data):
        out.append(f"<p class='meta'>{esc(task)}: no whole-training-set cell (budget 0) in this report to compare.</p>")
    out.append("</section>")
    return out


def references_markdown(data: ReportData) -> list[str]:
    sizes = _train_sizes(data)
    lines = [f"## {TITLE}", "", NOTE]
    for citation, found in _by_source(data).items():
        lines += ["", f"Source: {citation}", "", "| " + " | ".join(HEADER) + " |", "|---" * len(HEADER) + "|"]
        for c in found:
            shared = group_cells(c, sizes)
            cells = [*shared[:5], *metric_cells(c), shared[5]]
            lines.append("| " + " | ".join(x.replace("|", "/") for x in cells) + " |")
    lines += [f"- {task}: no whole-training-set cell (budget 0) in this report to compare." for task in uncovered(data)]
    return lines


__all__ = ["ANCHOR", "TITLE", "references_html", "references_markdown", "shown"]
