"""One real training step per (method, backbone): exactly the intended parameters change, every frozen one stays
bit-identical, and the trainable count matches each method's analytic formula. Parametrized over every entry of the
backbone registry and one tiny model per generic family (timm, hf, hf-causal), so a new backbone or method is
tested without new test code. Run: `.venv/bin/python -m pytest tests/test_method_steps.py -q`."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from torch import nn

from bench.catalog import METHODS, resolve
from bench.core.api import Cell
from bench.core.backbone import BACKBONES
from bench.core.model import count_params, make_head
from bench.run.model import AdaptModel

IMAGES = np.random.default_rng(0).integers(0, 256, size=(8, 28, 28), dtype=np.uint8)
TEXTS = ["a gripping, funny film", "dull and far too long", "not bad at all", "an utter mess"]
INPUTS = {"vision": ("pneumonia-mnist", IMAGES), "text": ("glue-sst2", TEXTS)}
ALL_BACKBONES = [*BACKBONES.names(), "tiny-timm", "tiny-hf", "tiny-hf-causal"]  # tiny ones: see conftest
# the registry's names, and two entries of the peft family (a family is not a list of names: methods/peft_config.py)
ALL_METHODS = [*METHODS.names(), "peft:loha", "peft:vera"]


def _family_on_tiny_only(method_name: str, backbone: str) -> None:
    """The peft family's entries run on the tiny backbones here (LoHa on SmolLM2 alone took 128 s); their real cells
    are tests/test_peft_family.py's slow tests."""
    if ":" in method_name and not backbone.startswith("tiny-"):
        pytest.skip("a peft-family entry: checked on the tiny backbones (real cells: test_peft_family, slow)")


def _setup(load_named, backbone_id: str, method_name: str):
    loaded = load_named(backbone_id)
    backbone = loaded.spec
    task, inputs = INPUTS[backbone.modality]
    res = resolve(Cell(task, method_name, 64, 0, {"backbone": backbone.name}))
    if res.unsupported_reason():
        pytest.skip(f"{method_name} unsupported on {backbone.name}: {res.unsupported_reason()}")
    if res.method.quantize:
        pretrained = backbone.load(quantize=res.method.quantize, max_len=32).encoder
    else:
        pretrained = copy.deepcopy(loaded.encoder)
    if not res.method.pretrained:  # scratch: same architecture, fresh weights
        for m in pretrained.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    model = res.method.prepare(AdaptModel(pretrained, make_head(loaded.feature_dim, 2)), backbone, res.task)
    return res.method, model, loaded.batcher(inputs), loaded, res


