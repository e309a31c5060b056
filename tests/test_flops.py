"""FLOP accounting, the machine-peak probe and the GPU code paths that can be exercised on the CPU.

Run: `.venv/bin/python -m pytest -q tests/test_flops.py` (the torch.compile cell is marked slow).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from bench.run import flops


def _counter_flops(model, batch, backward: bool = False) -> int:
    """torch's FlopCounterMode with attention on the math kernel (its fused CPU kernel is not in its registry)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        out = model(**batch)
        if backward:
            out.float().sum().backward()
    return counter.get_total_flops()


def _text_batch(loaded, n: int = 4):
    texts = ["a short one", "a somewhat longer sentence with more words in it than the first"] * (n // 2)
    return loaded.batcher(texts)


@pytest.fixture(scope="module")
def resnet():
    import timm

    from bench.backbones.encoders import VisionEncoder

    torch.manual_seed(0)
    return VisionEncoder(timm.create_model("test_resnet", num_classes=0)).eval()


def test_analytic_count_matches_flopcountermode_on_minilm_forward_and_full_backprop(minilm):
    enc = minilm.encoder.eval()
    batch = _text_batch(minilm)
    c = flops.count(enc, batch)
    assert c.forward == pytest.approx(_counter_flops(enc, batch), rel=0.02)
    # every MiniLM parameter trains: the rule gives forward + both gradients, which is what autograd runs
    assert c.train == pytest.approx(_counter_flops(enc, batch, backward=True), rel=0.02)
    enc.zero_grad(set_to_none=True)


def test_analytic_count_matches_flopcountermode_on_tiny_bert_and_test_resnet(load_named, resnet):
    tiny = load_named("tiny-hf")
    for model, batch in (
        (tiny.encoder.eval(), _text_batch(tiny)),
        (resnet, {"pixel_values": torch.randn(4, 3, 32, 32)}),
    ):
        c = flops.count(model, batch)
        assert c.forward == pytest.approx(_counter_flops(model, batch), rel=0.02)
        assert c.train == pytest.approx(_counter_flops(model, batch, backward=True), rel=0.02)
        model.zero_grad(set_to_none=True)


def test_flopcountermode_misses_fused_cpu_attention_that_the_hooks_count(minilm):
    """On the CPU the default attention kernel is invisible to FlopCounterMode: it undercounts MiniLM."""
    from torch.utils.flop_counter import FlopCounterMode

    enc = minilm.encoder.eval()
    batch = minilm.batcher(["word " * 30] * 2)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        enc(**batch)
    analytic = flops.count(enc, batch).forward
    assert counter.get_total_flops() < 0.995 * analytic


def test_depthwise_convolutions_are_counted_per_group_and_flopcountermode_agrees_on_efficientnet(efficientnet):
    """The issue feared FlopCounterMode overcounts depthwise convolutions. With this torch it reads c_in / groups
    from the weight's shape: the factor on EfficientNet-Lite0 is 1.00. The hooks count per group too."""
    conv = nn.Conv2d(16, 16, 3, padding=1, groups=16)
    c = flops.count(nn.Sequential(conv), {"input": torch.randn(2, 16, 8, 8)})
    assert c.forward == 2 * 9 * 1 * 16 * 8 * 8 * 2
    enc = efficientnet.encoder.eval()
    batch = {"pixel_values": torch.randn(2, 3, 64, 64)}
    factor = _counter_flops(enc, batch) / flops.count(enc, batch).forward
    assert factor == pytest.approx(1.0, rel=1e-3)


class _Tiny(nn.Module):
    """A small two-layer "backbone" with a head, the shape AdaptModel has (encoder, head)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16))
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.encoder(x))


FWD = {"l1": 2 * 8 * 16, "l2": 2 * 16 * 16, "head": 2 * 16 * 3}  # per example


def _train_flops(model, method, epochs: float = 1.0) -> float:
    c = flops.count(model, {"x": torch.randn(4, 8)})
    steps_change = False
    return flops.training_flops(
        c, trains=True, cached=method == "frozen-cached", epochs=epochs, steps_change=steps_change
    )[0]


def test_training_flops_follow_the_rule_for_each_method_family():
    model = _Tiny()
    fwd = sum(FWD.values())
    # full: forward + weight gradients everywhere + activation gradients except the first layer's (its input is data)
    assert _train_flops(model, "full") == 3 * fwd - FWD["l1"]
    # frozen backbone, trainable head (no cache): backbone forward only, head forward + weight gradient
    model.encoder.requires_grad_(False)
    assert _train_flops(model, "frozen") == FWD["l1"] + FWD["l2"] + 2 * FWD["head"]
    # frozen with cached features over 4 epochs: the backbone's forward once per example for the whole cell
    assert _train_flops(model, "frozen-cached", epochs=4) == (FWD["l1"] + FWD["l2"]) / 4 + 2 * FWD["head"]


def test_lora_training_flops_pass_backward_through_frozen_layers_but_weight_grads_only_on_adapters():
    from peft import LoraConfig, get_peft_model

    model = _Tiny()
    model.encoder.requires_grad_(False)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["encoder.0", "encoder.2"]))
    inner = peft_model.base_model.model
    c = flops.count(inner, {"x": torch.randn(4, 8)})
    lora = {"l1": 2 * 8 * 2 + 2 * 2 * 16, "l2": 2 * 16 * 2 + 2 * 2 * 16}
    assert c.forward / 4 == sum(FWD.values()) + sum(lora.values())
    # l1's base and lora_A see the data (no input gradient); everything after the first adapter passes gradients
    # back; weight gradients only on the adapters (the head is frozen by peft here)
    grad_in = 2 * 2 * 16 + FWD["l2"] + lora["l2"] + FWD["head"]
    grad_w = sum(lora.values())
    assert c.grad_inputs / 4 == grad_in and c.grad_weights / 4 == grad_w


def test_a_parameter_of_an_unknown_shape_is_left_out_of_the_count_and_named_in_the_note():
    """DoRA's magnitude vector on a CNN (a 1 x C x 1 x 1 weight in a module the counter has no formula for): the count
    is what the known layers cost, and the note names what it leaves out, by parameter name and shape."""

    class Magnitude(nn.Module):  # a per-channel rescale held as a 4-d weight, as peft's DoraConv2dLayer holds it
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(1, 16, 1, 1))

        def forward(self, x):
            return x * self.weight.view(1, 16)

    model = _Tiny()
    model.encoder.insert(3, Magnitude())
    method = SimpleNamespace(trains=True, cache_features=False)
    batch = {"x": torch.randn(4, 8)}
    out = flops.cell_flops(model, batch, method=method, fit=None, device="cpu", precision="fp32", threads=2)
    assert out.fwd_flops_per_example == sum(FWD.values())  # the three linear layers, counted as without it
    assert out.train_flops_per_example == 3 * sum(FWD.values()) - FWD["l1"]
    assert out.flops_note.startswith("not counted: encoder.3.weight (1x16x1x1, Magnitude)")
    assert "lower bound" in out.flops_note
    # a model the counter knows whole says nothing of the kind
    plain = flops.cell_flops(_Tiny(), batch, method=method, fit=None, device="cpu", precision="fp32", threads=2)
    assert plain.fwd_flops_per_example == sum(FWD.values()) and plain.flops_note is None


def test_gemm_peak_is_cached_per_machine_and_a_corrupt_cache_is_measured_again(tmp_path, monkeypatch):
    from bench.run import machine

    calls = []
    monkeypatch.setattr(machine, "_measure", lambda device, threads: calls.append(threads) or {"fp32": 1e11})
    assert machine.measured_peaks("cpu", 2, cache=tmp_path) == {"fp32": 1e11}
    assert machine.measured_peaks("cpu", 2, cache=tmp_path) == {"fp32": 1e11} and calls == [2]
    (path,) = (tmp_path / "machine").glob("peak-cpu-*.json")
    for bad in ("{not json", json.dumps({"key": "other", "flops_per_s": {"fp32": 1.0}}), '{"flops_per_s": {}}'):
        path.write_text(bad)
        assert machine.measured_peaks("cpu", 2, cache=tmp_path) == {"fp32": 1e11}
    assert len(calls) == 4
    machine.measured_peaks("cpu", 1, cache=tmp_path)  # another thread count is another machine setting
    assert len(calls) == 5


def test_gemm_probe_measures_a_plausible_cpu_peak():
    rate = flops_per_s = __import__("bench.run.machine", fromlist=["x"]).gemm_flops_per_s("cpu", torch.float32, 512)
    assert 1e8 < rate < 1e13, flops_per_s


def test_mfu_on_cuda_uses_the_nominal_bf16_peak_in_bf16_and_the_measured_one_otherwise(monkeypatch):
    from bench.run import machine

    monkeypatch.setattr(machine, "measured_peaks", lambda d, t: {"bf16": 6e14, "fp32": 4e14})
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H100 80GB HBM3")
    bf16 = machine.peak_for("cuda", 2, "bf16")
    assert (bf16.nominal, bf16.measured) == (989e12, 6e14) and "bf16" in bf16.basis
    fp32 = machine.peak_for("cuda", 2, "fp32")
    assert (fp32.nominal, fp32.measured) == (None, 4e14) and "measured" in fp32.basis
    assert machine.nominal_bf16_peak("NVIDIA A100-SXM4-40GB") == 312e12
    assert machine.nominal_bf16_peak("Some Future GPU") is None


def test_cell_flops_gives_achieved_flops_and_mfu_from_the_measured_throughput(monkeypatch):
    from bench.run import machine

    monkeypatch.setattr(machine, "measured_peaks", lambda d, t: {"fp32": 1e9})
    method = SimpleNamespace(trains=True, cache_features=False)
    fit = SimpleNamespace(epochs=1.0, train_samples_per_s=100.0)
    out = flops.cell_flops(
        _Tiny(), {"x": torch.randn(4, 8)}, method=method, fit=fit, device="cpu", precision="fp32", threads=2
    )
    assert out.flops_method == "analytic-hooks" and out.fwd_flops_per_example == sum(FWD.values())
    assert out.achieved_train_flops_per_s == out.train_flops_per_example * 100.0
    assert out.mfu == pytest.approx(out.achieved_train_flops_per_s / 1e9) and "CPU" in out.mfu_basis


def test_peak_memory_on_the_cpu_has_no_reserved_bytes():
    from bench.run.meters import PeakMemory

    with PeakMemory("cpu") as mem:
        np.ones(1000)
    assert mem.peak_bytes > 0 and mem.reserved_bytes is None


def test_peak_memory_on_cuda_reads_allocated_and_reserved(monkeypatch):
    from bench.run.meters import PeakMemory

    fake = {
        "synchronize": lambda: None,
        "reset_peak_memory_stats": lambda: None,
        "memory_allocated": lambda: 100,
        "max_memory_allocated": lambda: 1000,
        "max_memory_reserved": lambda: 4096,
    }
    for name, fn in fake.items():
        monkeypatch.setattr(torch.cuda, name, fn)
    with PeakMemory("cuda") as mem:
        pass
    assert (mem.peak_bytes, mem.delta_bytes, mem.reserved_bytes) == (1000, 900, 4096)


def _runner(model, **settings):
    from bench.core.api import TrainConfig
    from bench.run.loop import Runner

    task = SimpleNamespace(spec=SimpleNamespace(kind="classification"))
    return Runner(model, lambda xs: {"x": torch.as_tensor(np.asarray(xs))}, task, TrainConfig(**settings), "cpu")


def test_bf16_on_the_cpu_refuses_with_a_clear_error():
    with pytest.raises(ValueError, match="bf16 needs a CUDA device"):
        _runner(_Tiny(), precision="bf16")


def test_compile_is_keyed_only_when_set_and_recorded_only_when_asked():
    from bench.core.api import TrainConfig

    assert "compile" in TrainConfig.KEYED_ONLY_WHEN_SET and TrainConfig().compile is False
    assert _runner(_Tiny()).compile_info() == {}


def test_a_failing_compiled_forward_falls_back_to_eager_with_the_error_recorded(monkeypatch):
    runner = _runner(_Tiny(), compile=True)
    assert runner.compiled

    def broken(*args, **kwargs):
        raise RuntimeError("no C compiler")

    runner.model._compiled_call_impl = broken
    out = runner._call_model({"x": torch.randn(2, 8)})
    assert out.shape == (2, 3)
    info = runner.compile_info()
    assert info["compiled"] is False and info["compile_error"] == "RuntimeError: no C compiler"


def test_tf32_is_enabled_on_cuda():
    from bench.core.api import TrainConfig
    from bench.run.loop import Runner

    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (matmul.allow_tf32, cudnn.allow_tf32)
    try:
        matmul.allow_tf32 = cudnn.allow_tf32 = False
        task = SimpleNamespace(spec=SimpleNamespace(kind="classification"))
        Runner(_Tiny(), None, task, TrainConfig(), "cuda")  # building a Runner touches no CUDA memory
        assert matmul.allow_tf32 and cudnn.allow_tf32
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = before


@pytest.mark.slow
def test_compile_true_trains_a_tiny_cell_compiled_or_records_why_not(tiny_backbones, data):
    from bench.catalog import resolve
    from bench.core.api import Cell
    from bench.run.harness import execute

    settings = {"backbone": tiny_backbones["tiny-timm"], "epochs": 1, "eval_limit": 32, "probe_limit": 20}
    record = execute(resolve(Cell("pneumonia-mnist", "full", 32, 0, {**settings, "compile": True})), data, "cpu")
    cost = record.cost
    assert record.status == "ok"
    assert cost.compiled is True or cost.compile_error, cost
    assert cost.train_flops_per_example and cost.mfu and cost.mfu_basis
