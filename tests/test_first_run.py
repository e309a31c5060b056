"""A newcomer's first run, offline, quiet and aligned (issue 24): ``timm:`` and ``hf:`` models load from the local
Hugging Face cache when the hub cannot be asked (offline switches, or no connection within seconds), and with
weights nowhere `run` and `grid` stop with one paragraph naming the fix, exit 2, no record; `ls --matrix` answers
for a chosen backbone, in aligned columns; `grid --dry-run` marks the cells `run` would record as unsupported;
progress lines name a block's long settings once. Fast: a fake hub cache built in tmp_path (timm's tiny
``test_resnet``, a 2-layer BERT), no cell process. Run: `.venv/bin/python -m pytest tests/test_first_run.py -q`.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from bench.catalog import resolve
from bench.cli import main
from bench.core.api import Cell
from bench.core.backbone import BackboneUnavailable, get_backbone
from bench.core.store import Store

TIMM_REPO = "timm/test_resnet.r160_in1k"  # where timm's hub loader reads `test_resnet`'s weights
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "ADAPTBENCH_OFFLINE", "HTTPS_PROXY", "https_proxy")


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache under ``HF_HOME``, the only one the code sees (huggingface_hub read its
    location at import: its constant is pointed there too); offline by the switch, as the tests run."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    for name in SWITCHES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf" / "hub"


def _cache(hub: Path, repo: str) -> Path:
    """A repository's snapshot folder in huggingface_hub's cache layout, its ``main`` branch pointing at it."""
    root = hub / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    snapshot = root / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def _timm_weights(hub: Path):
    """test_resnet's state dict, saved where timm's hub loader would have put it."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model("test_resnet")
    for m in net.modules():  # not timm's init: weights that a random init would not reproduce
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    save_file(net.state_dict(), _cache(hub, TIMM_REPO) / "model.safetensors")
    return net.state_dict()


