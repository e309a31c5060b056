"""Shared caches: frozen features per example across cells, probe results, integrity checks, `adaptbench cache`;
and the validation schedule. Run: `.venv/bin/python -m pytest tests/test_cache.py -q`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.catalog import TASKS, resolve
from bench.core.api import Cell, Split, TrainConfig
from bench.core.cache import FeatureCache, cache_dir
from bench.core.model import make_head
from bench.run.loop import Runner, eval_steps
from bench.run.model import AdaptModel

IMAGES = np.random.default_rng(0).integers(0, 256, size=(12, 28, 28), dtype=np.uint8)


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _runner(loaded, cache_parts=None):
    model = AdaptModel(loaded.encoder, make_head(loaded.feature_dim, 2)).eval()
    runner = Runner(model, loaded.batcher, TASKS.get("pneumonia-mnist")(), TrainConfig(eval_batch_size=4), "cpu")
    if cache_parts is not None:
        runner.feature_cache = FeatureCache(cache_parts)
    return runner


def _split(rows) -> Split:
    rows = np.asarray(rows)
    return Split("train", IMAGES[rows], rows % 2, 100 + rows)


def test_features_are_computed_once_per_example_across_cells_and_equal_fresh_ones(load_named, own_cache):
    loaded = load_named("tiny-timm")
    parts = {"backbone": "tiny-timm", "weights": "w", "task": "t"}
    first = _runner(loaded, parts)
    a = first.encode(_split(range(0, 8))).numpy()
    assert (first.feature_cache.hits, first.feature_cache.computed) == (0, 8)
    second = _runner(loaded, parts)  # a later cell: a bigger, overlapping subset (budgets are nested)
    b = second.encode(_split(range(4, 12))).numpy()
    assert (second.feature_cache.hits, second.feature_cache.computed) == (4, 4)
    fresh = _runner(loaded).encode(_split(range(0, 12))).numpy()
    np.testing.assert_allclose(a, fresh[:8], atol=1e-5)
    np.testing.assert_allclose(b, fresh[4:], atol=1e-5)
    other = _runner(loaded, {**parts, "weights": "other"})  # other weights: another entry, nothing reused
    other.encode(_split(range(0, 4)))
    assert other.feature_cache.hits == 0


def test_a_corrupt_feature_entry_is_recomputed_never_trusted(load_named, own_cache):
    loaded = load_named("tiny-timm")
    parts = {"backbone": "tiny-timm", "weights": "w", "task": "corrupt"}
    runner = _runner(loaded, parts)
    good = runner.encode(_split(range(6))).numpy()
    path = runner.feature_cache.path("train")
    with np.load(path) as z:
        tampered = dict(z)
    tampered["features"] = tampered["features"] + 1.0  # altered values under the old checksum
    np.savez(path, **tampered)
    again = _runner(loaded, parts)
    np.testing.assert_allclose(again.encode(_split(range(6))).numpy(), good, atol=1e-5)
    assert again.feature_cache.computed == 6 and "checksum mismatch" in again.feature_cache.rejected[0]
    path.write_bytes(b"not an npz")  # a torn file
    third = _runner(loaded, parts)
    third.encode(_split(range(6)))
    assert third.feature_cache.computed == 6 and third.feature_cache.rejected


def test_probe_results_are_cached_by_weights_and_a_tampered_entry_is_recomputed(load_named, data, own_cache):
    from bench.run.forgetting import run_probe

    loaded = load_named("tiny-hf")
    value, cached = run_probe("stsb-spearman", loaded, data, "cpu", limit=20)
    assert not cached and run_probe("stsb-spearman", loaded, data, "cpu", limit=20) == (value, True)
    (entry,) = (cache_dir() / "probes").glob("*.json")
    fake = json.loads(entry.read_text())
    fake["value"] = 0.999
    entry.write_text(json.dumps(fake))
    assert run_probe("stsb-spearman", loaded, data, "cpu", limit=20) == (value, False)


@pytest.mark.slow  # two real cells with the CIFAR-10 probe (~30 s)
def test_a_frozen_cell_reuses_features_and_says_so_with_identical_results(tiny_backbones, data, own_cache):
    from bench.run.cell import execute

    settings = {"backbone": tiny_backbones["tiny-timm"], "eval_limit": 64, "probe_limit": 10, "min_steps": 20}
    res = resolve(Cell("pneumonia-mnist", "frozen", 32, 0, settings))
    first, second = execute(res, data, "cpu"), execute(res, data, "cpu")
    assert first.cost.feature_cache == {"hits": 0, "computed": 32 + 64 + 64}, "train, val, test computed once"
    assert second.cost.feature_cache == {"hits": 32 + 64 + 64, "computed": 0}, "train, val and test from the cache"
    assert first.metrics == second.metrics
    assert first.cost.train_samples_per_s is None, "no misleading head-only examples/s"
    assert first.cost.feature_samples_per_s > 0 and second.cost.feature_samples_per_s is None
    assert first.cost.head_train_time_s > 0 and second.forgetting.before_from_cache


def test_cache_ls_and_clear(own_cache, capsys):
    from bench.cli import main

    (own_cache / "features").mkdir(parents=True)
    (own_cache / "features" / "x.npz").write_bytes(b"0" * 2048)
    assert main(["cache", "ls"]) == 0
    assert "features       1 entries" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert not (own_cache / "features").exists()


def test_validation_runs_on_a_step_schedule_when_asked():
    assert eval_steps(100, 10, max_evals=5) == {20, 40, 60, 80, 100}
    assert eval_steps(100, 50, max_evals=5) == {50, 100}, "at most one pass per epoch by default"
    assert eval_steps(100, 50, max_evals=5, every=30) == {30, 60, 90, 100}


def test_a_setting_added_later_keeps_old_keys_at_its_default_and_names_cells_when_set():
    base = resolve(Cell("glue-sst2", "lora", 64, 0))
    assert resolve(Cell("glue-sst2", "lora", 64, 0, {"eval_every": 0})).key == base.key
    assert resolve(Cell("glue-sst2", "lora", 64, 0, {"eval_every": 10})).key != base.key
    assert base.hparams["train"]["eval_every"] == 0, "the record still lists every setting"
    assert resolve(Cell("glue-sst2", "lora", 64, 0, {"extra_probes": True})).key == base.key
    assert resolve(Cell("glue-sst2", "lora", 64, 0, {"extra_probes": False})).key != base.key


def test_extra_probes_false_runs_only_the_primary_forgetting_probe(data, monkeypatch, tmp_path):
    import bench.run.forgetting
    from bench.core.backbone import get_backbone
    from bench.run.cell import execute

    name = "efficientnet-lite0"  # real weights at 32 px; the probes themselves are stubbed
    assert len(get_backbone(name).probes) > 1, "a backbone with a further probe, or this test proves nothing"
    calls: list[str] = []

    def fake_probe(probe, *args, **kwargs):
        calls.append(probe)
        return 0.5, False

    monkeypatch.setattr(bench.run.forgetting, "run_probe", fake_probe)
    monkeypatch.setenv("ADAPTBENCH_CACHE", str(tmp_path))
    settings = {"backbone": name, "image_size": 32, "eval_limit": 32, "min_steps": 2, "epochs": 1}
    record = execute(resolve(Cell("pneumonia-mnist", "lora", 32, 0, {**settings, "extra_probes": False})),
                     data, "cpu")  # fmt: skip
    assert set(calls) == {get_backbone(name).probes[0]} and record.forgetting_extra == {}


def test_grouping_by_token_length_uses_the_batchers_counts_and_pads_less_than_characters():
    from bench.core.api import Split
    from bench.run.loop import epoch_batches, text_lengths, token_lengths

    def batcher(texts):  # one token per word, truncated at 6, padded to the longest
        import torch

        n = [min(6, len(t.split())) for t in texts]
        mask = torch.zeros(len(texts), max(n), dtype=torch.long)
        for i, k in enumerate(n):
            mask[i, :k] = 1
        return {"input_ids": mask.clone(), "attention_mask": mask}

    # characters mislead: one long word is one token, many short words are many tokens
    words = ["x" * k for k in range(10, 26)]  # 1 token each, 10-25 characters
    sentences = [" ".join(["a" * (1 + (k + j) % 3) for j in range(6)]) for k in range(16)]  # 6 tokens, 11-17 chars
    texts = words + sentences
    split = Split("train", texts, np.zeros(32, dtype=int), np.arange(32))
    tokens = token_lengths(batcher, split, chunk=5)
    assert list(tokens) == [1] * 16 + [6] * 16, "the batcher's count, truncation included, across chunks"
    chars = text_lengths(split)

    def padded(lengths):
        batches = epoch_batches(np.random.default_rng(0), 32, 8, lengths)
        return sum(len(b) * tokens[b].max() for b in batches)

    assert padded(tokens) == int(tokens.sum()) < padded(chars)
    with pytest.raises(ValueError, match="length_unit"):
        TrainConfig(length_unit="words")
    base = resolve(Cell("glue-sst2", "lora", 64, 0))
    assert resolve(Cell("glue-sst2", "lora", 64, 0, {"length_unit": "chars"})).key == base.key
    assert resolve(Cell("glue-sst2", "lora", 64, 0, {"length_unit": "tokens"})).key != base.key
