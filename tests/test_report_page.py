"""The report at a glance: overview, table of the primary metric, leaderboards, exports and which records folder it
reads. Records are built in code (no models). Run: `.venv/bin/python -m pytest tests/test_report_page.py -q`."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.analysis.overview import build_overview
from bench.catalog import resolve
from bench.cli import main
from bench.core import metrics
from bench.core.api import Cell
from bench.core.record import Cost, Env, Forgetting, Params, new_record
from bench.core.store import Store
from bench.report.page import build_report, page_html, write_report

BASELINES = Path(__file__).resolve().parent.parent / "results" / "baselines" / "default-cpu"


def _logits(rng: np.random.Generator, labels: np.ndarray, skill: float) -> np.ndarray:
    out = rng.normal(size=(len(labels), 2))
    out[np.arange(len(labels)), labels] += skill
    return out


def _write(store, task, method, seed, outputs, labels, suite="s", backbone=None, sha="abc", status="ok"):
    overrides = {"backbone": backbone} if backbone else {}
    res = resolve(Cell(task, method, 64, seed, overrides, suite=suite))
    r = new_record(res, status, None if status == "ok" else "Traceback ...\nRuntimeError: exploded")
    r.created_at = f"2026-01-0{seed + 1}T10:00:00.000000Z"
    r.env = Env(git_sha=sha, dirty=sha != "abc", threads=2, torch="2.9", cpu="x86_64", cpu_model="AMD EPYC 7B13")
    r.cost = Cost(device="cpu", peak_mem_bytes=2**30, train_time_s=10.0, wall_time_s=100.0)
    if status == "ok":
        spec = res.task.spec
        scores = metrics.compute(spec.metrics, outputs, labels, spec.kind)
        r.metrics = {f"test/{k}": v for k, v in scores.items()}
        if method != "fewshot":  # a method that trains validates; here its validation score is its test score
            r.metrics.update({f"val/{k}": v for k, v in scores.items()})
        r.params = Params(total=1000, trainable={"lora": 10, "full": 1000}.get(method, 2), trainable_no_head=0)
        r.forgetting = Forgetting("stsb-spearman", 0.9, 0.85, 0.05)
        r.arrays = {"test": {"ids": np.arange(len(labels)), "outputs": outputs, "labels": labels}}
    store.write(r)
    return r


def _suite_records(store: Store, suite: str = "s") -> None:
    """glue-sst2 at budget 64 over 3 seeds: lora best, full indistinguishable from it, frozen worse, fewshot on
    another backbone, one failed cell; and pneumonia-mnist, which the page lists first."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 600)
    for seed in range(3):
        base = _logits(rng, y, 2.0)
        _write(store, "glue-sst2", "lora", seed, base, y, suite)
        right = base.argmax(axis=1) == y
        flip = np.r_[np.flatnonzero(right)[:4], np.flatnonzero(~right)[:3]]
        near = base.copy()
        near[flip] = near[flip, ::-1]
        _write(store, "glue-sst2", "full", seed, near, y, suite)
        _write(store, "glue-sst2", "frozen", seed, _logits(rng, y, 0.0), y, suite)  # learned nothing
        _write(store, "glue-sst2", "fewshot", seed, _logits(rng, y, 1.0), y, suite, backbone="smollm2-135m")
    _write(store, "glue-sst2", "scratch", 0, None, y, suite, sha="def", status="failed")
    yp = rng.integers(0, 2, 200)
    _write(store, "pneumonia-mnist", "frozen", 0, _logits(rng, yp, 1.0), yp, suite)


def test_overview_counts_cells_by_status_and_names_code_hardware_and_dates(tmp_path):
    store = Store(tmp_path)
    _suite_records(store)
    records = store.records("s")
    unsupported = new_record(resolve(Cell("pneumonia-mnist", "prefix", 64, 0, suite="s")), "unsupported")
    unsupported.created_at = "2026-01-02T00:00:00Z"
    ov = build_overview("s", [*records, unsupported], tmp_path / "s", unreadable=1)
    assert (ov.ok, ov.not_ok, ov.unsupported, ov.n_records) == (13, {"failed": 1}, 1, 15)
    rows = dict(ov.rows())
    assert rows["cells"] == (
        "13 ok cells (0 flagged degenerate), 1 failed (1 failed), 1 unsupported, 1 unreadable record files"
    )
    assert "2 tasks (pneumonia-mnist, glue-sst2)" in rows["what ran"], "the main tasks come first"
    assert "budgets 64; seeds 0, 1, 2; backbones efficientnet-lite0, minilm-l6, smollm2-135m" in rows["what ran"]
    assert rows["hardware"] == "CPU AMD EPYC 7B13; device cpu; torch threads 2"
    assert "git abc (13), def (1) (1 records from uncommitted changes); torch 2.9" in rows["code"]
    assert rows["records written"] == "2026-01-01 10:00 UTC to 2026-01-03 10:00 UTC"
    assert rows["total wall time"] == "1,400 s (23.3 min) over 14 records"
    assert all(f"| {label} |" in "\n".join(ov.markdown()) for label in rows)