def _steps(method, model, batch, n: int = 2, total: int = 100):
    opt = torch.optim.AdamW([g for g in method.param_groups(model) if g["params"]], weight_decay=0.01)
    labels = torch.tensor([0, 1] * (len(next(iter(batch.values()))) // 2))
    for step in range(1, n + 1):
        method.on_step(model, step, total)
        method.train_mode(model)
        loss = nn.functional.cross_entropy(model(**batch), labels)
        extra = method.penalty(model)
        loss = loss + extra if extra is not None else loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.eval()  # a validation pass between steps, as the loop does: training must resume after it
        with torch.inference_mode():
            model(**batch)


def _expected(method, model, name: str) -> bool:
    """Which parameters each method is meant to train in the first steps of a run."""
    if name.startswith("head."):
        return True
    kind = method.name
    if kind in ("scratch", "full", "llrd", "l2sp"):
        return True
    if kind in ("frozen", "gradual"):  # gradual: the head trains alone in the first stage
        return False
    if kind == "partial":
        last = model.encoder.blocks()[-method.n_blocks :]
        return any(p is dict(model.named_parameters())[name] for b in last for p in b.parameters())
    if kind == "bitfit":
        return name.endswith(".bias")
    if kind in ("lora", "ia3", "qlora"):
        return f"{kind.removeprefix('q')}_" in name
    if kind == "adapter":  # a bottleneck after a linear layer, or a 1x1 branch beside a convolution
        return re.search(r"\.adapter\.|\.(down|up)\.weight$", name) is not None
    if kind in ("prompt", "prefix"):
        return "prompt_encoder" in name or "prompter" in name
    if kind.startswith("peft-"):  # the peft family: the tuner's parameters, named with its prefix
        return type(method).marker in name
    raise AssertionError(f"no expectation written for method {kind}: add it here")


@pytest.mark.parametrize("backbone", ALL_BACKBONES)
@pytest.mark.parametrize("method_name", ALL_METHODS)
def test_one_step_changes_exactly_the_intended_parameters(method_name, backbone, load_named):
    _family_on_tiny_only(method_name, backbone)
    method, model, batch, _, _ = _setup(load_named, backbone, method_name)
    if not method.trains:
        assert count_params(model)["trainable"] == 0, "a method without gradient updates trains nothing"
        return
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    _steps(method, model, batch)
    params = dict(model.named_parameters())
    changed = {k for k in before if not torch.equal(before[k], params[k])}
    intended = {k for k in before if _expected(method, model, k)}
    assert changed <= intended, f"changed but should be frozen: {sorted(changed - intended)[:5]}"
    # rows of embedding tables for tokens absent from the batch get no gradient; everything else must move
    missed = {k for k in intended - changed if "embeddings" not in k}
    assert not missed, f"meant to train but unchanged: {sorted(missed)[:5]}"
    if method.name not in ("scratch",):
        bn_moved = [k for k, v in model.named_buffers() if "running" in k and not torch.equal(buffers[k], v)]
        assert not bn_moved, "pretrained batch-norm statistics must stay fixed"


def _targets(encoder, targets) -> list[nn.Module]:
    out = []
    for name, module in encoder.named_modules():
        if not isinstance(module, nn.Linear | nn.Conv2d) or "lora_" in name or "ia3_" in name:
            continue
        if isinstance(targets, str):
            hit = re.fullmatch(targets, name) is not None
        else:
            hit = any(name == t or name.endswith("." + t) for t in targets)
        if hit:
            out.append((name, module))
    return out


def _dims(m: nn.Module) -> tuple[int, int]:
    return (m.in_features, m.out_features) if isinstance(m, nn.Linear) else (m.in_channels, m.out_channels)


def analytic_trainable_no_head(method, loaded, task) -> int:
    """Each method's trainable backbone parameters, from its formula over the real backbone's shapes."""
    enc, backbone = loaded.encoder, loaded.spec
    cfg = enc.transformer.config if hasattr(enc, "transformer") else None
    total = sum(p.numel() for p in enc.parameters())
    kind = method.name
    if kind in ("scratch", "full", "llrd", "l2sp", "gradual"):
        return total
    if kind in ("frozen", "fewshot", "zeroshot"):
        return 0
    if kind == "partial":
        return sum(p.numel() for b in enc.blocks()[-method.n_blocks :] for p in b.parameters())
    if kind == "bitfit":
        return sum(p.numel() for n, p in enc.named_parameters() if n.endswith(".bias"))
    if kind in ("lora", "qlora"):  # r * (d_in + d_out) per adapted matrix
        return sum(method.r * sum(_dims(m)) for _, m in _targets(enc, backbone.lora_targets(enc)))
    if kind == "ia3":  # one vector per target: d_out, or d_in for feed-forward targets
        targets, ff = backbone.ia3_targets(enc)
        ff_names = {n for n, _ in _targets(enc, ff)}
        return sum(_dims(m)[0] if n in ff_names else _dims(m)[1] for n, m in _targets(enc, targets))
    if kind == "adapter":
        points = [getattr(parent, attr) for parent, attr in backbone.adapter_points(enc, method.placement)]
        b = method.bottleneck
        if cfg is not None:  # 2*d*b + b + d per insertion; Houlsby: 2 per layer
            assert len(points) == 2 * cfg.num_hidden_layers
            return len(points) * (2 * cfg.hidden_size * b + b + cfg.hidden_size)
        return sum(b * (m.in_channels + m.out_channels) for m in points)
    if kind == "prompt":
        if cfg is not None:
            return method.n_tokens * cfg.hidden_size
        s, p = task.image_size, method.pad
        return 3 * (s * s - (s - 2 * p) ** 2)
    if kind == "prefix":  # a key and a value vector per token per layer (grouped-query attention: kv heads only)
        head_dim = cfg.hidden_size // cfg.num_attention_heads
        kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        return method.n_tokens * cfg.num_hidden_layers * 2 * kv_heads * head_dim
    if kind == "peft-loha":  # two rank-r factor pairs per adapted matrix (1x1 convolutions: the same shapes)
        return sum(2 * method.r * sum(_dims(m)) for _, m in _targets(enc, backbone.lora_targets(enc)))
    if kind == "peft-vera":  # a scaling vector of r and one of d_out per layer; the projections are shared buffers
        return sum(method.r + _dims(m)[1] for _, m in _targets(enc, backbone.lora_targets(enc)))
    raise AssertionError(f"no analytic count written for method {kind}: add it here")


@pytest.mark.parametrize("backbone", ALL_BACKBONES)
@pytest.mark.parametrize("method_name", ALL_METHODS)
def test_trainable_count_matches_the_analytic_formula(method_name, backbone, load_named):
    _family_on_tiny_only(method_name, backbone)
    method, model, _, loaded, res = _setup(load_named, backbone, method_name)
    counts = count_params(model)
    assert counts["trainable_no_head"] == analytic_trainable_no_head(method, loaded, res.task)
    head = loaded.feature_dim * 2 + 2 if method.trains else 0
    assert counts["trainable"] == counts["trainable_no_head"] + head


def test_lora_on_minilm_adapts_every_linear_layer(load_named):
    method, model, _, _, _ = _setup(load_named, "minilm-l6", "lora")
    # 6 layers x r x (4 attention matrices of 384x384 + FFN 384x1536 and 1536x384)
    assert count_params(model)["trainable_no_head"] == 6 * method.r * (4 * 768 + 2 * 1920) == 331_776


def test_frozen_backbone_runs_in_eval_mode_while_training(load_named):
    method, model, _, _, _ = _setup(load_named, "efficientnet-lite0", "frozen")
    method.train_mode(model)
    assert model.head.training and not any(m.training for m in model.encoder.modules())


def test_gradual_unfreezes_top_down_on_an_even_schedule():
    from methods.gradual import Gradual

    g = Gradual()
    assert [g.unfrozen_blocks(3, s, 8) for s in range(1, 9)] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_qlora_quantizes_every_linear_weight_of_minilm_and_says_how_much(load_named):
    from bench.core.model import quantized_share

    _, model, _, loaded, _ = _setup(load_named, "minilm-l6", "qlora")
    share = quantized_share(model.encoder)
    cfg = loaded.encoder.bert.config
    linear = cfg.num_hidden_layers * (4 * cfg.hidden_size**2 + 2 * cfg.hidden_size * cfg.intermediate_size)
    assert share["quantized_weights"] == linear
    full = sum(p.numel() for p in loaded.encoder.parameters())
    assert abs(share["quantized_fraction"] - linear / full) < 1e-9