def _no_network(monkeypatch) -> None:
    """No offline switch, and no network: the hub's connection goes to a closed local port (refused at once)."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")


# ------------------------------------------------------------------------------------------ timm, offline
@pytest.mark.parametrize("offline", ["switch", "no network"])
def test_a_timm_model_in_the_local_hub_cache_loads_offline(hub, monkeypatch, offline):
    import torch

    saved = _timm_weights(hub)
    if offline == "no network":
        _no_network(monkeypatch)
    backbone = get_backbone("timm:test_resnet")
    started = time.perf_counter()
    backbone.check_weights()
    loaded = backbone.load(pretrained=True, image_size=32)
    assert time.perf_counter() - started < 20, "no wait for the network"
    assert loaded.source == f"hub:timm/{TIMM_REPO}@{COMMIT}"
    ours = loaded.encoder.net.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in saved.items() if k in ours and not k.startswith("fc."))


@pytest.mark.parametrize("offline", ["switch", "no network"])
def test_timm_weights_nowhere_stop_run_with_one_paragraph_exit_2_and_no_record(hub, tmp_path, monkeypatch, capsys,
                                                                                offline):  # fmt: skip
    if offline == "no network":
        _no_network(monkeypatch)
    results = tmp_path / "results"
    args = ["run", "--task", "pneumonia-mnist", "--method", "frozen", "--budget", "64", "--seed", "0"]
    started = time.perf_counter()
    assert main([*args, "--set", "backbone=timm:test_resnet", "--results", str(results)]) == 2
    assert time.perf_counter() - started < 20, "seconds, not huggingface_hub's ~70 s of retries"
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("adaptbench: error: timm:test_resnet: its pretrained weights are not on this machine")
    assert f"the Hugging Face cache {hub} holds no {TIMM_REPO}" in err
    assert "set HF_HOME to a Hugging Face cache that holds it" in err and f"`hf download {TIMM_REPO}`" in err
    assert 'weights_file="/path/model.safetensors"' in err
    why = "HF_HUB_OFFLINE set" if offline == "switch" else "no connection to 127.0.0.1:9"
    assert why in err
    assert not results.exists() or not list(results.rglob("*.json")), "no record"


def test_a_grid_refuses_the_task_in_one_paragraph_records_nothing_and_exits_2(hub, tmp_path, capsys):
    suite = tmp_path / "first.toml"
    suite.write_text(
        'seeds = [0]\nset = { backbone = "timm:test_resnet" }\n'
        '[[matrix]]\ntasks = ["pneumonia-mnist", "breast-mnist"]\nmethods = ["qlora", "frozen", "lora"]\n'
        "budgets = [64]\n"
    )
    results = tmp_path / "results"
    assert main(["grid", "--suite", str(suite), "--results", str(results)]) == 2
    out = capsys.readouterr()
    text = out.out + out.err
    assert text.count("its pretrained weights are not on this machine") == 2  # the refusal and the summary
    assert "breast-mnist: its cells will not run: the pretrained weights of timm:test_resnet are not here" in text
    assert "Traceback" not in text
    assert not Store(results).records("first"), "no failed record (a refused task's cells are not run)"


# --------------------------------------------------------------------------------------------- hf, offline
def test_an_hf_model_in_the_local_hub_cache_loads_offline_and_a_missing_one_names_the_fix(hub, tiny_backbones,
                                                                                          monkeypatch):  # fmt: skip
    folder = Path(tiny_backbones["tiny-hf"].removeprefix("hf:"))
    snapshot = _cache(hub, "someone/tiny-bert")
    for f in folder.iterdir():
        shutil.copy(f, snapshot / f.name)
    _no_network(monkeypatch)
    backbone = get_backbone("hf:someone/tiny-bert")
    backbone.check_weights()
    assert backbone.model_path() == (str(snapshot), "hub:someone/tiny-bert")
    loaded = backbone.load(pretrained=True, max_len=16)
    assert loaded.source == f"hub:someone/tiny-bert@{COMMIT}" and loaded.feature_dim == 32
    with pytest.raises(BackboneUnavailable) as missing:
        get_backbone("hf:someone/not-here").check_weights()
    text = str(missing.value)
    assert "hf:someone/not-here: its weights are not on this machine" in text and "no connection" in text
    assert "`hf download someone/not-here`" in text and "--set backbone=hf:/path/to/folder" in text


# ------------------------------------------------------------------------------------------ ls --matrix
def _columns(header: str) -> list[int]:
    return [m.start() for m in re.finditer(r"\S+", header)]


def test_ls_matrix_columns_line_up_whatever_the_task_names(capsys):
    assert main(["ls", "--matrix"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line and not line.startswith(" ")]
    starts = _columns(rows[0])
    longest = max(rows[1:], key=lambda r: len(r.split()[0]))
    assert longest.startswith(longest.split()[0] + "  ")
    assert any(re.match(r"shift-amazon-books-to-electronics {2,}ok ", row) for row in rows), "ran together before"
    for row in rows[1:]:  # every entry starts at its column's start, two spaces or more after the one before
        assert [m.start() for m in re.finditer(r"- \[\d+\]|\S+", row)] == starts, row
        assert all(row[s - 2 : s] == "  " for s in starts[1:]), row


def test_ls_matrix_answers_for_a_chosen_backbone(capsys):
    assert main(["ls", "--matrix", "--set", "backbone=timm:test_resnet"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "with --set backbone=timm:test_resnet"
    sst2 = next(line for line in lines if line.startswith("glue-sst2 "))
    marks = set(re.findall(r"- \[(\d+)\]", sst2))
    assert len(marks) == 1, "one note for the task's methods that share a reason"
    mark = marks.pop()
    note = next(line for line in lines if line.startswith(f"  [{mark}] "))
    assert "glue-sst2 x adapter, bitfit," in note and "timm:test_resnet is a vision model" in note
    assert "pneumonia-mnist x prefix (timm:test_resnet): prefix tuning" in out
    assert main(["ls", "--matrix", "--set", "backbone=timm:resnet18x"]) == 2  # once, not as every pair's reason
    assert "unknown timm model 'resnet18x'" in capsys.readouterr().err


def test_ls_set_without_matrix_is_refused(capsys):
    assert main(["ls", "--set", "backbone=efficientnet-lite0"]) == 2
    assert "add --matrix" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- grid --dry-run
def test_dry_run_marks_the_cells_run_records_as_unsupported_with_the_reason(tmp_path, capsys):
    suite = tmp_path / "dry.toml"
    suite.write_text(
        'seeds = [0]\n[[matrix]]\ntasks = ["pneumonia-mnist"]\nmethods = ["lora", "qlora"]\nbudgets = [64]\n'
    )
    assert main(["grid", "--suite", str(suite), "--results", str(tmp_path / "r"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "2 cells (0 sweep cells, 1 unsupported: recorded as such, not run)" in lines[0]
    assert "estimate for the 1 cells to run" in lines[0]
    qlora = next(line for line in lines if "/qlora/" in line)
    reason = resolve(Cell("pneumonia-mnist", "qlora", 64, 0)).unsupported_reason()
    assert qlora.split()[:2] == ["cell", "unsupported"] and qlora.endswith(f"({reason})")
    assert next(line for line in lines if "/lora/" in line).split()[:3] == ["cell", "to", "run"]


# -------------------------------------------------------------------------------------------------- progress
SETTINGS = "probe_limit = 100\neval_limit = 128\nbatch_size = 16\nmin_steps = 8\nepochs = 1\nmax_evals = 2\n"
SUITE = f"""seeds = [0, 1]
[set]
{SETTINGS}validation = "budget"
length_unit = "tokens"
[[matrix]]
tasks = ["glue-sst2"]
methods = ["frozen"]
budgets = [64]
[[matrix]]
tasks = ["glue-sst2"]
methods = ["lora"]
budgets = [64]
sweep = {{ lr = [1e-4, 1e-3] }}
sweep_budget = 64
"""


def test_progress_names_a_blocks_settings_once_and_keeps_each_line_short(tmp_path, monkeypatch):
    import bench.run.harness
    from bench.core.record import new_record
    from bench.run.grid import run_grid
    from bench.suite import load_suite

    def run_cell(cell, store, **kw):
        record = new_record(resolve(getattr(cell, "cell", cell)), "ok", None)
        record.metrics = {"test/accuracy": 0.5, "val/accuracy": 0.6}
        store.write(record)
        return record

    monkeypatch.setattr(bench.run.harness, "run_cell", run_cell)
    (tmp_path / "s.toml").write_text(SUITE)
    lines: list[str] = []
    run_grid(load_suite(str(tmp_path / "s.toml")), Store(tmp_path / "r"), log=lines.append)
    settings = [line for line in lines if line.startswith("settings ")]
    assert settings[0].startswith("settings 1: batch_size=16 epochs=1 eval_limit=128 length_unit=tokens")
    assert len(settings) == len(set(settings)), "each settings line once"
    cells = [line for line in lines if line.startswith("[")]
    assert cells and all(len(line) < 120 for line in cells), max(cells, key=len)
    assert any(re.match(r"\[1/\d+\] running sweep glue-sst2 x lora @ 64 \(seed 0, settings 1\) lr=0.0001 ", c)
               for c in cells)  # fmt: skip
    assert any(" glue-sst2 x frozen @ 64 (seed 1, settings " in c and "test/accuracy=0.5000" in c for c in cells)
    assert all("probe_limit" not in c for c in cells)
