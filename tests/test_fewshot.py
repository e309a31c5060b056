"""Few-shot and zero-shot prediction without gradients. Run: `.venv/bin/python -m pytest tests/test_fewshot.py -q`."""

from __future__ import annotations

import numpy as np
import pytest

from bench.catalog import resolve
from bench.core.api import Cell, Split
from bench.core.model import make_head
from bench.run.loop import Runner
from bench.run.model import AdaptModel
from methods.fewshot import pick_demonstrations


def test_demonstrations_are_balanced_interleaved_and_seeded():
    labels = np.array([0] * 50 + [1] * 10)
    demos = pick_demonstrations(labels, 8, seed=3)
    assert len(demos) == len(set(demos)) == 8
    assert sorted(labels[demos]) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert all(labels[a] != labels[b] for a, b in zip(demos[::2], demos[1::2], strict=True)), "one per class a round"
    assert demos == pick_demonstrations(labels, 8, seed=3) != pick_demonstrations(labels, 8, seed=4)
    assert len(pick_demonstrations(np.array([0, 1, 1]), 8, seed=0)) == 3, "never more than the budget holds"


def _runner(loaded, method: str, settings: dict):
    res = resolve(Cell("glue-sst2", method, 64, 0, settings))
    assert res.backbone == "smollm2-135m", "prompting methods pick the causal LM by themselves"
    model = res.method.prepare(AdaptModel(loaded.encoder, make_head(576, 2)), loaded.spec, res.task)
    return res, Runner(model, loaded.batcher, res.task, res.train, "cpu")


def test_the_reused_prefix_cache_gives_the_same_scores_as_re_encoding(smollm2):
    texts = ["a gripping, funny film", "dull and far too long", "not bad", "an utter mess", "lovely", "awful"]
    train = Split("train", texts, np.array([1, 0, 1, 0, 1, 0]), np.arange(6))
    test = Split("test", ["warm and witty", "a chore to sit through"], np.array([1, 0]), np.arange(2))
    scores = {}
    for reuse in (True, False):
        res, runner = _runner(smollm2, "fewshot", {"k": 4, "reuse_cache": reuse})
        runner.fit_predictor(res.method, train, 0, smollm2.extras["tokenizer"])
        scores[reuse], _ = runner.predict(test, cached=False)
        assert runner.notes["demonstrations"] == 4
    np.testing.assert_allclose(scores[True], scores[False], atol=1e-3)
    assert scores[True].shape == (2, 2) and (scores[True] < 0).all(), "log-probabilities of the two label words"


def test_zeroshot_uses_no_demonstrations_and_refuses_some(smollm2):
    res, runner = _runner(smollm2, "zeroshot", {})
    train = Split("train", ["fine"], np.array([1]), np.arange(1))
    runner.fit_predictor(res.method, train, 0, smollm2.extras["tokenizer"])
    assert runner.notes["demonstrations"] == 0
    with pytest.raises(ValueError, match="Invalid k"):
        resolve(Cell("glue-sst2", "zeroshot", 64, 0, {"k": 2}))


def test_vision_fewshot_is_nearest_class_mean_on_cached_features(efficientnet, data):
    res = resolve(Cell("pneumonia-mnist", "fewshot", 64, 0, {"image_size": 32}))
    splits = res.task.splits(64, 0, data)
    model = res.method.prepare(AdaptModel(efficientnet.encoder, make_head(1280, 2)), efficientnet.spec, res.task)
    runner = Runner(model, efficientnet.batcher, res.task, res.train, "cpu")
    assert runner.fit_predictor(res.method, splits.train, 0).on_features, "a head over cached backbone features"
    val = splits.val.take(np.arange(100))
    metrics, _ = runner.evaluate(val, cached=True)
    assert metrics["auroc"] > 0.6, "class means of pretrained features separate the classes"


def test_a_prompted_cells_seed_draws_its_phrasing_and_seed_zero_keeps_the_tasks_own():
    from bench.catalog import TASKS
    from bench.core.api import PromptSpec

    prompt = TASKS.get("glue-sst2").spec.prompt
    assert prompt.draw(0) == PromptSpec(prompt.label_words, prompt.instruction, prompt.input_template)
    drawn = {prompt.draw(seed) for seed in range(10)}
    assert len(drawn) == 10, "10 draws, 10 phrasings (the task's own and its 9 declared variants)"
    assert prompt.draw(10) == prompt.draw(0)
    assert drawn == {prompt.draw(seed) for seed in range(105, 115)}
    assert not {prompt.draw(s) for s in range(5)} & {prompt.draw(s) for s in range(105, 110)}, (
        "replicate B's seeds (offset 105) draw none of A's five phrasings"
    )
    plain = TASKS.get("glue-rte").spec.prompt  # no declared variants: the two generic rephrasings
    assert len(plain.phrasings) == 3 and plain.draw(2).label_words == tuple(w.capitalize() for w in plain.label_words)
    for name in TASKS:  # every phrasing of every task scores distinct label words
        spec = TASKS.get(name).spec
        if spec.prompt is not None:
            assert all(len(set(p.label_words)) == spec.num_labels for p in spec.prompt.phrasings), name
