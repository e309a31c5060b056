"""What `adaptbench grid` shows while it runs: done/total over the whole grid, the running cell, elapsed time and an
ETA; a cell's validation passes, followed from its process's stdout; `--quiet` for CI logs. Fast: a fake
``run_cell``, a fake clock and a forked stand-in for the cell's process. Run:
`.venv/bin/python -m pytest tests/test_progress.py -q`.
"""

from __future__ import annotations

import io
import multiprocessing
import re

import pytest

import bench.run.harness
from bench.catalog import resolve
from bench.core.api import Cell
from bench.core.record import new_record
from bench.core.store import Store
from bench.run.grid import run_grid
from bench.run.progress import GridProgress, duration
from bench.suite import load_suite

SUITE = """seeds = [0]
[[matrix]]
tasks = ["glue-sst2"]
methods = ["frozen"]
budgets = [64]

[[matrix]]
tasks = ["glue-sst2"]
methods = ["lora"]
budgets = [64, 256]
sweep = { lr = [1e-4, 1e-3] }
sweep_budget = 256
"""
PASSES = ["step 4/8  train_loss 0.693  val/accuracy 0.5000  (best)", "step 8/8  train_loss 0.512  val/accuracy 0.6250"]


def _grid(tmp_path, monkeypatch, **kwargs) -> tuple[list[str], list[dict]]:
    """Run the sweep suite with a fake run_cell that prints two validation passes when the grid follows its
    stdout; returns the grid's lines and each call's keyword arguments."""
    calls: list[dict] = []

    def run_cell(cell, store, **kw):
        cell = getattr(cell, "cell", cell)  # the grid passes the Resolved, `run` a Cell
        calls.append(kw)
        for line in PASSES:
            if kw.get("on_line"):
                kw["on_line"](line)
        record = new_record(resolve(cell), "ok", None)
        record.metrics = {"test/accuracy": 0.5, "val/accuracy": 0.6 + 0.1 * (cell.overrides.get("lr") == 1e-3)}
        store.write(record)
        return record

    monkeypatch.setattr(bench.run.harness, "run_cell", run_cell)
    path = tmp_path / "sweep.toml"
    path.write_text(SUITE)
    lines: list[str] = []
    run_grid(load_suite(str(path)), Store(tmp_path / "results"), log=lines.append, **kwargs)
    return lines, calls


def test_plain_output_counts_cells_over_the_whole_grid_and_gives_an_eta_once_a_cell_finished(tmp_path, monkeypatch):
    lines, calls = _grid(tmp_path, monkeypatch)
    # 2 sweep cells, then frozen and lora @ 64 (lora @ 256 is the chosen sweep cell, reused): 4 cells in one count
    assert len(calls) == 4
    results = [line for line in lines if re.match(r"\[\d+/\d+\] (?!running)", line)]
    assert [line.split("]")[0] + "]" for line in results] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert results[0].startswith("[1/4] sweep glue-sst2 x lora @ 256 (seed 0) lr=0.0001: test/accuracy=0.5000 (")
    running = [line for line in lines if " running " in line]
    assert len(running) == 4 and running[0].startswith("[1/4] running sweep glue-sst2 x lora @ 256 (seed 0)")
    assert running[0].endswith("ETA unknown)"), "no ETA before the first cell finishes"
    after_first = lines[lines.index(results[0]) :]
    assert all(re.search(r"elapsed \d+s, ETA \d+s\)$", line) for line in after_first if line.startswith("["))
    for i, line in enumerate(lines):  # each cell: its running line, its validation passes, its result line
        if " running " in line:
            assert lines[i + 1 : i + 3] == [f"    {p}" for p in PASSES]
            assert lines[i + 3].startswith(line.split(" running ")[0] + " ")
    assert not any("\r" in line for line in lines), "no carriage-return animation in a log"
    assert lines[-1].startswith("suite sweep: ran 4 cells in ")


def test_quiet_keeps_one_result_line_per_cell_errors_and_the_summary(tmp_path, monkeypatch):
    lines, calls = _grid(tmp_path, monkeypatch, quiet=True)
    assert all("on_line" not in kw and kw["quiet"] for kw in calls), "the cells' stdout is discarded"
    assert len(lines) == 5 and lines[-1].startswith("suite sweep: ran 4 cells in ")
    assert all(re.match(r"\[\d/4\] .*: test/accuracy=0.5000 \(", line) for line in lines[:4])
    assert not any("running" in line or "step " in line or "chosen" in line for line in lines)