def test_the_table_at_a_glance_stars_the_choice_and_marks_the_equivalent(tmp_path):
    store = Store(tmp_path)
    _suite_records(store)
    data = build_report("s", store.records("s"), store=store, labels_from_data=False)
    row = next(r for r in data.heatmap.rows if r.task == "glue-sst2")
    assert (row.best, row.not_worse, row.top) == ("lora", ("full",), "lora"), "☆: full is equivalent to lora"
    assert row.ranks["lora"] == 1.0 and row.ranks["frozen"] == 4.0
    assert data.heatmap.mean_rank["lora"] == (1.0, 1) and data.heatmap.mean_rank["frozen"] == (2.5, 2)
    assert [r.task for r in data.heatmap.rows] == ["pneumonia-mnist", "glue-sst2"]
    page = page_html(data)
    glance = page[page.index("id='at-a-glance'") : page.index("id='task--pneumonia-mnist'")]
    lora = f"{row.values['lora'].mean:.3f}"
    ci = r"<br><small class='ci'[^>]*>0\.\d{3}–0\.\d{3}</small>"  # the interval in print, not only in a tooltip
    assert re.search(rf"class='heat'>★ <b>{lora}</b>{ci}</td>", glance), "the best: starred and bold"
    assert re.search(rf"class='heat'>☆ 0\.\d{{3}}{ci}</td>", glance), "full: equivalent to the choice"
    v = row.values["lora"]
    assert v.kind == "seeds+items" and f"{v.low:.3f}–{v.high:.3f}</small>" in glance, "the leaderboards' interval"
    frozen = next(r for r in data.heatmap.rows if r.task == "pneumonia-mnist").values["frozen"]
    assert frozen.kind == "items" and f"{frozen.low:.3f}–{frozen.high:.3f}†</small>" in glance, "one seed: items"
    assert "hsl(140,45%,57%)" in glance and "hsl(140,45%,97%)" in glance, "shaded from the row's worst to best"
    assert "2.5 (2)" in glance and "mean rank" in glance
    markdown = "\n".join(data.heatmap.markdown())
    assert f"**{lora}** ★ ({v.low:.3f}–{v.high:.3f})" in markdown and "☆" in markdown


def test_leaderboards_have_a_backbone_column_flags_a_sort_script_and_drill_downs(tmp_path):
    store = Store(tmp_path)
    _suite_records(store)
    page = write_report("s", store, tmp_path / "out", labels_from_data=False).read_text()
    assert "<script src" not in page and "http" not in page and "table.sortable" in page
    toc = page[page.index("<nav class='toc'>") : page.index("</nav>")]
    assert toc.index("#task--pneumonia-mnist") < toc.index("#task--glue-sst2") < toc.index("#not-ok")
    board = page[page.index("id='task--glue-sst2'") :]
    board = board[board.index("<table class='sortable'>") : board.index("</table>")]
    header = re.findall(r"<th[^>]*>([^<]*)</th>", board)
    assert header[:4] == ["method", "budget", "backbone", "seeds"] and header[4].startswith("test/accuracy [95%")
    assert header[5:7] == ["against the choice", "flags"], "the verdict columns first"
    assert header[4] == "test/accuracy [95%: seeds+items]", "the header says what its intervals count"
    fewshot = next(line for line in board.splitlines() if "#cell--glue-sst2--fewshot--64" in line)
    assert "<td class='l'>smollm2-135m</td>" in fewshot and "<td data-v='3'>3</td>" in fewshot
    assert "did-not-learn" in next(line for line in board.splitlines() if "--frozen--64'" in line)
    assert re.search(r"data-v='0\.\d+'>0\.\d{3} \[0\.\d{3}, 0\.\d{3}\]</td>", fewshot), "mean [95% interval]"
    drill = page[page.index("<details id='cell--glue-sst2--lora--64'>") :]
    drill = drill[: drill.index("</details>")]
    assert "method: " in drill and "abc" in drill and "AMD EPYC 7B13" in drill
    assert "glue-sst2__lora__b64__s0__" in drill and ".json</code>" in drill
    assert "RuntimeError: exploded" in page, "the failed cell is listed with its reason"


