"""Fault injection: typo'd suites, bad flags, kills, allocation failures, two grids at once, truncated records,
corrupt data and collapsed runs each end in a true status and intact records, never a silent wrong number.
Run: `.venv/bin/python -m pytest tests/test_faults.py -q` (add `-m "not slow"` to skip the real cells).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

import bench.run.harness
from bench.catalog import TASKS, resolve
from bench.cli import main
from bench.core.api import Cell, Split, TrainConfig
from bench.core.record import Cost, Env, Forgetting, Params, Record, new_record
from bench.core.store import Store
from bench.run.cell import collapse_flags
from bench.run.grid import run_grid
from bench.run.harness import child_main, exit_status
from bench.run.locks import Claims
from bench.run.loop import DivergedError, Runner
from bench.suite import load_suite

BLOCK = '[[matrix]]\ntasks = ["glue-sst2"]\nmethods = ["frozen"]\nbudgets = [64]\n'


def _ok(cell: Cell) -> Record:
    record = new_record(resolve(cell), "ok")
    record.metrics = {"test/accuracy": 0.75}
    record.forgetting = Forgetting("stsb-spearman", before=0.8, drop=0.1)
    record.params = Params(trainable=1, total=2, trainable_no_head=0, adapter_bytes=0)
    record.cost = Cost(device="cpu", peak_mem_bytes=1, peak_mem_delta_bytes=1, train_samples_per_s=1.0)
    record.cost.eval_samples_per_s = record.cost.train_time_s = record.cost.wall_time_s = 1.0
    record.env = Env(threads=2)
    return record


# ------------------------------------------------------------------------------------------ suites
@pytest.mark.parametrize(
    "text, expected",
    [
        ("seed = [1, 2]\n" + BLOCK, "unknown key 'seed'. Did you mean 'seeds'?"),
        ("timeout = 5\n" + BLOCK, "unknown key 'timeout'. Did you mean 'timeout_s'?"),
        (BLOCK + BLOCK + "budget_list = [1]\n", "block 2: unknown key 'budget_list'. Did you mean 'budgets'?"),
        (BLOCK.replace('["glue-sst2"]', "[]"), "block 1: tasks must be a non-empty list"),
        (BLOCK.replace("[64]", '["abc"]'), "block 1: budgets: 'abc' is not an example count"),
        (BLOCK.replace("[64]", "[-5]"), "block 1: budgets: -5 is not an example count"),
        (BLOCK.replace("[64]", "[]"), "block 1: budgets must be a non-empty list"),
        (BLOCK.replace("glue-sst2", "glue-sst"), "block 1: unknown task 'glue-sst'. Did you mean 'glue-sst2'"),
        ("seeds = [-1]\n" + BLOCK, "seeds: -1 is not a seed"),
        ("seeds = []\n" + BLOCK, "seeds must be a non-empty list"),
        ("timeout_s = 0\n" + BLOCK, "timeout_s must be a positive number"),
        (BLOCK + 'set = { max_iter = "fast" }\n', "block 1: Invalid value for max_iter"),
        (BLOCK + "set = { lrr = 1 }\n", "block 1: --set lrr: unknown 'lrr'"),
    ],
)
def test_a_typo_in_a_suite_is_an_error_naming_the_file_the_block_and_the_key(tmp_path, text, expected):
    path = tmp_path / "typo.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        load_suite(str(path))
    assert f"suite file {path}" in str(err.value) and expected in str(err.value)


def test_every_shipped_suite_passes_the_schema():
    for name in ("default", "proxy", "methods", "full"):
        assert load_suite(name).cells


# ------------------------------------------------------------------------------------------ flags
@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--budget", "-5"], "--budget: -5 is out of range"),
        (["--budget", "8", "--seed", "-1"], "--seed: -1 is out of range"),
        (["--budget", "8", "--seed", str(2**32)], "must be from 0 to 4294967295"),
        (["--budget", "8", "--timeout", "0"], "--timeout: 0 is not a positive number"),
        (["--budget", "100000000"], "budget 100000000 exceeds the 4708-example training pool of pneumonia-mnist"),
    ],
)
def test_a_bad_value_is_a_one_line_error_before_any_process_and_no_record(tmp_path, capsys, flags, expected):
    rc = _rc(["run", "--task", "pneumonia-mnist", "--method", "frozen", "--results", str(tmp_path), *flags])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("adaptbench: error:") and expected in err and "\n" not in err
    assert not list(tmp_path.rglob("*.json")), "no record for a user error"


def test_grid_refuses_zero_jobs_in_one_line(capsys):
    assert _rc(["grid", "--suite", "proxy", "--jobs", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--jobs: 0 is out of range" in err and "\n" not in err


def _rc(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own refusals
        return int(e.code)


# ---------------------------------------------------------------------------------------- statuses
def test_exit_codes_become_statuses_that_say_what_happened():
    assert exit_status(-signal.SIGKILL, "", 60)[::2] == ("killed", "SIGKILL")
    assert exit_status(-signal.SIGTERM, "", 60)[::2] == ("killed", "SIGTERM")
    assert exit_status(-signal.SIGKILL, "RuntimeError: DefaultCPUAllocator: can't allocate memory", 60)[0] == "oom"
    assert exit_status(1, "Traceback ... ValueError: x", 60)[0] == "failed"
    assert exit_status(None, "", 5)[:2] == ("timeout", "cell exceeded 5 s and was killed")


# A fresh interpreter (not a fork of this thread-heavy test process) whose cell body allocates
# need_bytes / grad_accum under an address-space limit: it fits only once the micro-batch is halved.
CHILD = """
import os, resource, sys, torch
import bench.run.harness, bench.run.loop
from bench.catalog import resolve
from bench.core.api import Cell
from bench.run.harness import child_main
from bench.core.record import new_record
done, results, headroom, need = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def execute(res, data, device="auto", grad_accum=1):
    block = torch.empty(need // grad_accum, dtype=torch.uint8)
    block[::4096] = 1
    record = new_record(res, "ok")
    record.metrics = {"test/accuracy": 1.0}
    return record
bench.run.harness.execute = execute
vm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (vm + headroom, resource.RLIM_INFINITY))
sys.exit(child_main(resolve(Cell("glue-sst2", "full", 64, 0, suite="oom")), done, "cpu", results, None))
"""


@pytest.mark.parametrize("need_gib, status", [(4, "ok"), (16, "oom")])
def test_a_real_allocation_failure_under_a_memory_limit_is_retried_with_half_the_micro_batch(
    tmp_path, need_gib, status
):
    import subprocess
    import sys

    done = tmp_path / "done.json"
    argv = [str(done), str(tmp_path / "r"), str(3 * 2**30), str(need_gib * 2**30)]
    proc = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, timeout=300)
    assert done.exists(), proc.stderr[-2000:]
    record = json.loads(done.read_text())
    assert record["status"] == status, record.get("error")
    assert record["retry"]["reason"] == "oom" and record["retry"]["micro_batch"] == 16
    assert record["retry"]["grad_accum"] == 2 and "allocate" in record["retry"]["first_error"]
    assert Store(tmp_path / "r").get("oom", record["key"]).to_json() == record


def test_a_diverged_run_is_recorded_as_diverged_with_its_step(tmp_path, monkeypatch):
    def execute(res, data, device="auto", grad_accum=1):
        raise DivergedError(7, float("nan"))

    monkeypatch.setattr(bench.run.harness, "execute", execute)
    done = tmp_path / "done.json"
    cell = resolve(Cell("glue-sst2", "full", 64, 0, suite="d"))
    assert child_main(cell, str(done), "cpu", str(tmp_path), None) == 1
    record = json.loads(done.read_text())
    assert record["status"] == "diverged" and record["divergence"] == {"step": 7, "loss": "nan"}
    assert "retry" not in record, "the raw JSON: a retry is only recorded after an out-of-memory"


# -------------------------------------------------------------------------------- loop on a tiny model
class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder, self.head = nn.Identity(), nn.Linear(6, 2)


class _HeadOnly:
    name, cache_features = "head-only", True

    def __init__(self, penalty_at: int | None = None) -> None:
        self.penalty_at, self.step = penalty_at, 0

    def param_groups(self, model):
        return [{"params": list(model.head.parameters()), "lr": 0.05}]

    def on_step(self, model, step, total):
        self.step = step

    def train_mode(self, model):
        model.train()

    def penalty(self, model):
        return torch.tensor(float("nan")) if self.step == self.penalty_at else None


def _tiny_fit(accum: int, method=None):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    feats, labels = rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 2, 40)
    train = Split("train", np.zeros((40, 1)), labels, np.arange(40))
    val = Split("val", np.zeros((40, 1)), labels, np.arange(40))
    runner = Runner(_Tiny(), None, TASKS.get("pneumonia-mnist")(), TrainConfig(batch_size=8, epochs=2), "cpu", accum)
    runner.features = {"train": torch.from_numpy(feats), "val": torch.from_numpy(feats)}
    fit = runner.fit(method or _HeadOnly(), train, val, seed=0)
    return runner.model.head.weight.detach().clone(), fit


def test_gradient_accumulation_over_half_batches_equals_full_batches():
    full_w, full = _tiny_fit(1)
    accum_w, accum = _tiny_fit(2)
    assert accum.steps == full.steps == 10, "same number of optimizer steps"
    torch.testing.assert_close(accum_w, full_w, rtol=1e-5, atol=1e-6)
    losses = [(a["train_loss"], b["train_loss"]) for a, b in zip(full.history, accum.history, strict=True)]
    assert all(abs(a - b) < 1e-5 for a, b in losses)


def test_a_non_finite_loss_raises_diverged_with_the_step():
    with pytest.raises(DivergedError) as err:
        _tiny_fit(1, _HeadOnly(penalty_at=3))
    assert err.value.step == 3


def test_constant_test_predictions_are_flagged_degenerate():
    collapsed = np.tile([[5.0, -5.0]], (624, 1))
    flags, why = collapse_flags(collapsed, "classification")
    assert flags == ["degenerate"] and "class 0" in why["degenerate"]
    assert collapse_flags(np.random.default_rng(0).normal(size=(50, 2)), "classification")[0] == []
    assert collapse_flags(np.full((50, 1), 2.5), "regression")[0] == ["degenerate"]
    assert collapse_flags(np.linspace(0, 5, 50)[:, None], "regression")[0] == []


def test_the_report_marks_degenerate_rows_and_says_why(tmp_path):
    from bench.analysis.tables import tables
    from bench.core.store import Store
    from bench.report.markdown import markdown_tables
    from bench.report.page import render_html

    cell = Cell("glue-sst2", "full", 64, 0, suite="s")
    record = _ok(cell)
    record.flags = ["degenerate"]
    page = render_html("s", [record], source=tmp_path)
    assert "degenerate: 1 of 1" in page and "training collapsed" in page and "1 flagged degenerate" in page
    assert f"records in <code>{tmp_path}</code>" in page
    assert "[degenerate: 1 of 1]" in markdown_tables(tables(Store(tmp_path), [record], labels_from_data=False))


# ----------------------------------------------------------------------------------------- records
def _suite(tmp_path, methods='["frozen", "lora"]', seeds="[0, 1]"):
    path = tmp_path / "tiny.toml"
    path.write_text(f'seeds = {seeds}\n[[matrix]]\ntasks = ["glue-sst2"]\nmethods = {methods}\nbudgets = [64]\n')
    return load_suite(str(path))


def _fake_run_cell(log_file=None, delay=0.0):
    def run_cell(cell, store, **kwargs):
        cell = getattr(cell, "cell", cell)  # the grid passes the Resolved, `run` a Cell
        time.sleep(delay)
        record = _ok(cell)
        if log_file:
            with open(log_file, "a") as f:
                f.write(f"{record.key} {os.getpid()}\n")
        store.write(record)
        return record

    return run_cell


def test_a_truncated_record_is_named_by_report_and_recomputed_by_grid(tmp_path, monkeypatch, capsys):
    from bench.report.page import write_report

    suite, store = _suite(tmp_path), Store(tmp_path / "results")
    monkeypatch.setattr(bench.run.harness, "run_cell", _fake_run_cell())
    run_grid(suite, store, log=lambda _: None)
    victim = sorted((tmp_path / "results" / "tiny").glob("*.json"))[1]
    victim.write_text(victim.read_text()[:40])  # a full disk cut it

    store = Store(tmp_path / "results")
    write_report(str(tmp_path / "tiny.toml"), store, tmp_path / "report")
    assert store.warnings() and str(victim) in store.warnings()[0]
    page = (tmp_path / "report" / "index.html").read_text()
    assert f"unreadable record {victim}" in page and "3 ok cells" in page and ", 1 unreadable" in page

    lines: list[str] = []
    result = run_grid(suite, Store(tmp_path / "results"), log=lines.append)
    assert f"unreadable record {victim}: will be recomputed" in lines
    assert len(result.records) == 4 and json.loads(victim.read_text())["status"] == "ok"


def _grid_process(suite_file: str, results: str, log_file: str, out: str) -> None:
    bench.run.harness.run_cell = _fake_run_cell(log_file, delay=0.3)
    lines: list[str] = []
    result = run_grid(load_suite(suite_file), Store(results), log=lines.append)
    with open(out, "w") as f:
        json.dump({"ran": len(result.records), "claimed": {k: len(v) for k, v in result.claimed.items()}}, f)
        f.write("\n" + "\n".join(lines))


def test_two_grids_on_one_results_folder_compute_every_cell_exactly_once(tmp_path):
    suite = _suite(tmp_path, methods='["frozen", "lora", "full"]', seeds="[0, 1, 2]")
    log_file, results = tmp_path / "computed.log", tmp_path / "results"
    ctx = multiprocessing.get_context("fork")
    grids = [
        ctx.Process(target=_grid_process, args=(str(tmp_path / "tiny.toml"), str(results), str(log_file), str(out)))
        for out in (tmp_path / "0", tmp_path / "1")
    ]
    for g in grids:
        g.start()
    for g in grids:
        g.join(60)
    computed = [line.split()[0] for line in log_file.read_text().splitlines()]
    assert len(computed) == len(set(computed)) == len(suite.cells) == 9, "each cell computed exactly once"
    assert len({line.split()[1] for line in log_file.read_text().splitlines()}) == 2, "both grids did work"
    outputs = [(tmp_path / str(i)).read_text() for i in range(2)]
    assert any("cells claimed by pid" in out for out in outputs), "a grid says what it left to the other"
    store = Store(results)
    assert all(store.has_ok("tiny", resolve(c).key) for c in suite.cells) and not store.warnings()
    assert not list((results / "tiny" / ".claims").glob("*.json")), "claims are released"


def test_a_stale_claim_is_taken_over_and_a_live_one_is_respected(tmp_path):
    claims = Claims(tmp_path, stale_after_s=60)
    dead = multiprocessing.get_context("fork").Process(target=lambda: None)
    dead.start()
    dead.join()
    claims.folder.mkdir(parents=True)
    host = os.uname().nodename
    claims.path("a").write_text(json.dumps({"pid": dead.pid, "host": host, "created_at": time.time()}))
    assert claims.acquire("a") is None, "a dead owner's claim is taken over"
    claims.path("b").write_text(json.dumps({"pid": os.getppid(), "host": host, "created_at": time.time()}))
    assert claims.acquire("b").pid == os.getppid(), "a live owner keeps its claim"
    old = time.time() - 3600
    claims.path("c").write_text(json.dumps({"pid": 1, "host": "elsewhere", "created_at": time.time()}))
    claims.path("d").write_text(json.dumps({"pid": 1, "host": "elsewhere", "created_at": old - 600}))
    assert claims.acquire("c").host == "elsewhere" and claims.acquire("d") is None
    claims.release("a")
    assert not claims.path("a").exists() and claims.path("b").exists()


# -------------------------------------------------------------------------------------------- data
def _corrupt_root(tmp_path, data):
    rel = "vision/medmnist/pneumoniamnist.npz"
    (tmp_path / "data" / rel).parent.mkdir(parents=True)
    shutil.copy(data.path / rel, tmp_path / "data" / rel)
    with open(tmp_path / "data" / rel, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02\x03")
    return tmp_path / "data", rel


def test_data_verify_never_calls_a_task_with_a_corrupt_file_ready(tmp_path, data, capsys, monkeypatch):
    root, rel = _corrupt_root(tmp_path, data)
    monkeypatch.setenv("ADAPTBENCH_DATA", str(root))  # main() sets it from --data-root; restored after the test
    assert main(["data", "verify", "--data-root", str(root), "--task", "pneumonia-mnist"]) == 1
    out = capsys.readouterr().out
    assert f"corrupt  pneumonia-mnist: {rel} fails its checksum" in out and "ready    pneumonia-mnist" not in out


def test_a_corrupt_data_file_stops_run_with_one_paragraph_and_no_record(tmp_path, data, capsys, monkeypatch):
    root, _ = _corrupt_root(tmp_path, data)
    monkeypatch.setenv("ADAPTBENCH_DATA", str(root))  # main() sets it from --data-root; restored after the test
    argv = ["run", "--task", "pneumonia-mnist", "--method", "frozen", "--budget", "64", "--results", str(tmp_path)]
    assert main([*argv, "--data-root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "fails its checksum" in err and "Fix:" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*.json"))
    monkeypatch.setenv("ADAPTBENCH_OFFLINE", "1")
    assert main([*argv, "--data-root", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not available offline" in err and "Fix:" in err and "\n" not in err


def test_a_grid_skips_a_task_without_its_data_says_so_once_and_runs_the_rest(tmp_path, data, monkeypatch):
    path = tmp_path / "two.toml"
    path.write_text('[[matrix]]\ntasks = ["glue-sst2", "pneumonia-mnist"]\nmethods = ["frozen"]\nbudgets = [64, 256]\n')
    real = data
    root, _ = _corrupt_root(tmp_path, real)
    from bench.core.backbone import BACKBONES
    from bench.probes import PROBES

    res = resolve(Cell("glue-sst2", "frozen", 64, 0))
    for rel in [*res.task.files(), *(f for p in BACKBONES.get(res.backbone).probes for f in PROBES[p].files)]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(real.path / rel, root / rel)
    monkeypatch.setenv("ADAPTBENCH_OFFLINE", "1")
    monkeypatch.setattr(bench.run.harness, "run_cell", _fake_run_cell())
    lines: list[str] = []
    result = run_grid(load_suite(str(path)), Store(tmp_path / "r"), data_root=str(root), log=lines.append)
    assert list(result.refused) == ["pneumonia-mnist"] and not result.ok
    assert sum("error: pneumonia-mnist" in line for line in lines) == 1
    assert {r.task for r in result.records} <= {"glue-sst2"}


# ------------------------------------------------------------------------------------- real cells
@pytest.mark.slow
def test_a_cell_killed_by_a_signal_is_recorded_as_killed_with_the_signal_name(tmp_path):
    import psutil

    cell = Cell("glue-sst2", "full", 64, 0, {"probe_limit": 20}, suite="kill")
    out: dict = {}
    runner = threading.Thread(target=lambda: out.update(run_cell_result(cell, tmp_path)))
    runner.start()
    deadline, victim = time.time() + 120, None
    while victim is None and time.time() < deadline:
        time.sleep(0.5)
        grandchildren = [p for c in psutil.Process().children() for p in c.children()]
        victim = grandchildren[0] if grandchildren else None
    assert victim is not None, "the cell process never started"
    time.sleep(2)
    victim.send_signal(signal.SIGKILL)
    runner.join(120)
    record = out["record"]
    assert record.status == "killed" and record.signal == "SIGKILL" and "killed by SIGKILL" in record.error
    assert Store(tmp_path).get("kill", record.key) == record


def run_cell_result(cell: Cell, tmp_path) -> dict:
    return {"record": bench.run.harness.run_cell(cell, store=Store(tmp_path), quiet=True)}
