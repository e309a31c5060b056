"""Methods on the real backbones: what trains, what stays bit-identical, and parameter counts against their
analytic formulas. Run: `.venv/bin/python -m pytest tests/test_methods.py -q`."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bench.api import Cell, resolve_hparams
from bench.model import AdaptModel, count_params, make_head

IMAGES = np.random.default_rng(0).integers(0, 256, size=(8, 28, 28), dtype=np.uint8)
TEXTS = ["a gripping, funny film", "dull and far too long", "not bad at all", "an utter mess"]


def _prepared(loaded, method_name: str, task: str):
    res = resolve_hparams(Cell(task, method_name, 64, 0))
    encoder = copy.deepcopy(loaded.encoder)
    model = AdaptModel(encoder, make_head(loaded.spec.feature_dim, 2))
    return res.method, res.method.prepare(model, loaded.spec)


def _one_step(method, model, batch):
    opt = torch.optim.AdamW(method.param_groups(model), weight_decay=0.0)
    method.train_mode(model)
    loss = nn.functional.cross_entropy(model(**batch), torch.tensor([0, 1] * (len(batch[next(iter(batch))]) // 2)))
    loss.backward()
    opt.step()


def _changed(before: dict, model) -> set[str]:
    after = model.state_dict()
    return {k for k, v in before.items() if k in after and not torch.equal(v, after[k])}


def test_frozen_trains_only_the_head_and_keeps_batchnorm_statistics(efficientnet):
    method, model = _prepared(efficientnet, "frozen", "pneumonia-mnist")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _one_step(method, model, efficientnet.batcher(IMAGES))
    changed = _changed(before, model)
    assert changed == {"head.weight", "head.bias"}
    assert count_params(model)["trainable_no_head"] == 0
    bn = [m for m in model.encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn and not any(m.training for m in bn)


@pytest.mark.parametrize("fixture", ["efficientnet", "minilm"])
def test_full_changes_every_weight_it_touches(fixture, request):
    loaded = request.getfixturevalue(fixture)
    task = "pneumonia-mnist" if fixture == "efficientnet" else "glue-sst2"
    method, model = _prepared(loaded, "full", task)
    counts = count_params(model)
    assert counts["trainable"] == counts["total"]
    batch = loaded.batcher(IMAGES if fixture == "efficientnet" else TEXTS)
    before = {k: v.clone() for k, v in model.named_parameters()}
    _one_step(method, model, batch)
    after = dict(model.named_parameters())
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    # word/position embeddings of tokens absent from the batch get no gradient; everything else moves
    assert all("embeddings" in k for k in unchanged), unchanged


def _lora_targets(encoder, targets) -> list[nn.Module]:
    import re

    out = []
    for name, module in encoder.named_modules():
        if not isinstance(module, nn.Linear | nn.Conv2d) or "lora_" in name:
            continue
        if isinstance(targets, str):
            hit = re.fullmatch(targets, name) is not None
        else:
            hit = any(name == t or name.endswith("." + t) for t in targets)
        if hit:
            out.append(module)
    return out


@pytest.mark.parametrize("fixture", ["efficientnet", "minilm"])
def test_lora_trainable_count_equals_the_analytic_count(fixture, request):
    loaded = request.getfixturevalue(fixture)
    task = "pneumonia-mnist" if fixture == "efficientnet" else "glue-sst2"
    targets = _lora_targets(loaded.encoder, loaded.spec.lora_targets)
    method, model = _prepared(loaded, "lora", task)
    r = method.r

    def dims(m):
        return (m.in_features, m.out_features) if isinstance(m, nn.Linear) else (m.in_channels, m.out_channels)

    analytic = sum(r * (d_in + d_out) for d_in, d_out in map(dims, targets))
    counts = count_params(model)
    assert counts["trainable_no_head"] == analytic
    assert counts["trainable"] == analytic + loaded.spec.feature_dim * 2 + 2
    if fixture == "minilm":  # 6 layers x (4 x 384x384 attention + 384x1536 + 1536x384 FFN)
        assert analytic == 6 * r * (4 * 768 + 2 * 1920) == 331_776


@pytest.mark.parametrize("fixture", ["efficientnet", "minilm"])
def test_lora_changes_only_adapters_and_head(fixture, request):
    loaded = request.getfixturevalue(fixture)
    task = "pneumonia-mnist" if fixture == "efficientnet" else "glue-sst2"
    method, model = _prepared(loaded, "lora", task)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # one step leaves lora_A unchanged only if B were zero-grad; take two so both factors move
    batch = loaded.batcher(IMAGES if fixture == "efficientnet" else TEXTS)
    _one_step(method, model, batch)
    _one_step(method, model, batch)
    changed = _changed(before, model)
    assert changed and all("lora_" in k or k.startswith("head.") for k in changed)
    assert any("lora_B" in k for k in changed) and any("lora_A" in k for k in changed)
