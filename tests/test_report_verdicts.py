"""The verdict where it is read: the decision map names each method's mechanism and backbone, carries the caveats of
the cells behind it, the difference method − choice with its interval and the adjusted p; the glossary defines every
method, term and flag once. Records are built in code (``test_report_page._suite_records``), no models."""

from __future__ import annotations

import html

from test_report_page import _suite_records

from bench import catalog
from bench.analysis.flags import FLAGS
from bench.core.record import Selection
from bench.core.store import Store
from bench.report.decision import describe_method, map_rows
from bench.report.glossary import TERMS
from bench.report.page import build_report, page_html, summary_markdown


def _data(tmp_path, capped: bool = False):
    store = Store(tmp_path)
    _suite_records(store)
    if capped:  # lora's seeds all ended at the step cap
        for r in store.records("s"):
            if r.method == "lora":
                r.selection = Selection(on="val/accuracy", best_step=8, stopped_by="cap", stopped_at=8)
                store.write(r)
    return build_report("s", store.records("s"), store=store, labels_from_data=False)


def test_one_name_two_mechanisms_get_two_labels():
    assert catalog.method_label("fewshot", "glue-sst2") == "fewshot (in-context LM)"
    assert catalog.method_label("fewshot", "pneumonia-mnist") == "fewshot (nearest class mean)"
    assert catalog.method_label("zeroshot", "glue-sst2") == "zeroshot"
    assert catalog.method_label("lora", "glue-sst2") == "lora"


def test_the_map_row_carries_what_its_verdict_rests_on(tmp_path):
    data = _data(tmp_path, capped=True)
    [row] = [r for r in map_rows(data.decisions, data.tables) if r.task == "glue-sst2"]
    assert row.chosen.startswith("lora on minilm-l6, 3 seeds; step cap 3/3; validation ")
    by_method = {c.method: c for c in row.comparisons}
    assert set(by_method) == {"full", "frozen"}
    assert row.left_out == "fewshot (in-context LM): not enough seeds (3 of 5)", "its seeds are draws: 5 needed"
    rows = {r.method: r for r in data.tables["glue-sst2"]}
    assert catalog.method_label("fewshot", "glue-sst2") in describe_method("fewshot", rows["fewshot"], "glue-sst2")
    assert describe_method("fewshot", rows["fewshot"], "glue-sst2").startswith(
        "fewshot (in-context LM) on smollm2-135m, 3 draws; 3 of 5 seeds"
    )
    frozen = by_method["frozen"]
    assert frozen.outcome == "worse" and "did-not-learn" in frozen.label
    d = next(d for d in data.decisions if d.task == "glue-sst2")
    x = d.diffs["frozen"]  # choice - frozen: the row shows frozen - choice
    assert (frozen.diff, frozen.low, frozen.high) == (-x.diff, -x.high, -x.low) and frozen.diff < 0
    assert frozen.p_adjusted == x.p_adjusted and x.p_adjusted >= x.p, "the p shown is the family's adjusted one"
    assert by_method["full"].outcome == "equivalent" and row.margin == "±0.01 accuracy"
    assert [c.outcome for c in row.comparisons] == sorted(
        (c.outcome for c in row.comparisons), key=("better", "worse", "equivalent", "undecided").index
    )
    assert row.verdict == "lora: no other method better on test (1 worse, 1 equivalent)"


def test_page_and_summary_show_the_same_map_and_a_glossary(tmp_path):
    data = _data(tmp_path)
    page, summary = page_html(data), summary_markdown(data)
    decision = page[page.index("id='decision-map'") : page.index("</section>", page.index("id='decision-map'"))]
    assert "<b>worse</b>: frozen on minilm-l6, 3 seeds; did-not-learn" in decision
    assert "fewshot (in-context LM): not enough seeds (3 of 5)" in decision
    assert "fewshot (in-context LM): not enough seeds" in summary[summary.index("## Decision map") :]
    glossary = page[page.index("id='glossary'") :]
    for name in ("lora", "full", "frozen", "fewshot (in-context LM)"):
        assert f"<th>{name}</th>" in glossary, name
    assert catalog.method_class("lora").description in glossary
    for term in (*TERMS, *FLAGS):
        assert html.escape(term, quote=False) in glossary, term
    assert "## Glossary" in summary and "| step cap k/n |" in summary
