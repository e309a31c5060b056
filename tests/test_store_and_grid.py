"""Records on disk and the resumable grid. Run: `.venv/bin/python -m pytest tests/test_store_and_grid.py -q`."""

from __future__ import annotations

import json

import pytest

from bench.catalog import resolve
from bench.core.api import Cell
from bench.core.record import new_record
from bench.core.store import Store
from bench.report.exports import records_frame
from bench.run.grid import run_grid
from bench.suite import load_suite, select


def _record(cell: Cell, status: str = "ok") -> dict:
    record = new_record(resolve(cell), status, None if status == "ok" else "boom")
    record.metrics = {"test/accuracy": 0.75}
    return record


def test_a_record_round_trips_through_the_store(tmp_path):
    store = Store(tmp_path)
    record = _record(Cell("glue-sst2", "lora", 64, 0, {"r": 4}, suite="s"))
    path = store.write(record)
    assert path.name == f"{record.key}.json"
    assert store.get("s", record.key) == record
    assert json.loads(path.read_text()) == record.to_json()
    assert store.has_ok("s", record.key)
    assert list(records_frame(store.records("s"))["test/accuracy"]) == [0.75]
    assert not list(tmp_path.rglob("*.tmp")), "atomic write leaves no temporary file behind"


def test_a_failed_rerun_never_replaces_an_ok_record(tmp_path):
    store = Store(tmp_path)
    cell = Cell("glue-sst2", "full", 64, 0, suite="s")
    ok = _record(cell)
    store.write(ok)
    store.write(_record(cell, "failed"))
    assert store.get("s", ok.key).status == "ok"
    kept = list((tmp_path / "s" / "attempts").glob("*.failed.json"))
    assert len(kept) == 1, "the failed attempt is kept beside the ok record"


def test_a_torn_record_counts_as_not_done(tmp_path):
    store = Store(tmp_path)
    record = _record(Cell("glue-sst2", "full", 64, 0, suite="s"))
    store.path("s", record.key).parent.mkdir(parents=True)
    store.path("s", record.key).write_text('{"status": "ok", "key"')
    assert not store.has_ok("s", record.key)


def _suite_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(
        "seeds = [0, 1]\n[set]\nprobe_limit = 10\n"
        '[[matrix]]\ntasks = ["glue-sst2"]\nmethods = ["frozen", "lora"]\nbudgets = [64]\n'
    )
    return path


def test_suite_files_expand_to_cells_and_typos_fail_early(tmp_path):
    suite = load_suite(str(_suite_file(tmp_path)))
    assert len(suite.cells) == 4 and suite.name == "tiny"
    assert all(c.overrides == {"probe_limit": 10} for c in suite.cells)
    assert [c.method for c in select(suite.cells, "glue-sst2/lora/*")] == ["lora", "lora"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[matrix]]\ntasks = ["glue-sst2"]\nmethods = ["lorra"]\nbudgets = [64]\n')
    with pytest.raises(Exception, match="Did you mean 'lora'"):
        load_suite(str(bad))
    for name in ("default", "proxy"):
        assert load_suite(name).cells


def test_grid_seeds_replace_the_suite_s_own_for_a_baseline_at_more_seeds(tmp_path, capsys):
    from bench.cli import main

    suite = load_suite("proxy", seeds=[0, 1, 2])
    assert {c.seed for c in suite.cells} == {0, 1, 2} and len(suite.cells) == 3 * len(load_suite("proxy").cells)
    swept = tmp_path / "swept.toml"  # a block's own seeds give way too; its sweep runs on the first, unless it names
    swept.write_text(
        'seeds = [0]\n[[matrix]]\ntasks = ["glue-sst2"]\nmethods = ["lora"]\nbudgets = [64]\nseeds = [0, 1]\n'
        "sweep = { lr = [1e-4, 1e-3] }\nsweep_budget = 64\n"
        '[[matrix]]\ntasks = ["glue-sst2"]\nmethods = ["full"]\nbudgets = [64]\nsweep = { lr = [1e-5, 1e-4] }\n'
        "sweep_budget = 64\nsweep_seeds = [0]\n"
    )
    default, named = load_suite(str(swept), seeds=[3, 4]).sweeps
    assert (default.seeds, default.block_seeds) == ((3,), (3, 4)) and (named.seeds, named.block_seeds) == ((0,), (3, 4))
    for bad, why in (("0,0", "repeats a seed"), ("0,x", "'x' is not an integer")):
        with pytest.raises(SystemExit) as stop:
            main(["grid", "--suite", "proxy", "--seeds", bad, "--dry-run"])
        assert stop.value.code == 2 and why in capsys.readouterr().err
    assert main(["grid", "--suite", "proxy", "--seeds", "5,6", "--results", str(tmp_path), "--dry-run"]) == 0
    cells = [next(t for t in line.split() if t.count("/") == 3) for line in capsys.readouterr().out.splitlines()[1:]]
    assert cells and all(cell.endswith(("/5", "/6")) for cell in cells)


def test_a_killed_grid_resumes_without_redoing_finished_cells(tmp_path, monkeypatch):
    import bench.run.harness

    store, suite = Store(tmp_path / "results"), load_suite(str(_suite_file(tmp_path)))
    calls: list[Cell] = []

    def fake_run_cell(cell, store, **kwargs):
        cell = getattr(cell, "cell", cell)  # the grid passes the Resolved, `run` a Cell
        calls.append(cell)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the grid is killed while the third cell runs
        record = _record(cell)
        store.write(record)
        return record

    monkeypatch.setattr(bench.run.harness, "run_cell", fake_run_cell)
    with pytest.raises(KeyboardInterrupt):
        run_grid(suite, store, log=lambda _: None)
    done = {c.describe() for c in calls[:2]}
    calls.clear()
    records = run_grid(suite, store, log=lambda _: None).records
    assert len(calls) == 2 and not done & {c.describe() for c in calls}, "finished cells are not run again"
    assert len(records) == 4 and all(r.status == "ok" for r in records)


def test_per_example_predictions_are_stored_beside_the_record_and_checked(tmp_path):
    import numpy as np

    store = Store(tmp_path)
    record = _record(Cell("glue-sst2", "lora", 64, 0, suite="s"))
    outputs = np.random.default_rng(0).normal(size=(5, 2))
    record.arrays = {"test": {"ids": np.arange(5), "outputs": outputs, "labels": np.array([0, 1, 0, 1, 1])}}
    path = store.write(record)
    again = store.get("s", record.key)
    assert again.predictions["file"] == path.with_suffix(".preds.npz").name
    preds = store.predictions(again)["test"]
    np.testing.assert_allclose(preds["outputs"], outputs, rtol=1e-6)
    assert list(preds["labels"]) == [0, 1, 0, 1, 1] and list(preds["ids"]) == list(range(5))
    import shutil

    shutil.copytree(tmp_path / "s", tmp_path / "renamed")  # e.g. results/baselines/default-cpu holds suite default
    moved = Store(tmp_path).records("renamed")[0]
    assert moved.suite == "s" and list(Store(tmp_path).predictions(moved)["test"]["labels"]) == [0, 1, 0, 1, 1]
    path.with_suffix(".preds.npz").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="checksum"):
        store.predictions(again)
