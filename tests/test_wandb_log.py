"""W&B logging of records (``--wandb``), offline. Run: `.venv/bin/python -m pytest tests/test_wandb_log.py -q`.

The runs are read back from the ``.wandb`` file wandb writes offline (a LevelDB-style log of protobuf records, the
format ``wandb sync`` uploads), so the tests check what would reach W&B, not what we meant to send.
"""

from __future__ import annotations

import json
import struct
import time

import pytest
from google.protobuf.message import DecodeError

from bench.catalog import resolve
from bench.core.api import Cell
from bench.core.record import Cost, Env, Forgetting, Params, Selection, new_record
from bench.core.store import Store

HISTORY = [
    {"step": 12, "train_loss": 0.35, "val/accuracy": 0.85, "val/auroc": 0.91},
    {"step": 24, "train_loss": 0.13, "val/accuracy": 0.90, "val/auroc": 0.94},
    {"step": 36, "train_loss": 0.06, "val/accuracy": 0.88, "val/auroc": 0.93},
]


def _record(status: str = "ok"):
    r = new_record(resolve(Cell("glue-sst2", "lora", 64, 1, suite="t")), status)
    if status != "ok":
        r.error = "Traceback (most recent call last):\n  ...\nRuntimeError: exploded"
        r.cost = Cost(wall_time_s=3.0)
        return r
    r.metrics = {"test/accuracy": 0.81, "val/accuracy": 0.90, "val/auroc": 0.94}
    r.forgetting = Forgetting("stsb-spearman", before=0.87, after=0.85, drop=0.02)
    r.params = Params(total=1000, trainable=10, trainable_no_head=0, adapter_bytes=40)
    r.cost = Cost(device="cpu", peak_mem_bytes=2**30, train_samples_per_s=10.0, train_time_s=5.0, wall_time_s=9.0)
    r.selection = Selection(on="val/auroc", best_step=24, history=[dict(row) for row in HISTORY])
    r.env = Env(git_sha="abc123", dirty=False)
    r.flags = ["degenerate"]
    return r


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """wandb with no configuration (so adaptbench picks offline), writing under tmp_path."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_GROUP", "WANDB_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _protobufs(path):
    """The records of a .wandb file: a 7-byte header, then 32 KiB blocks of chunks (crc32, length, type: 1 whole
    record, 2/3/4 first/middle/last piece)."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, pieces = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"[: len(data)], "not a .wandb file"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pieces, pos = pieces + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            pieces = b""
            yield record


def _read_run(folder, wait_s: float = 20.0):
    """(run, config, final summary, history rows, exit code) of one offline run folder. ``run.finish()`` returns
    before wandb-core has flushed the file, so it is read again until it holds the run's exit record."""
    [path] = folder.glob("run-*.wandb")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            out = _parse_run(path)
        except DecodeError:  # a record still being written
            out = None
        if (out is not None and out[-1] is not None) or time.monotonic() > deadline:
            return out
        time.sleep(0.1)


def _parse_run(path):
    run, config, summary, history, exit_code = None, {}, {}, [], None

    def items(updates):
        return {u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in updates}

    for pb in _protobufs(path):
        kind = pb.WhichOneof("record_type")
        if kind == "run":
            run = pb.run
            config.update(items(pb.run.config.update))
        elif kind == "config":
            config.update(items(pb.config.update))
        elif kind == "summary":
            summary.update(items(pb.summary.update))
        elif kind == "history":
            history.append({k: v for k, v in items(pb.history.item).items() if not k.startswith("_")})
        elif kind == "exit":
            exit_code = pb.exit.exit_code
    return run, config, summary, history, exit_code


