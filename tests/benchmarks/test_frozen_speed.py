"""Benchmark (not a test): a ``frozen`` cell (``bench.run.cell.execute`` in this process, default frozen settings,
budget 1024) against the obvious hand-written equivalent: load the same backbone, extract train/val/test features once
(batches of 128 under ``inference_mode``, text sorted by length like the harness), fit scikit-learn's
``LogisticRegression`` (lbfgs, max_iter 1000) on the train features, score val and predict test. Both load the
task's splits and the backbone inside the timed call; both compute each split's features once.

The cell also does what the baseline does not: the forgetting probe before and after (cached by weight
fingerprint: an untimed warm-up cell fills the cache, as the first cell of a suite does for every later one),
1000+ head steps with 10 validation passes, FLOPs, the merged-throughput check and the record. Its share of the
wall time is broken down from the record (``cost.feature_time_s``, ``cost.train_time_s``).

Run: `make benchmark`; reduced check: `ADAPTBENCH_BENCH_BUDGET=128 ADAPTBENCH_BENCH_ROUNDS=2`. Wall times and the
ratio cell / baseline are printed and stored in extra_info; nothing about speed is asserted.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
from _speed import THREADS, alternate, budget, fix_threads, load_average, median_ratio, rounds

from bench.catalog import resolve
from bench.core.api import Cell


def _features(loaded, split, batch_size: int = 128):
    import torch

    from bench.run.loop import eval_order

    order = eval_order(split)  # text by length (less padding), images as they are
    encoder, out = loaded.encoder.eval(), []
    with torch.inference_mode():
        for start in range(0, len(split), batch_size):
            index = order[start : start + batch_size]
            items = split.inputs[index] if isinstance(split.inputs, np.ndarray) else [split.inputs[i] for i in index]
            out.append(encoder(**loaded.batcher(items)).float().numpy())
    return np.concatenate(out)[np.argsort(order)]


def sklearn_baseline(res, data) -> dict:
    """Load, extract features once per split, logistic regression, predict test."""
    from sklearn.linear_model import LogisticRegression

    from bench.core.backbone import get_backbone

    splits = res.task.splits(res.cell.budget, res.cell.seed, data)
    sizes = {"image_size": getattr(res.task, "image_size", 224), "max_len": getattr(res.task, "max_len", 128)}
    loaded = get_backbone(res.backbone).load(pretrained=True, **sizes)
    t0 = time.perf_counter()
    x_train, x_val, x_test = (_features(loaded, s) for s in (splits.train, splits.val, splits.test))
    features_s = time.perf_counter() - t0
    clf = LogisticRegression(solver="lbfgs", max_iter=1000).fit(x_train, splits.train.labels)
    val = res.task.evaluate(clf.predict_log_proba(x_val), splits.val.labels)
    test = res.task.evaluate(clf.predict_log_proba(x_test), splits.test.labels)
    primary = res.task.spec.primary_metric
    return {"features_s": features_s, "val": val[primary], "test": test[primary]}


def frozen_cell(res, data, features_cached: bool = False) -> dict:
    """The cell in this process. ``features_cached=False`` clears the feature cache first, so the cell computes its
    features like the baseline does (the like-for-like comparison); True reuses what the previous call stored (what
    every further seed and budget of the suite costs)."""
    from bench.core.cache import clear
    from bench.run.cell import execute

    if not features_cached:
        clear(["features"])
    record = execute(res, data, "cpu")
    primary = res.task.spec.primary_metric
    cost = record.cost
    return {
        "record_wall_s": cost.wall_time_s,
        "features_s": cost.feature_time_s,
        "head_train_s": cost.train_time_s - cost.feature_time_s,
        "val": record.metrics[f"val/{primary}"],
        "test": record.metrics[f"test/{primary}"],
    }


@pytest.mark.slow
@pytest.mark.parametrize("task", ["pneumonia-mnist", "glue-sst2"])
def test_frozen_cell_vs_sklearn(benchmark, data, task):
    threads = fix_threads()
    res = resolve(Cell(task, "frozen", budget(), 0))
    frozen_cell(res, data)  # warm-up, untimed: fills the probe cache the way a suite's first cell does
    contenders = {
        "frozen-cell": lambda: frozen_cell(res, data),
        "frozen-cell-cached": lambda: frozen_cell(res, data, features_cached=True),
        "sklearn": lambda: sklearn_baseline(res, data),
    }
    n_rounds = rounds()
    results = benchmark.pedantic(alternate, args=(contenders, n_rounds), rounds=1, iterations=1)

    cell_s = [r["call_s"] for r in results["frozen-cell"]]
    base_s = [r["call_s"] for r in results["sklearn"]]
    cached_s = [r["call_s"] for r in results["frozen-cell-cached"]]
    ratio = median_ratio(cell_s, base_s)
    last = results["frozen-cell"][-1]
    info = {
        "task": task,
        "budget": budget(),
        "rounds": n_rounds,
        "threads": threads,
        "load_average_1min_end": load_average(),
        "frozen_cell_s": cell_s,
        "sklearn_s": base_s,
        "ratio_cell_over_sklearn": ratio,
        "frozen_cell_features_cached_s": cached_s,
        "ratio_cached_cell_over_sklearn": median_ratio(cached_s, base_s),
        "cell_features_s": [r["features_s"] for r in results["frozen-cell"]],
        "cell_head_train_s": [r["head_train_s"] for r in results["frozen-cell"]],
        "sklearn_features_s": [r["features_s"] for r in results["sklearn"]],
        "test_primary_cell_vs_sklearn": [last["test"], results["sklearn"][-1]["test"]],
    }
    benchmark.extra_info.update(info)
    print(
        f"\nfrozen {task} @ {budget()}, {n_rounds} alternating rounds, {threads} threads (requested {THREADS}), "
        f"load {load_average():.1f}: cell {statistics.median(cell_s):.1f} s (features "
        f"{statistics.median(info['cell_features_s']):.1f}, head {statistics.median(info['cell_head_train_s']):.1f}), "
        f"sklearn {statistics.median(base_s):.1f} s (features {statistics.median(info['sklearn_features_s']):.1f}) "
        f"-> {ratio:.2f}x; features from the cache: {statistics.median(cached_s):.1f} s "
        f"({info['ratio_cached_cell_over_sklearn']:.2f}x); test {res.task.spec.primary_metric} {last['test']:.3f} vs "
        f"{results['sklearn'][-1]['test']:.3f}"
    )
