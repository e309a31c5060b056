"""The interval of one method's mean test score over seeds and test items (``bench.analysis.score_interval``): it is the
seed-aware contrast with weight 0, it covers a known truth about 95% of the time, a deterministic method gets a
positive width, and a cell says which kind of interval it has. Synthetic data, no models, seconds.
Run: `.venv/bin/python -m pytest tests/test_score_interval.py -q`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.analysis.contrast import compare_outputs
from bench.analysis.score_interval import cell_intervals, score_interval
from bench.analysis.stats import ITEMS, SEEDS, SEEDS_ITEMS, interval_kinds, seed_summary
from bench.catalog import resolve
from bench.core import metrics
from bench.core.api import Cell
from bench.core.record import new_record
from bench.core.store import Store


def _logits(rng: np.random.Generator, labels: np.ndarray, skill: float) -> np.ndarray:
    out = rng.normal(size=(len(labels), 2))
    out[np.arange(len(labels)), labels] += skill
    return out


@pytest.mark.parametrize("metric", ["accuracy", "auroc"])
def test_it_is_the_seed_aware_contrast_with_weight_zero(metric):
    """mean_A m - 0 * mean_B m: the same estimate, the same variance components, the same t and bounds."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    items = _logits(rng, y, 0.0)  # what every seed finds hard or easy about each item: the shared item error
    outs = [items + _logits(rng, y, skill) for skill in (1.0, 1.3, 0.8)]
    i = score_interval(outs, y, metric)
    d = compare_outputs(outs, outs, [y] * 3, metric, weight=0.0)
    assert (i.kind, i.n) == (SEEDS_ITEMS, 3)
    assert d.high < 1.0, "not clipped here"
    assert (i.mean, i.low, i.high) == pytest.approx((d.diff, d.low, d.high), abs=1e-12)
    assert d.seed_var > 0 and d.item_var > 0, "both sources of noise are in it"
    one = score_interval(outs[:1], [y], metric)  # one seed: only the items' part is known
    d1 = compare_outputs(outs[:1], outs[:1], [y], metric, weight=0.0)
    assert not d1.seeds_known and (one.kind, one.n) == (ITEMS, 1)
    assert (one.low, one.high) == pytest.approx((d1.low, d1.high), abs=1e-12)
    assert one.has_interval and one.describe().endswith("(one seed)"), "an items-only interval says so"


def test_a_deterministic_method_gets_the_items_interval_not_zero_width():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 156)
    out = _logits(rng, y, 1.5)
    same = score_interval([out] * 3, y, "auroc")  # every seed identical
    zero = seed_summary([metrics.auroc(out, y)] * 3, "auroc")
    assert zero.high - zero.low == 0, "the seeds' t-interval had no width"
    assert same.kind == SEEDS_ITEMS and same.high - same.low > 0.05, "156 items: an AUROC's error is several points"
    one = score_interval([out], y, "auroc")
    assert (same.low, same.high) == pytest.approx((one.low, one.high)), "no seed noise: the items' interval"


def test_clipped_to_the_metric_range():
    y = np.zeros(40, dtype=np.int64)
    out = np.zeros((40, 2))
    out[:39, 0] = 1.0
    out[39, 1] = 1.0  # 39 of 40 right
    i = score_interval([out, out], y, "test/accuracy")
    assert i.high == 1.0 and 0.9 < i.low < 0.975


# ---------------------------------------------------------------------------------------- coverage against truth
def _dataset(rng, n_items, n_seeds, p0, sd_seed, redraw):
    """Accuracy with a known mean ``p0``: seed s is right on item i when the item's difficulty is below
    ``p0 + u_s`` (u_s ~ N(0, sd_seed): the seed's effect); an item's difficulty is shared by every seed (the items
    drawn for this test set) except that with probability ``redraw`` a seed gets its own draw (seed-by-item noise).
    Difficulties are uniform, so a seed's expected accuracy is exactly ``p0 + u_s`` and the truth is ``p0``."""
    u = rng.normal(scale=sd_seed, size=n_seeds)
    shared = rng.uniform(size=n_items)
    own = rng.uniform(size=(n_seeds, n_items))
    difficulty = np.where(rng.uniform(size=(n_seeds, n_items)) < redraw, own, shared[None, :])
    correct = difficulty < (p0 + u)[:, None]
    labels = np.zeros(n_items, dtype=np.int64)
    return [np.stack([np.where(c, 1.0, -1.0), np.zeros(n_items)], axis=1) for c in correct], labels


REPS = 800


