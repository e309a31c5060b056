"""Every fault a user can meet ends in one user-level sentence that says what happened and the fix, with the right exit
code, and never loses or half-writes a record: a damaged cache entry, Ctrl-C and SIGTERM on a grid or a cell, a file
where a folder is expected, an address-space limit, a filter that keeps nothing, a typo in a suite's ``[set]`` or in
``--set``, an out-of-memory cell, and a class-collapsed cell whose scores still rank.
Run: `.venv/bin/python -m pytest tests/test_fault_messages.py -q`.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import bench.run.grid
import bench.run.harness
from bench.catalog import resolve
from bench.cli import main
from bench.core.api import Cell
from bench.core.cache import FeatureCache
from bench.core.data import DataError
from bench.core.record import new_record
from bench.core.store import Store
from bench.run.cell import collapse_flags
from bench.run.grid import run_grid
from bench.run.harness import InFlight, child_main
from bench.run.stop import Stopped
from bench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]


def _suite_file(tmp_path: Path, tasks: str = '["glue-sst2"]', head: str = "seeds = [0, 1]\n") -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(f'{head}[[matrix]]\ntasks = {tasks}\nmethods = ["frozen", "lora"]\nbudgets = [64]\n')
    return path


def _ok(cell) -> object:
    record = new_record(resolve(cell), "ok")
    record.metrics = {"test/accuracy": 0.75}
    return record


def _fake_run_cell(stop_at: int | None = None, raise_with: BaseException | None = None):
    """A cell that writes an ok record at once; the ``stop_at``-th raises ``raise_with`` while it runs."""
    calls: list[Cell] = []

    def run_cell(cell, store, **kwargs):
        cell = getattr(cell, "cell", cell)
        calls.append(cell)
        if stop_at is not None and len(calls) == stop_at:
            raise raise_with
        record = _ok(cell)
        store.write(record)
        return record

    run_cell.calls = calls
    return run_cell


# ------------------------------------------------------------------------------------------ 1. cache entries
def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _good_entry() -> bytes:
    ids, feats = np.arange(3), np.ones((3, 2), np.float32)
    import hashlib

    return _npz(ids=ids, features=feats, sha256=np.array(hashlib.sha256(ids.tobytes() + feats.tobytes()).hexdigest()))


@pytest.mark.parametrize(
    "damage",
    [
        lambda good: b"",  # empty
        lambda good: b"garbage",  # not an npz
        lambda good: b"PK\x03\x04" + b"x" * 64,  # a zip header, then nothing of a zip: BadZipFile
        lambda good: good[: len(good) // 2],  # truncated by a full disk: BadZipFile
        lambda good: _npz(ids=np.array([{"a": 1}], dtype=object)),  # pickled objects: refused
        lambda good: _npz(ids=np.arange(3)),  # keys missing
        lambda good: _npz(ids=np.arange(3), features=np.ones((2, 2)), sha256=np.array("x")),  # shapes disagree
    ],
    ids=["empty", "garbage", "zip-header", "truncated", "pickle", "keys", "shapes"],
)
def test_an_unreadable_feature_cache_entry_is_deleted_recomputed_and_named_once(tmp_path, monkeypatch, capsys, damage):
    monkeypatch.setenv("ADAPTBENCH_CACHE", str(tmp_path / "cache"))
    cache = FeatureCache({"task": "damaged", "case": str(tmp_path)})
    path = cache.path("train")
    path.parent.mkdir(parents=True)
    for _ in range(2):  # damaged twice in one process: recomputed twice, named once
        path.write_bytes(damage(_good_entry()))
        feats = cache.features("train", np.arange(4), lambda pos: np.full((len(pos), 2), 7.0))
        assert feats.shape == (4, 2) and (feats == 7.0).all(), "recomputed, not read from the damaged file"
    assert cache.computed == 8 and len(cache.rejected) == 2 and cache.rejected[0].startswith(path.name)
    with np.load(path) as z:
        assert list(z["ids"]) == [0, 1, 2, 3], "the entry was rewritten whole"
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert warnings == [warnings[0]] and str(path) in warnings[0] and "deleted, recomputing it" in warnings[0]


# ------------------------------------------------------------------------------------------ 2. Ctrl-C, SIGTERM
@pytest.mark.parametrize(
    "raised, code, name",
    [(KeyboardInterrupt(), 130, "Ctrl-C (SIGINT)"), (Stopped(signal.SIGTERM), 143, "SIGTERM")],
)
def test_an_interrupted_grid_says_how_far_it_got_in_one_line_and_exits_128_plus_the_signal(
    tmp_path, monkeypatch, capsys, raised, code, name
):
    fake = _fake_run_cell(stop_at=3, raise_with=raised)
    monkeypatch.setattr(bench.run.harness, "run_cell", fake)
    suite, results = _suite_file(tmp_path), tmp_path / "results"
    assert main(["grid", "--suite", str(suite), "--results", str(results), "--quiet"]) == code
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"adaptbench: interrupted by {name} after 2 of 4 cells (2 recorded this run; the running one was stopped and "
        "has no record); rerun the same command to resume"
    ]
    assert len(list((results / "tiny").glob("*.json"))) == 2 and not list(results.rglob("*.tmp"))
    assert not list((results / "tiny" / ".claims").glob("*.json")), "the running cell's claim is released"
    monkeypatch.setattr(bench.run.harness, "run_cell", _fake_run_cell())
    assert main(["grid", "--suite", str(suite), "--results", str(results), "--quiet"]) == 0
    assert len(list((results / "tiny").glob("*.json"))) == 4, "the rerun resumes"


def test_an_interrupted_run_says_nothing_was_recorded_and_exits_130(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench.run.harness, "run_cell", _fake_run_cell(stop_at=1, raise_with=KeyboardInterrupt()))
    args = ["run", "--task", "glue-sst2", "--method", "lora", "--budget", "64", "--results", str(tmp_path)]
    assert main(args) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("adaptbench: interrupted by Ctrl-C (SIGINT) before glue-sst2 x lora @ 64")
    assert err.endswith("nothing was recorded for it: rerun the same command to run it") and "\n" not in err


GRID_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import bench.run.harness as harness
    from bench.catalog import resolve
    from bench.core.record import new_record

    def run_cell(cell, store, **kwargs):
        res = resolve(cell)
        if len(list(store.suite_dir(res.cell.suite).glob("*.json"))) >= 2:
            print("third cell running", flush=True)
            time.sleep(120)
        record = new_record(res, "ok")
        record.metrics = {"test/accuracy": 0.75}
        store.write(record)
        return record

    harness.run_cell = run_cell
    from bench.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_real_signal_ends_a_grid_with_one_line_no_traceback_and_the_shells_exit_code(tmp_path, sig, code):
    suite, results = _suite_file(tmp_path), tmp_path / "results"
    cmd = [sys.executable, "-c", GRID_SCRIPT, "grid", "--suite", str(suite), "--results", str(results), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    while line and "third cell running" not in line:
        line = proc.stdout.readline()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "after 2 of 4 cells (2 recorded this run;" in err and "rerun the same command to resume" in err
    assert len(list((results / "tiny").glob("*.json"))) == 2


def _sleep() -> None:
    time.sleep(60)


def test_a_stopped_grid_ends_its_running_cells_and_records_nothing_for_them(monkeypatch):
    inflight = InFlight()
    proc = multiprocessing.get_context("fork").Process(target=_sleep)
    proc.start()
    inflight.add(proc)
    inflight.stop()
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL and inflight.stopped(proc.exitcode), "ended at once, not waited for"
    monkeypatch.setattr(bench.run.harness, "STOP_WAIT_S", 0.05)
    alone = InFlight()  # a SIGTERM sent to one cell alone, its grid not stopping: a `killed` record, as before
    assert not alone.stopped(-signal.SIGTERM) and not alone.stopped(1)


# ------------------------------------------------------------------------------------------ 3. folders
def test_a_file_given_as_results_or_data_root_is_refused_before_any_cell_runs(tmp_path, monkeypatch, capsys):
    fake = _fake_run_cell()
    monkeypatch.setattr(bench.run.harness, "run_cell", fake)
    a_file = tmp_path / "records.json"
    a_file.write_text("{}")
    suite = str(_suite_file(tmp_path))
    assert main(["grid", "--suite", suite, "--results", str(a_file)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"adaptbench: error: --results {a_file} is a file; give a folder (it is created if missing)"
    )
    assert main(["grid", "--suite", suite, "--results", str(tmp_path / "r"), "--data-root", str(a_file)]) == 2
    assert f"--data-root {a_file} is a file; give the data folder" in capsys.readouterr().err
    assert main(["report", "--results", str(a_file)]) == 2
    assert capsys.readouterr().err.strip().endswith("is a file; give a folder of records")
    assert fake.calls == [], "no cell ran"


# ------------------------------------------------------------------------------------------ 4. memory limits
def test_an_address_space_limit_hit_while_importing_torch_is_one_paragraph_and_exit_2(tmp_path):
    limit = 2 * 10**9  # below the >3 GB that importing torch maps; above what the command line needs

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    probe = subprocess.run([sys.executable, "-c", "import torch"], preexec_fn=cap, capture_output=True, text=True)
    if probe.returncode == 0:
        pytest.skip("torch imports under a 2 GB address-space limit here")
    code = "import sys; from bench.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["grid", "--suite", str(_suite_file(tmp_path)), "--results", str(tmp_path / "r"), "--dry-run"]
    proc = subprocess.run([sys.executable, "-c", code, *args], preexec_fn=cap, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert err.startswith("adaptbench: error: adaptbench ran out of memory (")
    assert "may map at most 1.9 GiB of address space (`ulimit -v` / `prlimit --as`)" in err
    assert "`ulimit -v unlimited`" in err and "MemoryMax" in err


def test_a_cell_that_cannot_import_torch_for_memory_is_an_oom_record_naming_the_limit(tmp_path, monkeypatch):
    def no_torch(*args, **kwargs):
        raise ImportError("libtorch_cpu.so: failed to map segment from shared object")

    monkeypatch.setattr(bench.run.harness, "execute", no_torch)
    res = resolve(Cell("glue-sst2", "lora", 64, 0, suite="s"))
    child_main(res, str(tmp_path / "done.json"), "cpu", str(tmp_path), None)
    record = Store(tmp_path).get("s", res.key)
    assert record.status == "oom" and record.retry is None, "no retry with half the batch: it cannot help"
    assert "could not load its libraries" in record.error and "failed to map segment" in record.error
    assert record.cost.wall_time_s > 0 and record.cost.device == "cpu"


# ------------------------------------------------------------------------------------------ 5. counting
def test_status_lines_count_refused_cells_apart_and_a_cell_another_grid_finished_is_not_ran(tmp_path, monkeypatch):
    suite = load_suite(str(_suite_file(tmp_path, tasks='["glue-sst2", "glue-rte"]')))
    store = Store(tmp_path / "results")

    def check_inputs(res, data, sizes):
        if res.cell.task == "glue-rte":
            raise DataError("glue-rte: its data is missing (test)")

    monkeypatch.setattr(bench.run.grid, "check_inputs", check_inputs)
    other = [resolve(c) for c in suite.cells if c.task == "glue-sst2"][1]

    def run_cell(cell, store, **kwargs):  # while the first cell runs, another grid finishes the second
        store.write(_ok(other.cell))
        record = _ok(cell.cell)
        store.write(record)
        return record

    monkeypatch.setattr(bench.run.harness, "run_cell", run_cell)
    lines: list[str] = []
    run_grid(suite, store, log=lines.append)
    assert "suite tiny: 0 cells already done, 4 to run, 4 not run (task glue-rte refused, above)" in lines
    assert any(f"{other.cell.describe()}: done meanwhile by another grid" in line for line in lines)
    assert "suite tiny: ran 3 cells" in lines[-2], lines  # 4 glue-sst2 cells, one of them finished by the other grid
    lines.clear()
    run_grid(suite, store, log=lines.append)
    assert "suite tiny: 4 cells already done, 0 to run, 4 not run (task glue-rte refused, above)" in lines


def test_an_unreadable_record_is_named_once_and_not_after_it_was_recomputed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench.run.harness, "run_cell", _fake_run_cell())
    suite, results = str(_suite_file(tmp_path)), str(tmp_path / "results")
    assert main(["grid", "--suite", suite, "--results", results, "--quiet"]) == 0
    victim = sorted((tmp_path / "results" / "tiny").glob("*.json"))[1]
    victim.write_text(victim.read_text()[:40])
    capsys.readouterr()
    assert main(["grid", "--suite", suite, "--results", results, "--quiet"]) == 0
    captured = capsys.readouterr()
    said = (captured.out + captured.err).count(f"unreadable record {victim}")
    assert said == 1 and "warning: unreadable record" not in captured.err
    assert json.loads(victim.read_text())["status"] == "ok"


# ------------------------------------------------------------------------------------------ 6. --filter
@pytest.mark.parametrize("dry", [[], ["--dry-run"]])
def test_a_filter_that_matches_no_cell_is_an_error_with_examples(tmp_path, monkeypatch, capsys, dry):
    fake = _fake_run_cell()
    monkeypatch.setattr(bench.run.harness, "run_cell", fake)
    args = ["grid", "--suite", str(_suite_file(tmp_path)), "--results", str(tmp_path), "--filter", "glue-sst3/*"]
    assert main([*args, *dry]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "adaptbench: error: --filter 'glue-sst3/*' matches none of suite tiny's 4 cells (a glob or a substring of "
        "task/method/budget/seed); e.g. glue-sst2/frozen/64/0, glue-sst2/lora/64/0, glue-sst2/frozen/64/1, "
        "glue-sst2/lora/64/1"
    )
    assert fake.calls == []


# ------------------------------------------------------------------------------------------ 7, 8. settings
def test_a_top_level_set_error_is_labelled_set_and_a_block_one_its_block(tmp_path):
    bad = _suite_file(tmp_path, head="seeds = [0]\n[set]\nlearning_rate = 1e-4\n")
    # its first cell is frozen's, a logistic regression on text features: it has no learning rate
    with pytest.raises(ValueError, match=r"tiny.toml, \[set\]: --set learning_rate: .*calls it 'lr', which frozen on"):
        load_suite(str(bad))
    bad.write_text(bad.read_text().replace("learning_rate = 1e-4", "epochs = 2") + "set = { wd = 0.1 }\n")
    with pytest.raises(ValueError, match=r"\[\[matrix\]\] block 1: --set wd: .*Did you mean 'weight_decay'\?"):
        load_suite(str(bad))


@pytest.mark.parametrize(
    "key, expected",
    [
        ("learning_rate", "Did you mean 'lr'?"),
        ("learning_rate@frozen", "this benchmark calls it 'lr', which frozen on glue-sst2 does not take."),
        ("Learning-Rate", "Did you mean 'lr'?"),
        ("wd", "Did you mean 'weight_decay'?"),
        ("batch", "Did you mean 'batch_size'?"),
        ("num_epochs", "Did you mean 'epochs'?"),
        ("lora_alpha", "Did you mean 'alpha'?"),
        ("max_length", "Did you mean 'max_len'?"),
        ("epoch", "Did you mean 'epochs'?"),
        ("seed", "the seed is a cell coordinate, not a setting: use --seed N"),
    ],
)
def test_an_unknown_set_key_suggests_the_benchmarks_name_for_it(key, expected):
    key, _, method = key.partition("@")
    with pytest.raises(ValueError) as err:
        resolve(Cell("glue-sst2", method or "lora", 64, 0, {key: 1}))
    assert str(err.value).startswith(f"--set {key}: ") and expected in str(err.value)


# ------------------------------------------------------------------------------------------ 9. oom cost
def test_an_oom_record_carries_its_wall_time_peak_memory_and_device(tmp_path, monkeypatch):
    def oom(*args, **kwargs):
        time.sleep(0.05)
        raise MemoryError("test allocation")

    monkeypatch.setattr(bench.run.harness, "execute", oom)
    res = resolve(Cell("glue-sst2", "lora", 64, 0, suite="s"))
    child_main(res, str(tmp_path / "done.json"), "cpu", str(tmp_path), None)
    record = Store(tmp_path).get("s", res.key)
    assert record.status == "oom" and record.retry is not None, "retried once with half the micro-batch"
    cost = record.cost
    assert cost.wall_time_s >= 0.1 and cost.device == "cpu", "both attempts' time"
    assert cost.peak_mem_bytes > 2**20 and cost.peak_mem_kind == "process_peak_rss"


def test_a_cell_killed_without_its_record_keeps_what_its_process_last_measured(tmp_path):
    meter = tmp_path / "meter.json"
    meter.write_text(json.dumps({"peak_rss_bytes": 3 * 2**30, "device": "cpu"}))
    cost = bench.run.harness._cost_at_death(meter, 12.5)
    assert (cost.wall_time_s, cost.device, cost.peak_mem_bytes) == (12.5, "cpu", 3 * 2**30)
    assert cost.peak_mem_kind == "process_peak_rss"
    assert bench.run.harness._cost_at_death(tmp_path / "none.json", 1.0).peak_mem_bytes is None


# ------------------------------------------------------------------------------------------ 10. degenerate
def test_one_predicted_class_with_scores_that_rank_is_a_threshold_note_not_a_collapse():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    margin = labels * 1.5 + rng.normal(size=200)  # ranks well, yet every item on class 1's side
    outputs = np.stack([np.full(200, -10.0), margin], axis=1)
    flags, why = collapse_flags(outputs, "classification", labels)
    assert flags == ["degenerate"], "the flag (read by the report) stays"
    assert (
        "got the same predicted class (1: the threshold), though the scores rank the items (AUROC 0.8"
        in (why["degenerate"])
    )
    assert "collapsed" not in why["degenerate"]
    unrelated = np.stack([np.full(200, -10.0), rng.normal(size=200)], axis=1)
    note = collapse_flags(unrelated, "classification", labels)[1]["degenerate"]
    assert "no better than chance (AUROC 0." in note and note.endswith("training collapsed")
    constant = np.tile([[5.0, -5.0]], (200, 1))
    assert collapse_flags(constant, "classification", labels)[1]["degenerate"].endswith(": training collapsed")
    assert collapse_flags(outputs, "classification")[1]["degenerate"].endswith("training collapsed"), "no labels"