def test_grid_quiet_on_the_command_line_prints_no_progress(tmp_path, monkeypatch, capsys):
    from bench.cli import main

    _grid(tmp_path, monkeypatch)  # every cell done: a second grid runs none
    path = tmp_path / "sweep.toml"
    assert main(["grid", "--suite", str(path), "--results", str(tmp_path / "results"), "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("suite sweep: ran 0 cells in ")


def test_the_eta_is_the_cells_left_times_the_mean_wall_time_of_the_cells_run():
    now = [100.0]
    lines: list[str] = []
    p = GridProgress(lines.append, clock=lambda: now[0])
    p.add(2, later=2)  # two sweep cells now, about two tuned cells after them
    assert p.total == 4 and p.eta() is None
    first = p.start("a", "t/m/64/0")
    assert lines[-1] == "[1/4] running a (elapsed 0s, ETA unknown)"
    now[0] += 30
    p.line(first, "step 1/1  train_loss 0.100  val/accuracy 0.9000  (best)")
    now[0] += 30
    p.finish(first, "test/accuracy=0.9000")
    assert lines[-2:] == [
        "    step 1/1  train_loss 0.100  val/accuracy 0.9000  (best)",
        "[1/4] a: test/accuracy=0.9000 (60 s; elapsed 1m00s, ETA 3m00s)",
    ]
    p.skip("b", "skipped, claimed by pid 1 on host h")  # another grid runs it: it leaves the total
    assert lines[-1] == "[1/3] b: skipped, claimed by pid 1 on host h" and p.total == 3
    p.add(2, later=0)  # the tuned cells' exact count, once the sweeps chose
    assert p.total == 3
    second = p.start("c", "t/m/64/1")
    now[0] += 20  # a running cell's time counts against the estimate, up to the mean
    assert p.eta() == pytest.approx(2 * 60 - 20)
    now[0] += 100
    p.finish(second, "FAILED: boom")
    assert lines[-1] == "[2/3] c: FAILED: boom (120 s; elapsed 3m00s, ETA 1m30s)", "a failed cell ran: it counts"
    assert duration(3725) == "1h02m" and duration(65) == "1m05s" and duration(4.4) == "4s"


def test_cells_at_once_divide_the_eta_and_name_whose_line_it_is():
    now = [0.0]
    lines: list[str] = []
    p = GridProgress(lines.append, jobs=2, clock=lambda: now[0])
    p.add(4)
    a, b = p.start("a", "t/m/64/0"), p.start("b", "t/m/64/1")
    p.line(b, "step 2/8  train_loss 0.500  val/accuracy 0.7000  (best)")
    assert lines[-1] == "    [t/m/64/1] step 2/8  train_loss 0.500  val/accuracy 0.7000  (best)"
    now[0] = 10.0
    p.finish(a, "ok")
    p.finish(b, "ok")
    assert p.eta() == pytest.approx(2 * 10 / 2)


def test_on_a_terminal_a_live_bar_shows_done_total_and_the_lines_stay():
    from rich.console import Console

    out = io.StringIO()
    p = GridProgress(live=True, console=Console(file=out, force_terminal=True, width=120))
    p.add(1)
    token = p.start("glue-sst2 x lora @ 64 (seed 0)", "glue-sst2/lora/64/0")
    p.line(token, "step 8/8  train_loss 0.512  val/accuracy 0.6250  (best)")
    assert "0/1 cells" in p.bar_text() and "running glue-sst2 x lora @ 64 (seed 0)  step 8/8" in p.bar_text()
    p.finish(token, "test/accuracy=0.5000")
    p.close()
    text = out.getvalue()
    assert "1/1 cells" in text and "[1/1] glue-sst2 x lora @ 64 (seed 0): test/accuracy=0.5000" in text
    assert "    step 8/8  train_loss 0.512" in text


def _printing_child(cell, done_file, device, results, data_root) -> int:
    print("step 4/8  train_loss 0.693  val/accuracy 0.5000  (best)", flush=True)
    print("\r 10%\r 50%\r100% a bar redrawn in place", flush=True)
    print("no newline at the end", end="", flush=True)
    return 3


def test_a_cells_stdout_reaches_the_caller_line_by_line(tmp_path, monkeypatch):
    # the real run_cell and _child_entry, in a forked process whose body only prints (no model, no fork server)
    monkeypatch.setattr(bench.run.harness, "_cell_context", lambda: multiprocessing.get_context("fork"))
    monkeypatch.setattr(bench.run.harness, "child_main", _printing_child)
    lines: list[str] = []
    cell = Cell("glue-sst2", "frozen", 64, 0, suite="s")
    record = bench.run.harness.run_cell(cell, store=Store(tmp_path), quiet=True, checked=True, on_line=lines.append)
    assert record.status == "failed" and "exited with code 3" in record.error
    assert lines == [
        "step 4/8  train_loss 0.693  val/accuracy 0.5000  (best)",
        "100% a bar redrawn in place",
        "no newline at the end",
    ]
