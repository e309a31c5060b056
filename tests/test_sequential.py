"""Adaptive seeds (issue 21): the looks and their alpha spending, the Bonferroni-over-looks p-value's error rate under
optional continuation (simulated against a true null), and which cells the next look adds. Fast: numpy simulations
and fake records. Run: `.venv/bin/python -m pytest tests/test_sequential.py -q`.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from bench.analysis import allocation
from bench.analysis.sequential import combined
from bench.suite import Adaptive, load_suite


def test_looks_and_spending_of_an_adaptive_design():
    design = Adaptive(max_seeds=5, batch=2, minutes=55)
    assert design.looks(3) == [3, 5]
    assert design.spending(3) == pytest.approx([0.36, 0.64])
    assert sum(Adaptive(max_seeds=9, batch=2, minutes=1).spending(3)) == pytest.approx(1.0)
    assert Adaptive(max_seeds=3, batch=2, minutes=1).spending(3) == [1.0], "no room to grow: one look, all of alpha"


def _null_rejections(n_sims: int, looks: list[int], spending: list[float], naive: bool, seed: int = 0) -> float:
    """Share of true-null comparisons rejected at 5% when seeds are added only while the comparison is undecided
    (a paired t-test of per-seed differences at each look)."""
    rng = np.random.default_rng(seed)
    diffs = rng.normal(size=(n_sims, looks[-1]))
    rejected = np.zeros(n_sims, dtype=bool)
    tests: list[list[tuple[float, float]]] = [[] for _ in range(n_sims)]
    open_ = np.ones(n_sims, dtype=bool)
    for n, w in zip(looks, spending, strict=True):
        p = stats.ttest_1samp(diffs[:, :n], 0.0, axis=1).pvalue
        for i in np.flatnonzero(open_):
            tests[i].append((float(p[i]), w))
        now = p < 0.05 if naive else np.array([combined(t) < 0.05 if t else False for t in tests])
        rejected |= open_ & now
        open_ &= ~now  # a decided comparison gets no more seeds
    return float(rejected.mean())


def test_bonferroni_over_looks_keeps_the_false_positive_rate_under_alpha_while_naive_looks_exceed_it():
    n = 20_000
    se = math.sqrt(0.05 * 0.95 / n)
    for looks in ([3, 5], [3, 5, 7]):
        spending = Adaptive(max_seeds=looks[-1], batch=2, minutes=1).spending(looks[0])
        rate = _null_rejections(n, looks, spending, naive=False)
        assert rate <= 0.05 + 3 * se, f"{looks}: {rate:.4f}"
        naive = _null_rejections(n, looks, spending, naive=True)
        assert naive > 0.05 + 3 * se, f"testing every look at 5% inflates the error ({naive:.4f}); the fix is needed"


def test_combined_is_the_smallest_spent_p_and_ignores_looks_without_a_test():
    assert combined([(0.02, 0.36), (0.03, 0.64)]) == pytest.approx(0.03 / 0.64)
    assert combined([(math.nan, 0.36), (0.2, 0.64)]) == pytest.approx(0.2 / 0.64)
    assert math.isnan(combined([(math.nan, 1.0)]))
    assert combined([(0.9, 0.36)]) == 1.0


SUITE = """
description = "adaptive"
seeds = [0, 1, 2]
[adaptive]
max_seeds = 5
batch = 2
minutes = 10
[[matrix]]
tasks = ["pneumonia-mnist"]
methods = ["frozen", "lora"]
budgets = [64]
[[matrix]]
tasks = ["glue-sst2"]
methods = ["zeroshot"]
budgets = [64]
seeds = [0, 1, 2, 3, 4]
"""


def _records(suite):
    return [
        SimpleNamespace(
            ok=True,
            task=c.task,
            method=c.method,
            budget=c.budget,
            seed=c.seed,
            allocation=c.allocation,
            key=f"{c.task}-{c.method}-{c.seed}",
        )
        for c in suite.cells
    ]


def test_the_next_look_adds_seeds_to_both_sides_of_open_comparisons_that_the_cap_can_decide(tmp_path, monkeypatch):
    path = tmp_path / "adaptive.toml"
    path.write_text(SUITE)
    suite = load_suite(str(path))
    records = _records(suite)
    assert all(r.allocation["look"] == 1 for r in records)
    assert next(r for r in records if r.method == "zeroshot").allocation["looks"] == [5], "prompting: one look"
    opened = [("pneumonia-mnist", 64, "lora", "frozen", 2, "lora vs frozen undecided")]
    monkeypatch.setattr(allocation, "open_comparisons", lambda store, records: opened)
    cells = allocation.next_look(suite, None, records, 2)
    assert sorted((c.method, c.seed) for c in cells) == [("frozen", 3), ("frozen", 4), ("lora", 3), ("lora", 4)]
    assert all(c.allocation["look"] == 2 and "lora vs frozen undecided" in c.allocation["why"] for c in cells)
    assert cells[0].overrides == next(c for c in suite.cells if c.method == cells[0].method).overrides
    far = [("pneumonia-mnist", 64, "lora", "frozen", 9, "needs 9 more")]
    monkeypatch.setattr(allocation, "open_comparisons", lambda store, records: far)
    assert allocation.next_look(suite, None, records, 2) == [], "5 seeds cannot decide it: spend nothing there"
    grown = records + [SimpleNamespace(**{**vars(r), "seed": r.seed + 3, "allocation": {**r.allocation, "look": 2}})
                       for r in records if r.method != "zeroshot" and r.seed < 2]  # fmt: skip
    monkeypatch.setattr(allocation, "open_comparisons", lambda store, records: opened)
    assert allocation.next_look(suite, None, grown, 3) == [], "the design has two looks"


def test_the_grid_runs_each_look_the_extension_asks_for_and_the_records_say_why(tmp_path, monkeypatch):
    from bench.core.store import Store
    from bench.run.grid import run_grid
    from bench.suite import current_records
    from tests.test_tuning import _fake_grid

    calls = _fake_grid(monkeypatch)
    path = tmp_path / "adaptive.toml"
    path.write_text(
        SUITE.replace('tasks = ["glue-sst2"]\nmethods = ["zeroshot"]', 'tasks = ["glue-sst2"]\nmethods = ["frozen"]')
    )
    suite, store = load_suite(str(path)), Store(tmp_path / "results")
    looks = []

    def extend(records, look):
        looks.append((look, len(records)))
        if look > 2:
            return []
        return suite.more_seeds("pneumonia-mnist", "lora", 64, [3, 4], "look 2: lora vs frozen undecided", look)

    result = run_grid(suite, store, log=lambda _: None, extend=extend)
    assert looks == [(2, 11), (3, 13)], "look 2 after the 11 first cells, look 3 after its 2 cells"
    added = [r for r in result.records if r.seed in (3, 4) and r.method == "lora"]
    assert [r.allocation["look"] for r in added] == [2, 2] and "undecided" in added[0].allocation["why"]
    shown, _ = current_records(str(path), result.records, str(path))
    assert {r.key for r in added} <= {r.key for r in shown}, "a look's records belong to the suite's cells"
    ran = len(calls)
    tight = path.read_text().replace("minutes = 10", "minutes = 0.001")
    path.write_text(tight)
    short, store2 = load_suite(str(path)), Store(tmp_path / "results2")
    run_grid(short, store2, log=lambda _: None, extend=lambda records, look: short.more_seeds(
        "pneumonia-mnist", "lora", 64, [3], "why", look) if look == 2 else [])  # fmt: skip
    assert len(calls) - ran == 11, "no look fits a spent budget: the open comparisons stay undecided"
