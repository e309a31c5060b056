"""The per-task tables: costs as median and range over seeds, one builder for the page's leaderboards and summary.md
(same columns, cells and order), the column against the validation choice, the per-seed drill-down, and the exports
(role, record flags, the data dictionary). Records are built in code (no models), except the check that every column
of the committed baselines' exports is described. Run: `.venv/bin/python -m pytest tests/test_report_tables.py -q`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from bench.analysis.contrast import Difference
from bench.analysis.decision_map import Decision
from bench.analysis.tables import Spread, tables
from bench.catalog import resolve, spec
from bench.core.api import Cell
from bench.core.record import Cost, Forgetting, Params, Selection, new_record
from bench.core.store import Store
from bench.report.exports import data_dictionary, meaning, records_frame
from bench.report.leaderboard import AGAINST, CHOSEN, board, leaderboard_html, sparkline
from bench.report.markdown import markdown_tables

BASELINES = Path(__file__).resolve().parent.parent / "results" / "baselines"


def _record(task, method, seed, score, train_s=20.0, budget=64, flags=(), **overrides):
    r = new_record(resolve(Cell(task, method, budget, seed, overrides, suite="t")), "ok")
    name = spec(task).primary_metric
    r.metrics = {f"test/{name}": score, f"val/{name}": score - 0.01}
    r.cost = Cost(
        device="cpu",
        peak_mem_bytes=(1000 + seed) * 2**20,
        peak_mem_delta_bytes=100 * 2**20,
        train_samples_per_s=50.0,
        eval_samples_per_s=200.0,
        train_time_s=train_s,
        wall_time_s=train_s + 5,
        steps=40,
    )
    r.params = Params(total=1000, trainable=10, trainable_no_head=0)
    r.forgetting = Forgetting("stsb-spearman", 0.9, 0.85, 0.05)
    history = [{"step": s, f"val/{name}": v} for s, v in ((10, 0.6), (20, 0.75), (30, 0.7), (40, 0.72))]
    r.selection = Selection(on=f"val/{name}", best_step=20, history=history, stopped_by="patience", stopped_at=40)
    r.flags = list(flags)
    return r


def _sst2():
    """glue-sst2 at 64: lora (one seed far slower), full, frozen (3 seeds each); lora at 256; and pneumonia-mnist."""
    out = [_record("glue-sst2", "lora", s, v, t) for s, v, t in ((0, 0.80, 20.0), (1, 0.82, 270.0), (2, 0.81, 22.0))]
    out += [_record("glue-sst2", "full", s, v) for s, v in enumerate((0.78, 0.79, 0.80))]
    out += [
        _record("glue-sst2", "frozen", s, v, flags=["degenerate"] * (s == 0)) for s, v in enumerate((0.6, 0.62, 0.5))
    ]
    out += [_record("glue-sst2", "lora", s, 0.85, budget=256) for s in range(3)]
    out += [_record("pneumonia-mnist", "frozen", s, 0.9) for s in range(3)]
    return out


def _diff(choice_minus_method: float, low: float, high: float, p: float) -> Difference:
    return Difference("accuracy", choice_minus_method, low, high, 0.01, 10.0, p, math.nan, 0.01, 0.0, 0.0, 3, 872,
                      2000, p_adjusted=p)  # fmt: skip


def _decision() -> Decision:
    """lora chosen at 64; full equivalent; frozen left out."""
    return Decision(
        "glue-sst2",
        64,
        "lora",
        equivalent=("full",),
        excluded={"frozen": "not enough seeds (1 of 3)"},
        diffs={"full": _diff(0.02, 0.005, 0.035, 0.0123)},
        validation={"lora": 0.8, "full": 0.78},
    )


def test_a_spread_is_the_median_with_the_range_over_seeds():
    s = Spread.of([20.4, 270.0, 22.1, None, math.nan])
    assert (s.median, s.low, s.high, s.n) == (22.1, 20.4, 270.0, 3)
    assert s.describe() == "22 (20–270)", "a slow seed shows in the range, not in the median"
    assert Spread.of([3.0, 3.0]).describe() == "3.0", "no range when the seeds agree"
    assert Spread.of([0.5, 0.25]).describe() == "0.38 (0.25–0.50)"
    assert Spread.of([2**30]).describe(2**-20) == "1,024"
    assert Spread.of([None]).describe() == "–" and Spread.of([]).n == 0


def test_rows_carry_cost_spreads_and_the_board_shows_the_median(tmp_path):
    rows = tables(Store(tmp_path), _sst2(), labels_from_data=False)["glue-sst2"]
    lora = next(r for r in rows if r.method == "lora" and r.budget == 64)
    assert lora.costs["train_time_s"] == Spread(22.0, 20.0, 270.0, 3), "median, not the mean of 104"
    b = board("glue-sst2", rows, spec("glue-sst2"))
    line = b.cells[b.rows.index(lora)]
    train = line[b.header.index("train s")]
    assert (train.text, train.value) == ("22 (20–270)", 22.0)
    assert line[b.header.index("peak mem MiB")].text == "1,001 (1,000–1,002)"
    assert line[b.header.index("train ex/s")].text == "50.0" and line[b.header.index("eval ex/s")].text == "200"


def test_the_verdict_columns_come_first_and_say_how_each_row_fares_against_the_choice(tmp_path):
    rows = tables(Store(tmp_path), _sst2(), labels_from_data=False)["glue-sst2"]
    b = board("glue-sst2", rows, spec("glue-sst2"), [_decision()])
    assert b.header[:4] == ["method", "budget", "backbone", "seeds"] and b.header[5:7] == [AGAINST, "flags"]
    assert b.header[4].startswith("test/accuracy [95%"), "the primary metric with its interval"
    assert (
        b.header.index("gain over scratch [95%]") < b.header.index("train s") < b.header.index("forgetting drop [95%]")
    )
    assert [(r.budget, r.method) for r in b.rows] == [(64, "frozen"), (64, "full"), (64, "lora"), (256, "lora")]
    verdict = {(r.budget, r.method): line[5] for r, line in zip(b.rows, b.cells, strict=True)}
    assert verdict[(64, "lora")].text == CHOSEN
    full = verdict[(64, "full")]
    assert full.text == "equivalent: -0.020 [-0.035, -0.005]\np=0.012 (Holm)", "method minus choice: negated, swapped"
    assert full.value == -0.02
    assert verdict[(64, "frozen")].text == "left out: not enough seeds (1 of 3)"
    assert verdict[(256, "lora")].text == "–", "no decision at that budget"
    flags = {(r.budget, r.method): line[6].text for r, line in zip(b.rows, b.cells, strict=True)}
    assert "degenerate: 1 of 3" in flags[(64, "frozen")].split("\n")


def test_summary_md_renders_the_page_board_cells_in_the_page_order(tmp_path):
    found = tables(Store(tmp_path), _sst2(), labels_from_data=False)
    md = markdown_tables(found, [_decision()])
    assert md.index("**pneumonia-mnist**") < md.index("**glue-sst2**"), "the page's task order"
    b = board("glue-sst2", found["glue-sst2"], spec("glue-sst2"), [_decision()])
    lines = [line for line in md[md.index("**glue-sst2**") :].splitlines() if line.startswith("| ")]
    assert lines[0] == "| " + " | ".join(b.header) + " |"
    assert [line.split(" | ")[0][2:] for line in lines[1:]] == [r.method for r in b.rows], "the page's row order"
    lora = lines[1 + [r.method for r in b.rows].index("lora")]
    cells = lora.strip("| ").split(" | ")
    assert cells[4] == found["glue-sst2"][2].metrics["test/accuracy"].describe(), "the page's clipped interval"
    assert cells[5] == CHOSEN and "22 (20–270)" in cells
    full = lines[2].strip("| ").split(" | ")
    assert full[5] == "equivalent: -0.020 [-0.035, -0.005]; p=0.012 (Holm)"
    frozen = lines[1].strip("| ").split(" | ")
    assert frozen[6].startswith("[degenerate: 1 of 3]")
    assert "±" not in md


def test_a_task_this_checkout_does_not_register_gets_the_same_board(tmp_path):
    records = _sst2()[:3]
    for r in records:
        r.task = "my-private-task"
    found = tables(Store(tmp_path), records, labels_from_data=False)
    page = leaderboard_html("my-private-task", found["my-private-task"], None)
    assert "<table class='sortable'>" in page and "22 (20–270)" in page
    assert "| lora | 64 |" in markdown_tables(found)


def test_the_drill_down_shows_each_seed_with_its_stop_reason_and_validation_curve(tmp_path):
    rows = tables(Store(tmp_path), _sst2(), labels_from_data=False)["glue-sst2"]
    page = leaderboard_html("glue-sst2", rows, spec("glue-sst2"))
    drill = page[page.index("<details id='cell--glue-sst2--lora--64'>") :]
    drill = drill[: drill.index("</details>")]
    assert re.search(r"<td data-v='1'>1</td><td data-v='0\.82'>0\.820</td><td data-v='0\.81'>0\.810</td>", drill)
    assert "<td class='l'>patience</td><td class='l'>20 / 40</td><td data-v='270.0'>270.0</td>" in drill
    assert drill.count("<svg") == 3 and "selected step 20: 0.750" in drill
    assert "method: " in drill and ".json" not in drill, "hyperparameters; records built in code have no file"
    frozen = page[page.index("<details id='cell--glue-sst2--frozen--64'>") :]
    assert "<td class='flag l'>degenerate</td>" in frozen[: frozen.index("</details>")]


def test_a_sparkline_marks_the_selected_step_and_puts_higher_scores_up():
    history = [{"step": 10, "val/auroc": 0.5}, {"step": 20, "val/auroc": 0.9}, {"step": 30, "val/auroc": 0.7}]
    svg = sparkline(history, "val/auroc", 20, width=100, height=20)
    points = re.search(r"points='([^']+)'", svg).group(1).split()
    ys = [float(p.split(",")[1]) for p in points]
    assert ys[1] < ys[2] < ys[0], "the best score is highest on the picture"
    assert re.search(r"<circle cx='50.0' cy='3.0'", svg), "the dot sits on step 20"
    assert sparkline(history[:1], "val/auroc", 10) == "–"


def test_exports_say_each_record_role_and_flags_and_describe_every_column(tmp_path):
    records = _sst2()
    sweep = _record("glue-sst2", "lora", 0, 0.5, budget=256, lr=0.1)  # a sweep cell: one value tried
    stale = _record("glue-sst2", "lora", 0, 0.1)
    stale.key = "from-an-earlier-definition"
    records[6].tuned_from = {"sweep": "block 1", "scores": [{"values": {"lr": 0.1}, "cells": {sweep.key: 0.49}}]}
    shown = [r.key for r in records]
    found = tables(Store(tmp_path), records, labels_from_data=False)
    frame = records_frame([*records, sweep, stale], shown, found)
    role = frame.set_index("key")["role"]
    assert (role[sweep.key], role[stale.key], role[records[0].key]) == ("sweep", "outside-suite", "cell")
    assert list(frame.in_report) == [True] * len(records) + [False, False]
    assert "flags" not in frame.columns and type(frame.flags).__name__ == "Flags", "df.flags is pandas' own"
    frozen = frame[(frame.method == "frozen") & (frame.seed == 0)].iloc[0]
    assert frozen["record_flags"] == "degenerate" and frozen["cell_flags"] == "degenerate: 1 of 3"
    assert frozen["selection.stopped_by"] == "patience" and frozen["selection.best_step"] == 20
    cells = frame[frame.role == "cell"].groupby(["task", "method", "budget"])["test/accuracy"].mean()
    for row in found["glue-sst2"]:
        assert cells["glue-sst2", row.method, row.budget] == pytest.approx(row.metrics["test/accuracy"].mean)
    md = data_dictionary(list(frame.columns))
    assert all(f"| `{c}` |" in md for c in frame.columns) and "not described" not in md
    assert meaning("hparams.method.lr").startswith("(hparams.<section>.<name>)") and meaning("nonsense") is None


@pytest.mark.parametrize("folder", ["default-A-cpu/default", "proxy-cpu/proxy"])
def test_every_column_exported_from_the_committed_baselines_is_described(folder):
    root, suite = (BASELINES / folder).parent, Path(folder).name
    records = Store(root).records(suite)
    assert records, f"no records in {BASELINES / folder}"
    frame = records_frame(records)
    assert "role" in frame.columns and "record_flags" in frame.columns and "flags" not in frame.columns
    assert [c for c in frame.columns if meaning(c) is None] == []