@pytest.mark.parametrize(
    ("sd_seed", "redraw", "seed_only_below", "items_only_below"),
    [
        (0.0, 0.0, 0.2, None),  # deterministic: every seed identical
        (0.0, 0.3, 0.88, None),  # the items dominate
        (0.03, 0.3, None, None),  # both matter (seed sd ~ one seed's item se)
        (0.08, 0.3, None, 0.8),  # the seeds dominate
    ],
)
def test_coverage_of_a_known_mean_is_near_95_percent(sd_seed, redraw, seed_only_below, items_only_below):
    """Over REPS simulated test sets (3 seeds, 200 items, true accuracy 0.8) the interval covers the truth in
    [0.925, 0.975] of them. The band is +-3.2 binomial standard errors of 800 draws (0.0077) around 0.95 and the
    draws are seeded, so the test is deterministic; it cannot pass by accident: the seeds' t-interval leaves out
    the shared item error and covers 8% (deterministic) and 84% (items dominate) here, and an interval of the items
    alone leaves out the seeds' spread and covers 71% when the seeds dominate; both are asserted below. (This
    interval: 0.948, 0.954, 0.961, 0.949 over the four.)"""
    rng = np.random.default_rng(7)
    p0, hits, seed_hits, item_hits = 0.8, 0, 0, 0
    for _ in range(REPS):
        outs, y = _dataset(rng, 200, 3, p0, sd_seed, redraw)
        i = score_interval(outs, y, "accuracy", n_resamples=200)
        hits += i.low <= p0 <= i.high
        if seed_only_below is not None:
            s = seed_summary([metrics.accuracy(o, y) for o in outs])
            seed_hits += s.low <= p0 <= s.high
        if items_only_below is not None:  # the one-seed (items) half-width around the mean of the seeds
            one = score_interval(outs[:1], y, "accuracy", n_resamples=200)
            item_hits += abs(i.mean - p0) <= (one.high - one.low) / 2
    assert 0.925 <= hits / REPS <= 0.975, hits / REPS
    if seed_only_below is not None:
        assert seed_hits / REPS < seed_only_below, "the seeds' t-interval misses the shared item error"
    if items_only_below is not None:
        assert item_hits / REPS < items_only_below, "the items alone miss the seeds' spread"


# ------------------------------------------------------------------------------------------- cells from a store
def _write(store, method, seed, outputs, labels, *, predictions=True, budget=64, tamper=0.0):
    res = resolve(Cell("glue-sst2", method, budget, seed, suite="s"))
    r = new_record(res, "ok")
    r.metrics = {"test/accuracy": metrics.accuracy(outputs, labels) + tamper, "gap/accuracy": 0.01 * seed}
    if predictions:
        ids = np.arange(len(labels))
        order = np.random.default_rng(seed).permutation(len(labels))  # each seed stored in its own item order
        r.arrays = {"test": {"ids": ids[order], "outputs": outputs[order], "labels": labels[order]}}
    store.write(r)
    return store.get("s", r.key)


def test_a_cell_says_which_kind_of_interval_it_has(tmp_path):
    store = Store(tmp_path)
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    outs = [_logits(rng, y, 1.0) for _ in range(3)]
    lora = [_write(store, "lora", s, outs[s], y) for s in range(3)]
    got = cell_intervals(store, lora, ["test/accuracy", "gap/accuracy"])
    expect = score_interval(outs, y, "test/accuracy")  # stored in shuffled orders, aligned back by id
    assert got["test/accuracy"].kind == SEEDS_ITEMS
    assert (got["test/accuracy"].low, got["test/accuracy"].high) == pytest.approx((expect.low, expect.high))
    assert got["gap/accuracy"] == seed_summary([0.0, 0.01, 0.02], "gap/accuracy"), "not from predictions: seeds"
    one = cell_intervals(store, lora[:1], ["test/accuracy"])["test/accuracy"]
    assert one.kind == ITEMS and one.has_interval and one.n == 1
    old = [_write(store, "full", s, outs[s], y, predictions=False) for s in range(3)]
    assert cell_intervals(store, old, ["test/accuracy"])["test/accuracy"].kind == SEEDS, "no predictions: seeds"
    off = [_write(store, "frozen", s, outs[s], y, tamper=0.01 * (s == 1)) for s in range(3)]
    assert cell_intervals(store, off, ["test/accuracy"])["test/accuracy"].kind == SEEDS, "not what was recorded"
    intervals = [got["test/accuracy"], one, seed_summary([0.5])]
    assert interval_kinds(intervals) == "seeds+items / items", "a header names the kinds its column holds"
    assert math.isclose(got["test/accuracy"].mean, np.mean([metrics.accuracy(o, y) for o in outs]))