def test_an_ok_record_becomes_an_offline_run_with_its_config_summary_and_learning_curve(offline, capsys):
    from bench.run.wandb_log import WandbLogger

    record = _record()
    logger = WandbLogger()
    logger(record)
    [folder] = (offline / "wandb").glob("offline-run-*")
    assert logger.logged == [folder]
    run, config, summary, history, exit_code = _read_run(folder)
    assert (run.display_name, run.run_group, run.project) == (record.key, "t", "adaptbench")
    assert list(run.tags) == ["ok"] and exit_code == 0
    expected = {"task": "glue-sst2", "method": "lora", "budget": 64, "seed": 1, "suite": "t", "key": record.key}
    assert {k: config[k] for k in expected} == expected and config["git_sha"] == "abc123"
    assert config["method.r"] == record.hparams["method"]["r"]
    assert config["train.batch_size"] == record.hparams["train"]["batch_size"]
    assert history == HISTORY, "one row per validation pass"
    # the summary holds the record's numbers (the selected step's val/auroc), not the curve's last row
    assert summary["val/auroc"] == 0.94 and summary["val/accuracy"] == 0.90 and summary["test/accuracy"] == 0.81
    assert summary["forgetting/drop"] == 0.02 and summary["forgetting/before"] == 0.87
    assert summary["cost/train_time_s"] == 5.0 and summary["cost/peak_mem_bytes"] == 2**30
    assert summary["cost/train_samples_per_s"] == 10.0 and summary["params/trainable"] == 10
    assert summary["status"] == "ok" and summary["flags"] == "degenerate" and summary["selection/best_step"] == 24
    assert "wandb sync" in logger.describe() and capsys.readouterr().err == ""


def test_a_failed_record_is_logged_as_a_failed_run_with_its_error(offline):
    from bench.run.wandb_log import WandbLogger

    WandbLogger()(_record("failed"))
    [folder] = (offline / "wandb").glob("offline-run-*")
    run, _, summary, history, exit_code = _read_run(folder)
    assert list(run.tags) == ["failed"] and exit_code == 1 and history == []
    assert summary["status"] == "failed" and summary["error"] == "RuntimeError: exploded"


def test_a_failing_wandb_only_warns_and_leaves_the_record_untouched(tmp_path, offline, monkeypatch):
    import wandb

    from bench.run.wandb_log import WandbLogger

    store, record = Store(tmp_path / "results"), _record()
    path = store.write(record)
    before, on_disk = record.dumps(), path.read_bytes()
    calls = []

    def broken_init(**kwargs):
        calls.append(kwargs)
        raise RuntimeError("no service\nsecond line")

    monkeypatch.setattr(wandb, "init", broken_init)
    warnings: list[str] = []
    logger = WandbLogger(warn=warnings.append)
    logger(record)
    logger(_record("failed"))  # after a failure nothing more is tried
    assert len(calls) == 1 and len(warnings) == 1 and "\n" not in warnings[0]
    assert "could not log" in warnings[0] and "RuntimeError: no service second line" in warnings[0]
    assert record.dumps() == before and path.read_bytes() == on_disk
    assert logger.describe().startswith("wandb: no run logged")


def test_without_wandb_installed_a_record_only_warns(offline, monkeypatch):
    import sys

    from bench.run.wandb_log import WandbLogger

    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    warnings: list[str] = []
    record = _record()
    before = record.dumps()
    WandbLogger(warn=warnings.append)(record)
    assert len(warnings) == 1 and "not installed" in warnings[0] and record.dumps() == before


def test_the_mode_is_offline_unless_the_environment_configures_wandb(monkeypatch):
    from bench.run.wandb_log import mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert mode() is None
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("WANDB_MODE", "online")
    assert mode() is None


def test_grid_wandb_logs_each_cell_it_runs_once_its_record_is_written(tmp_path, offline, monkeypatch, capsys):
    import bench.run.harness
    import bench.run.wandb_log
    from bench.cli import main

    suite = tmp_path / "tiny.toml"
    suite.write_text('seeds = [0]\n[[matrix]]\ntasks = ["glue-sst2"]\nmethods = ["frozen", "lora"]\nbudgets = [64]\n')
    results = tmp_path / "results"

    def fake_run_cell(cell, store, **kwargs):
        cell = getattr(cell, "cell", cell)  # the grid passes the Resolved, `run` a Cell
        record = new_record(resolve(cell), "ok")
        store.write(record)
        return record

    logged = []

    def fake_log_record(record):
        assert Store(results).has_ok(record.suite, record.key), "logged after the record is written"
        logged.append(record.method)
        return tmp_path / "wandb" / f"offline-run-{record.method}"

    monkeypatch.setattr(bench.run.harness, "run_cell", fake_run_cell)
    monkeypatch.setattr(bench.run.wandb_log, "log_record", fake_log_record)
    assert main(["grid", "--suite", str(suite), "--results", str(results), "--wandb"]) == 0
    assert sorted(logged) == ["frozen", "lora"]
    assert "wandb: 2 runs written offline" in capsys.readouterr().out
    logged.clear()
    assert main(["grid", "--suite", str(suite), "--results", str(results)]) == 0 and logged == []
