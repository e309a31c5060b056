"""The Ray executor on a real Ray cluster of two nodes on this machine (loopback only): a small suite of real cells
gives the same records as the local executor, and a Ray worker killed mid-cell becomes a retried cell or a failed
record with the reason, never a gap. Skipped when Ray is not installed (`make setup-ray`).
Run: `.venv/bin/python -m pytest tests/test_ray_executor.py -q` (the cluster tests alone: `-m ray`). About 2 minutes
on a busy 2-core machine, most of it in cold starts: the cluster (~13 s) and the fork server of each process that
runs cells (~15 s each: the local grid's, each Ray worker's).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import bench
from bench.catalog import resolve
from bench.core.store import Store
from bench.run.executor import LocalExecutor, make_executor
from bench.run.grid import run_grid
from bench.suite import load_suite

NODE_CPUS = 2  # each node runs one cell at a time: cells ask for their threads (2) as CPUs


def test_ray_options_are_refused_with_the_local_executor():
    with pytest.raises(ValueError, match="--address and --cell-memory: only with --executor ray"):
        make_executor("local", address="auto", cell_memory_gib=8)


def test_without_ray_the_ray_executor_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ValueError, match="needs Ray, which is not installed: `make setup-ray`"):
        make_executor("ray")


@pytest.fixture(scope="module")
def cluster():
    """A head node and a second node, both on 127.0.0.1 (Ray would otherwise pick the machine's address)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read by the node processes: loopback addresses
        mp.setenv("HF_HUB_OFFLINE", "1")  # data never downloaded: a missing file is an error
        pytest.importorskip("ray")
        import ray._private.ray_constants as constants
        from ray.cluster_utils import Cluster

        mp.setattr(constants, "ENABLE_RAY_CLUSTER", False)  # the same for this process, whenever ray was imported
        node = {"num_cpus": NODE_CPUS, "node_ip_address": "127.0.0.1", "object_store_memory": 80 * 2**20}
        ray_cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
        try:
            ray_cluster.add_node(**node)
            ray_cluster.wait_for_nodes()
            yield ray_cluster
        finally:
            ray_cluster.shutdown()


@pytest.fixture(scope="module")
def executor(cluster):
    """One driver connection for the module, so its Ray workers (and their cell fork servers) are reused."""
    from bench.run.ray_executor import RayExecutor

    ex = RayExecutor(address=cluster.address, cell_memory_gib=0.5, device="cpu")
    yield ex
    ex.close()


def _suite(tmp_path: Path, backbone: str, methods: str = '["frozen", "lora"]'):
    path = tmp_path / "tiny-ray.toml"
    path.write_text(
        f'seeds = [0]\n[set]\nbackbone = "{backbone}"\nprobe_limit = 20\neval_limit = 64\n'
        f'[[matrix]]\ntasks = ["glue-sst2"]\nmethods = {methods}\nbudgets = [64]\n'
        "set = { max_steps = 4, eval_every = 2 }\n"
    )
    return load_suite(str(path))


@pytest.mark.ray
def test_a_suite_on_two_ray_nodes_gives_the_local_executors_records(executor, tiny_backbones, tmp_path):
    suite = _suite(tmp_path, tiny_backbones["tiny-hf"])
    local = run_grid(suite, Store(tmp_path / "local"), log=lambda _: None, executor=LocalExecutor(1))
    lines: list[str] = []
    filed: list = []
    ray_store = Store(tmp_path / "ray")
    result = run_grid(suite, ray_store, log=lines.append, executor=executor, on_record=filed.append)

    assert executor.slots == 2 and any(line.startswith("executor ray: 4 CPUs") for line in lines)
    assert [line.split(" ")[0] for line in lines if " running " in line] == ["[1/2]", "[2/2]"]
    assert result.ok and {r.key for r in filed} == {r.key for r in result.records}
    by_key = {r.key: r for r in local.records}
    assert set(by_key) == {r.key for r in result.records} == {resolve(c).key for c in suite.cells}
    for record in result.records:
        mine = by_key[record.key]
        assert record.status == mine.status == "ok", record.error
        assert record.metrics == mine.metrics and _probe(record) == _probe(mine)
        assert record.params == mine.params and record.hparams == mine.hparams
        ours, theirs = ray_store.predictions(record)["test"], Store(tmp_path / "local").predictions(mine)["test"]
        assert all(np.array_equal(ours[k], theirs[k]) for k in ("ids", "outputs", "labels"))
        assert ray_store.get(suite.name, record.key) == record, "the driver filed it in its results folder"
        assert record.executor["kind"] == "ray" and record.executor["checkout"] == str(Path(bench.__file__).parents[1])
        assert mine.executor is None
    assert len({r.executor["node_id"] for r in result.records}) == 2, "the two cells ran at once, one per node"
    assert not list((tmp_path / "ray" / suite.name / ".claims").glob("*.json")), "claims are released"


def _probe(record) -> tuple:
    """The forgetting probe's numbers (not where they came from: the shared probe cache holds what the executor
    that ran first computed)."""
    f = record.forgetting
    return f.probe, f.before, f.after, f.drop


def _kill_the_worker_mid_cell(timeout_s: float = 120) -> int:
    """SIGKILL the Ray worker running a cell, once the cell's own process (its grandchild, forked by the worker's
    fork server) is alive; returns the worker's pid."""
    import psutil

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        for proc in psutil.Process().children(recursive=True):  # the cluster's processes are ours
            try:
                busy = " ".join(proc.cmdline()).startswith("ray::adaptbench:")
                cells = [g for c in proc.children() for g in c.children()] if busy else []
            except psutil.Error:
                continue
            if cells:
                proc.kill()
                return proc.pid
        time.sleep(0.02)
    raise AssertionError("no Ray worker started the cell")


def _grid_in_thread(suite, store, executor) -> tuple[threading.Thread, dict]:
    out: dict = {}
    thread = threading.Thread(
        target=lambda: out.update(
            result=run_grid(suite, store, log=out.setdefault("lines", []).append, executor=executor)
        )
    )
    thread.start()
    return thread, out


@pytest.mark.ray
def test_a_ray_worker_killed_mid_cell_is_retried_and_the_cell_still_gets_its_record(executor, tiny_backbones, tmp_path):
    suite, store = _suite(tmp_path, tiny_backbones["tiny-hf"], methods='["lora"]'), Store(tmp_path / "r")
    thread, out = _grid_in_thread(suite, store, executor)
    _kill_the_worker_mid_cell()
    thread.join(180)
    (record,) = out["result"].records
    assert record.status == "ok", record.error
    assert len(record.executor["lost"]) == 1 and record.executor["lost"][0].startswith("WorkerCrashedError")
    assert store.get(suite.name, record.key) == record


@pytest.mark.ray
def test_a_cell_whose_every_attempt_is_lost_is_a_failed_record_with_the_reason(executor, tiny_backbones, tmp_path):
    suite, store = _suite(tmp_path, tiny_backbones["tiny-hf"], methods='["lora"]'), Store(tmp_path / "r")
    executor.attempts = 1
    try:
        thread, out = _grid_in_thread(suite, store, executor)
        _kill_the_worker_mid_cell()
        thread.join(180)
    finally:
        executor.attempts = 3
    (record,) = out["result"].records
    assert not out["result"].ok and record.status == "failed"
    assert record.error.startswith("ray worker died:") and "WorkerCrashedError" in record.error
    assert store.get(suite.name, record.key).status == "failed", "written by the driver: not a gap"
    assert any("FAILED: ray worker died" in line for line in out["lines"]), "the grid's line says why"


@pytest.mark.ray
def test_a_node_without_the_data_gives_a_failed_record_naming_the_file(executor, tiny_backbones, tmp_path):
    suite, store = _suite(tmp_path, tiny_backbones["tiny-hf"], methods='["frozen"]'), Store(tmp_path / "r")
    empty = tmp_path / "no-data"
    empty.mkdir()
    record = executor.run(suite.cells[0], store, data_root=str(empty), device="cpu", timeout_s=60)
    assert record.status == "failed" and "raised on its worker: DataError" in record.error
    assert store.get(suite.name, record.key).error == record.error and os.fspath(empty) in record.error
