"""Real assets end to end: the pretrained weights are really pretrained, and one real cell runs through the
harness in its own process and writes a complete record. Run: `.venv/bin/python -m pytest tests/test_end_to_end.py`.
"""

from __future__ import annotations

import math

import pytest

from bench.core.api import Cell
from bench.core.store import Store
from bench.probes import imagenet_top1, stsb_spearman
from bench.run.harness import run_cell


def test_efficientnet_weights_are_imagenet_pretrained(efficientnet, data):
    # the whole offline ImageNet sample (1000 images, one per class) with the original 1000-class head
    assert imagenet_top1(efficientnet, data, "cpu") >= 0.80


def test_minilm_weights_are_sentence_pretrained(minilm, data):
    assert stsb_spearman(minilm, data, "cpu", limit=400) >= 0.80


@pytest.mark.slow  # real EfficientNet weights, a real LoRA cell and its forgetting probe (~27 s)
def test_one_real_cell_runs_end_to_end_and_writes_a_complete_record(tmp_path):
    store = Store(tmp_path)
    cell = Cell(
        "pneumonia-mnist",
        "lora",
        64,
        0,
        {"probe_limit": 40, "min_steps": 4, "epochs": 1, "max_evals": 2, "image_size": 32},
        suite="e2e",
    )
    lines: list[str] = []
    record = run_cell(cell, store=store, quiet=True, on_line=lines.append)
    assert record.status == "ok", record.error
    passes = [line for line in lines if line.startswith("step ")]  # followed from the cell's process while it ran
    assert len(passes) == len(record.selection.history) > 0 and passes[-1].startswith("step 4/4  train_loss ")
    assert store.get("e2e", record.key) == record
    assert 0.0 <= record.metrics["test/auroc"] <= 1.0 and "val/auroc" in record.metrics
    assert record.splits.train == 64 and record.splits.test == 624
    f = record.forgetting
    assert f.probe == "imagenet-top1" and f.before > 0.5 and math.isclose(f.drop, f.before - f.after)
    p = record.params
    assert 0 < p.trainable_no_head < p.trainable < p.total and p.adapter_bytes > 0
    c = record.cost
    assert c.device == "cpu" and c.peak_mem_bytes > c.peak_mem_delta_bytes > 0
    assert c.train_samples_per_s > 0 and c.eval_samples_per_s > 0 and c.steps == 4
    assert record.env.threads == 2 and record.env.torch
    assert record.selection.best_step in {h["step"] for h in record.selection.history}
    test = store.predictions(record)["test"]
    assert test["outputs"].shape == (624, 2) and len(test["ids"]) == len(test["labels"]) == 624


@pytest.mark.slow  # a real cell's process: the forkserver's imports and MiniLM's weights (~18 s)
def test_a_crashing_cell_becomes_a_failed_record(tmp_path):
    store = Store(tmp_path / "results")
    # bf16 autocast is refused on the CPU only once the cell's process builds its loop: a crash inside the cell
    record = run_cell(Cell("glue-sst2", "frozen", 64, 0, {"precision": "bf16"}, suite="e2e"), store, device="cpu")
    assert record.status == "failed" and "precision=bf16 needs a CUDA device" in record.error
    assert store.get("e2e", record.key).status == "failed"


def test_missing_data_offline_is_refused_before_the_cell_starts_and_writes_no_record(tmp_path, monkeypatch):
    import pytest

    from bench.core.data import DataError

    monkeypatch.setenv("ADAPTBENCH_DATA", str(tmp_path / "no-data-here"))
    monkeypatch.setenv("ADAPTBENCH_OFFLINE", "1")
    store = Store(tmp_path / "results")
    with pytest.raises(DataError, match=r"SST-2/train\.tsv is not available offline"):
        run_cell(Cell("glue-sst2", "frozen", 64, 0, suite="e2e"), store=store, quiet=True)
    assert not list((tmp_path / "results").rglob("*.json"))


@pytest.mark.slow  # a real cell's process, killed at its limit (~8 s)
def test_a_cell_past_its_time_limit_is_killed_and_recorded_as_timeout(tmp_path):
    store = Store(tmp_path)
    record = run_cell(Cell("glue-sst2", "full", 64, 0, suite="e2e"), store=store, timeout_s=1.0, quiet=True)
    assert record.status == "timeout" and "exceeded 1 s" in record.error
    assert store.get("e2e", record.key).status == "timeout"


def test_text_is_evaluated_in_length_order_and_returned_in_split_order(minilm):
    import numpy as np
    import torch

    from bench.catalog import TASKS
    from bench.core.api import Split, TrainConfig
    from bench.core.model import make_head
    from bench.run.loop import Runner, eval_order
    from bench.run.model import AdaptModel

    texts = ["a long sentence that needs many more tokens than the others", "short", "middle length text", "x y"]
    split = Split("test", texts, np.array([0, 1, 0, 1]), np.arange(4))
    assert list(eval_order(split)) == [3, 1, 2, 0]
    torch.manual_seed(0)
    model = AdaptModel(minilm.encoder, make_head(minilm.spec.feature_dim, 2)).eval()
    runner = Runner(model, minilm.batcher, TASKS.get("glue-sst2")(), TrainConfig(eval_batch_size=2), "cpu")
    batched, _ = runner.predict(split, cached=False)
    with torch.inference_mode():
        one_by_one = np.concatenate([model(**minilm.batcher([t])).numpy() for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    features = runner.encode(split).numpy()
    with torch.inference_mode():
        np.testing.assert_allclose(features, minilm.encoder(**minilm.batcher(texts)).numpy(), atol=1e-5)


def test_training_batches_cover_each_example_once_per_epoch_and_group_text_by_length():
    import numpy as np

    from bench.run.loop import epoch_batches

    rng = np.random.default_rng(0)
    lengths = (rng.lognormal(2.5, 0.6, size=1000)).astype(int) + 1  # skewed like sentence lengths
    for group in (lengths, None):
        batches = epoch_batches(np.random.default_rng(1), 1000, 32, group)
        assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
        assert all(1 <= len(b) <= 32 for b in batches)
    grouped = epoch_batches(np.random.default_rng(1), 1000, 32, lengths)
    plain = epoch_batches(np.random.default_rng(1), 1000, 32, None)
    padded = lambda bs: np.mean([lengths[b].max() for b in bs])  # noqa: E731
    assert padded(grouped) < 0.5 * padded(plain)
    again = epoch_batches(np.random.default_rng(1), 1000, 32, lengths)
    assert all(np.array_equal(a, b) for a, b in zip(grouped, again, strict=True))  # seeded