def test_exports_and_summary_md_carry_every_record_and_the_overview(tmp_path):
    store = Store(tmp_path)
    _suite_records(store)
    out = tmp_path / "out"
    write_report("s", store, out, labels_from_data=False)
    csv, parquet = pd.read_csv(out / "records.csv"), pd.read_parquet(out / "records.parquet")
    assert len(csv) == len(parquet) == 14 and list(csv.columns) == list(parquet.columns)
    for column in ("task", "method", "budget", "seed", "status", "backbone", "key", "test/accuracy"):
        assert column in csv.columns
    for column in ("forgetting.drop", "cost.wall_time_s", "params.trainable", "env.git_sha", "hparams.method.lr"):
        assert column in csv.columns
    lora = parquet[(parquet.method == "lora") & (parquet.seed == 1)].iloc[0]
    assert lora["status"] == "ok" and lora["params.trainable"] == 10 and lora["forgetting.drop"] == 0.05
    assert '"method"' in lora["hparams"] and lora["record_file"].endswith(".json")
    assert parquet[parquet.status == "failed"].iloc[0]["error"] == "RuntimeError: exploded"
    assert set(parquet[parquet.method == "fewshot"].backbone) == {"smollm2-135m"}
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# adaptbench report: suite s")
    assert "| cells | 13 ok cells (0 flagged degenerate), 1 failed (1 failed), 0 unsupported |" in summary
    assert "| code | git abc (13), def (1)" in summary and "AMD EPYC 7B13" in summary
    assert (
        "## Decision map" in summary and "| glue-sst2 | 64 (±0.01 accuracy) | lora: no other method better" in summary
    )
    assert "## Primary test metric at a glance" in summary and "★" in summary


def test_report_reads_a_folder_of_records_named_otherwise_and_says_what_it_found(tmp_path, capsys):
    _suite_records(Store(tmp_path / "archive"))
    flat = tmp_path / "archive" / "s-cpu"
    (tmp_path / "archive" / "s").rename(flat)
    assert main(["report", "--results", str(flat), "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert f"found 14 records of suite s in {flat}" in out
    page = (tmp_path / "a" / "index.html").read_text()
    assert f"from the records in <code>{flat}</code>" in page and "14 records in" in page
    assert main(["report", "--results", str(tmp_path / "archive"), "--suite", "s", "--out", str(tmp_path / "b")]) == 0
    assert f"found {flat} (14 records of suite s)" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "b" / "records.csv")) == 14
    assert main(["summary", "--results", str(flat)]) == 0 and "suite s: 13 ok records" in capsys.readouterr().out


def test_a_wrong_folder_or_suite_is_answered_with_the_command_that_works(tmp_path, capsys):
    _suite_records(Store(tmp_path / "archive"))
    flat = tmp_path / "archive" / "s-cpu"
    (tmp_path / "archive" / "s").rename(flat)
    assert main(["report", "--results", str(flat), "--suite", "proxy"]) == 2
    err = capsys.readouterr().err
    assert "none of suite 'proxy'" in err and f"`adaptbench report --results {flat} --suite s`" in err
    assert main(["report", "--results", str(tmp_path), "--suite", "s"]) == 2
    assert f"folders of records below it: `adaptbench report --results {flat} --suite s`" in capsys.readouterr().err
    assert main(["report", "--results", str(tmp_path / "archive"), "--suite", "proxy"]) == 2
    err = capsys.readouterr().err
    assert f"no folder {tmp_path / 'archive' / 'proxy'}" in err
    assert f"`adaptbench report --results {tmp_path / 'archive'} --suite s-cpu`" in err


@pytest.mark.slow  # a report of the committed default-cpu records (~12 s)
def test_report_on_the_committed_baselines_folder(tmp_path, capsys):
    """results/baselines/default-cpu holds suite "default" records of an earlier definition: all are shown."""
    assert main(["report", "--results", str(BASELINES), "--suite", "default", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"found 74 records of suite default in {BASELINES}" in out and "None of the 74 records" in out
    page = (tmp_path / "index.html").read_text()
    assert f"<code>{BASELINES}</code>" in page and "72 ok cells" in page and "2 unsupported" in page
    sst2 = page[page.index("id='task--glue-sst2'") :]
    assert "<td class='l'>smollm2-135m</td>" in sst2[: sst2.index("</table>")]
    frame = pd.read_parquet(tmp_path / "records.parquet")
    assert len(frame) == 74 and frame["cost.wall_time_s"].notna().sum() == 72
