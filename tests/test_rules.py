"""The rules of thumb as estimands (bench/analysis/rules.py): each verdict on synthetic records whose truth is known.

Run: `.venv/bin/python -m pytest tests/test_rules.py -q`."""

from __future__ import annotations

import numpy as np

from bench import catalog
from bench.analysis import rules
from bench.analysis.cells import method_cells
from bench.analysis.decision_map import decision_map
from bench.catalog import resolve
from bench.core import metrics
from bench.core.api import Cell
from bench.core.record import Cost, Params, new_record
from bench.core.store import Store

N = 3000  # test items: enough that the items' variance does not hide a 3-point difference


def _outputs(rng, y, accuracy):
    right = rng.random(len(y)) < accuracy
    return np.eye(2)[np.where(right, y, 1 - y)]


def _write(store, method, seed, outputs, y, budget=256, memory=2**30):
    res = resolve(Cell("glue-sst2", method, budget, seed, suite="s"))
    r = new_record(res, "ok")
    scores = metrics.compute(("accuracy", "f1"), outputs, y, "classification")
    r.metrics = {f"test/{k}": v for k, v in scores.items()} | {f"val/{k}": v for k, v in scores.items()}
    r.params = Params(total=1000, trainable=10, trainable_no_head=0)
    r.cost = Cost(device="cpu", peak_mem_bytes=memory, peak_mem_delta_bytes=memory, train_time_s=1.0)
    r.arrays = {"test": {"ids": np.arange(len(y)), "outputs": outputs, "labels": y}}
    store.write(r)


def _evaluate(store):
    records = store.records("s")
    cells = method_cells(records)
    found = decision_map(store, records)
    return {(r.rule, r.claim): r for r in rules.evaluate(store, cells, found, catalog.spec, {"glue-sst2": 0.5})}


def _by_rule(results, rule, method=""):
    return next(r for (name, claim), r in results.items() if name == rule and method in claim)


def test_each_rule_holds_fails_or_is_inconclusive_as_the_records_say(tmp_path):
    store = Store(tmp_path)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, N)
    for seed in range(8):  # accuracies: full 0.80, lora 0.80 (keeps 100% of the gain), frozen 0.77 (3 points below)
        _write(store, "full", seed, _outputs(rng, y, 0.80), y, memory=4 * 2**30 + seed * 2**20)
        _write(store, "lora", seed, _outputs(rng, y, 0.80), y, memory=2 * 2**30 + seed * 2**20)
        _write(store, "frozen", seed, _outputs(rng, y, 0.77), y, memory=5 * 2**30 + seed * 2**20)
    results = _evaluate(store)
    assert _by_rule(results, "lora-95").verdict == rules.HOLDS
    assert _by_rule(results, "memory", "(lora)").verdict == rules.HOLDS, "lora uses half of full's memory"
    assert _by_rule(results, "memory", "(frozen)").verdict == rules.FAILS, "this frozen uses more than full"
    full_vs_frozen = _by_rule(results, "full-vs-frozen")
    assert full_vs_frozen.verdict in (rules.HOLDS, rules.INCONCLUSIVE) and full_vs_frozen.high > 0.02
    assert _by_rule(results, "budget").verdict == rules.HOLDS, "100-1,000: frozen or LoRA, and the choice is one"


def test_a_lora_far_below_full_fails_and_three_noisy_seeds_are_inconclusive(tmp_path):
    store = Store(tmp_path)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, N)
    for seed in range(6):
        _write(store, "full", seed, _outputs(rng, y, 0.85), y)
        _write(store, "lora", seed, _outputs(rng, y, 0.65), y)  # keeps 43% of full's gain over chance
    assert _by_rule(_evaluate(store), "lora-95").verdict == rules.FAILS
    noisy = Store(tmp_path / "noisy")
    for seed in range(3):
        _write(noisy, "full", seed, _outputs(rng, y[:300], rng.uniform(0.6, 0.9)), y[:300])
        _write(noisy, "lora", seed, _outputs(rng, y[:300], rng.uniform(0.6, 0.9)), y[:300])
    assert _by_rule(_evaluate(noisy), "lora-95").verdict == rules.INCONCLUSIVE


def test_a_rule_whose_methods_did_not_run_is_not_tested(tmp_path):
    store = Store(tmp_path)
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 500)
    for seed in range(3):
        _write(store, "lora", seed, _outputs(rng, y, 0.8), y)
    results = _evaluate(store)
    assert _by_rule(results, "lora-95").verdict == rules.NOT_TESTED
    assert _by_rule(results, "full-vs-frozen").verdict == rules.NOT_TESTED
