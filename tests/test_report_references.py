"""The report's "Published references" section (bench.report.references_section): the numbers and verdicts of
`adaptbench references` (bench.analysis.references), shown whenever a record matches a published reference.
Run: `.venv/bin/python -m pytest tests/test_report_references.py -q`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.analysis.references import compare, load_references, references_text
from bench.catalog import resolve
from bench.core.api import Cell
from bench.core.record import Cost, SplitSizes, new_record
from bench.core.store import Store
from bench.report import references_section as refs
from bench.report.data import build_report
from bench.report.sections import SECTIONS

BASELINES = Path(__file__).resolve().parent.parent / "results" / "baselines"


def _records(method: str, aurocs: list[float], budget: int = 0, task: str = "pneumonia-mnist"):
    out = []
    for seed, a in enumerate(aurocs):
        cell = Cell(task, method, budget, seed, {"validation": "oracle"}, suite="anchors")
        r = new_record(resolve(cell), "ok")
        r.metrics = {"test/auroc": a, "test/accuracy": a - 0.1}
        r.cost = Cost(device="cpu", epochs=1.6)
        r.splits = SplitSizes(train=4708, val=524, test=624)
        out.append(r)
    return out


def _committed(folder: str):
    store = Store(BASELINES / folder)
    records = [r for suite in store.suites() for r in store.records(suite)]
    return records, build_report("anchors", records, labels_from_data=False)


def _section(data) -> tuple[str, str]:
    return "\n".join(refs.references_html(data)), "\n".join(refs.references_markdown(data))


def test_the_section_comes_after_the_decision_map_and_only_with_a_matching_record():
    mine = [i for i, s in enumerate(SECTIONS) if s.markdown is refs.references_markdown]
    assert len(mine) == 1
    data = build_report("anchors", _records("scratch", [0.938, 0.942, 0.94]), labels_from_data=False)
    assert SECTIONS[mine[0]].entries(data) == [("references", "Published references")]
    assert SECTIONS[mine[0] - 1].entries(SimpleNamespace(decisions=[object()])) == [("decision-map", "Decision map")]
    budgets = build_report("s", _records("scratch", [0.9, 0.91, 0.92], budget=64), labels_from_data=False)
    assert SECTIONS[mine[0]].entries(budgets) == [], "a budget cell is no anchor: no section"
    other = build_report("s", _records("scratch", [0.9, 0.91], task="glue-sst2"), labels_from_data=False)
    assert not refs.shown(other), "no reference for the task"


def test_every_row_carries_the_comparison_of_adaptbench_references():
    records = [*_records("scratch", [0.938, 0.942, 0.94]), *_records("full", [0.97, 0.975, 0.98])]
    data = build_report("anchors", records, labels_from_data=False)
    html, md = _section(data)
    found = compare(records)
    assert data.references == found and len(found) == 8, "2 cells x 2 references x 2 metrics"
    rows = [line for line in md.splitlines() if line.startswith("| pneumonia-mnist")]
    assert len(rows) == len(found), "summary.md: a row per metric"
    for c, row in zip(found, rows, strict=True):
        cells = [x.strip() for x in row.strip("|").split("|")]
        published = c.reference.scores[c.metric]
        assert cells[:6] == [
            "pneumonia-mnist", f"{c.method} (efficientnet-lite0 @64px)", "all (4,708)", "3", c.reference.model,
            c.metric,
        ]  # fmt: skip
        assert cells[6:10] == [
            f"{c.ours.mean:.3f} ± {c.se_ours:.3f}",
            f"{published:.3f} ± {c.se_published:.3f}",
            f"{c.ours.mean - published:+.3f} = {c.z:+.1f} SE",
            c.verdict,
        ]
        assert cells[10].startswith("a different model: a comparison, not a reproduction; backbone")
        assert f"{c.ours.mean:.3f} ± {c.se_ours:.3f}" in html and c.verdict in html
    full = next(c for c in found if c.method == "full" and c.metric == "auroc" and "(28)" in c.reference.model)
    assert full.verdict == "above" and "initialisation (ImageNet-pretrained here, random there)" in full.differences
    assert "Source: Yang et al., MedMNIST v2, Scientific Data 10:41 (2023), Table 3" in html
    assert html.count("<tr>") == 1 + 4, "the page: a row per cell and reference, a line per metric"


def test_without_the_test_counts_the_row_reads_the_band():
    ref = replace(next(r for r in load_references() if r.model == "ResNet-18 (28)"), test_counts=())
    c = next(c for c in compare(_records("scratch", [0.938, 0.942, 0.94]), [ref]) if c.metric == "auroc")
    metric, ours, published, difference, verdict = refs.metric_cells(c)
    assert metric == "auroc"
    assert ours == c.ours.describe() and "[" in ours, "the mean with its 95% interval over seeds"
    assert (published, difference, verdict) == ("0.944 (band ±0.020)", "-0.004", c.verdict)


def test_a_reference_task_in_the_report_without_a_whole_training_set_cell_is_named():
    records = [*_records("scratch", [0.9, 0.91, 0.92]), *_records("full", [0.8, 0.85], budget=64, task="breast-mnist")]
    data = build_report("anchors", records, labels_from_data=False)
    html, md = _section(data)
    assert "breast-mnist: no whole-training-set cell (budget 0) in this report to compare." in md
    assert "breast-mnist: no whole-training-set cell" in html


@pytest.mark.parametrize("folder", ["medmnist-v2-cpu", "anchors-cpu"])
def test_the_committed_anchor_records_show_what_adaptbench_references_prints(folder):
    records, data = _committed(folder)
    html, md = _section(data)
    text = references_text(records)
    assert data.references and len(data.references) == len(compare(records))
    for c in data.references:  # the CLI line and the table hold the same numbers
        line = c.describe()
        assert line in text.splitlines()
        ours, published = (
            f"{c.ours.mean:.3f} ± {c.se_ours:.3f}",
            f"{c.reference.scores[c.metric]:.3f} ± {c.se_published:.3f}",
        )
        assert (
            f"{ours} over" in line and f"{published} (" in line and f" = {c.z:+.1f} combined SE): {c.verdict}" in line
        )
        assert f"| {c.metric} | {ours} | {published} | " in md and f" = {c.z:+.1f} SE | {c.verdict} | " in md
    if folder == "medmnist-v2-cpu":
        row = (
            "| breast-mnist | scratch (medmnist-resnet18 @28px) | all (546) | 2 | ResNet-18 (28) | auroc | "
            "0.890 ± 0.025 | 0.901 ± 0.024 | -0.011 = -0.3 SE | reproduced | same setup |"
        )
        assert row in md
        assert "0.890 ± 0.025" in html and "0.901 ± 0.024" in html and "reproduced" in html
    else:
        assert "| pneumonia-mnist | full (efficientnet-lite0 @64px) | all (4,708) | 3 | ResNet-18 (28) | auroc | " in md
        assert "| 0.972 ± 0.006 | 0.944 ± 0.009 | +0.028 = +2.5 SE | above |" in md
