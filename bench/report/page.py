"""Records -> one self-contained HTML report per suite, summary.md and the records as CSV and Parquet.

Every number shown is computed from the suite's records at report time (``bench.report.data``); nothing is typed in.
The page is its sections (``bench.report.sections``), in order: a table of contents and an overview (what ran,
hardware, code versions, dates, wall time, how the cells went), the decision map, the primary metric of every method
at every (task, budget) at a glance, the sweeps and the figures across tasks; then per task its figures and a
sortable leaderboard with each row's records in a collapsed drill-down; then the cells that failed, timed out or are
unsupported, with their reason. summary.md carries the sections that have a Markdown form; records.csv and
records.parquet (``bench.report.exports``) hold one row per record.
"""

from __future__ import annotations

import html
from pathlib import Path

from bench.core.record import Record
from bench.core.store import Store, atomic_write_text
from bench.report.data import ReportData, build_report
from bench.report.exports import write_exports
from bench.report.html import CSS, SCRIPT
from bench.report.sections import SECTIONS
from bench.suite import shown_records

REPORTS_ROOT = Path(__file__).resolve().parents[2] / "reports"


def page_html(data: ReportData) -> str:
    """The page: the head, the contents and the body, both from ``SECTIONS``."""
    esc = html.escape
    present = [(section, section.entries(data)) for section in SECTIONS]
    present = [(section, entries) for section, entries in present if entries]
    contents = [entry for _, entries in present for entry in entries]
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
        f"content='width=device-width,initial-scale=1'><title>adaptbench: {esc(data.suite)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>adaptbench report: suite <code>{esc(data.suite)}</code></h1>",
        f"<p class='meta'>Generated {esc(data.overview.generated)} from the records in "
        f"<code>{esc(data.overview.source)}</code>.</p>",
        "<nav class='toc'><b>Contents</b><ol>"
        + "".join(f"<li><a href='#{a}'>{esc(title)}</a></li>" for a, title in contents)
        + "</ol></nav>",
    ]
    for section, _ in present:
        out += section.html(data)
    out.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(out)


def summary_markdown(data: ReportData) -> str:
    """summary.md: the title, then every present section that has a Markdown form, in the page's order."""
    lines = [f"# adaptbench report: suite {data.suite}", ""]
    first = True
    for section in SECTIONS:
        if section.markdown is None or not section.entries(data):
            continue
        lines += ([] if first else [""]) + section.markdown(data)
        first = False
    return "\n".join(lines)


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
    beside them records.csv and records.parquet of every record read (``role``: whether the page shows it, a sweep
    cell or a cell outside the suite) with their data dictionary records.md."""
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
    write_exports(read, out, shown={r.key for r in records}, tables=data.tables)
    for note in notes:
        print(f"note: {note}")
    return out / "index.html"
