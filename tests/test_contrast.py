"""The seed-aware test of a difference between two methods (bench/analysis/contrast.py): its calibration under the
null and its power, by simulation against known truth, and its outcomes on hand-made predictions.

The simulation: one shared test set of N items per experiment; each item has a propensity to be right for A and for
B (their difference varies by item: the common item effect); every (method, seed) adds a seed effect whose variance
is k times the item-sampling variance of one seed's difference; each seed's correctness is drawn anew (the
seed-specific item noise). Under the null the two methods' propensities have the same distribution.

Run: `.venv/bin/python -m pytest tests/test_contrast.py -q` (the fast checks, ~15 s); the whole calibration grid is
marked slow (`-m slow`, ~2 min).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.analysis import contrast, stats
from bench.analysis.contrast import BETTER, EQUIVALENT, UNDECIDED, WORSE, compare_outputs
from bench.core import metrics

N_ITEMS = 300
RESAMPLES = 300  # the item term needs a variance, not a tail: 300 resamples estimate it to ~8%


def _experiment(rng, seeds: int, k: float, effect: float = 0.0, items: int = N_ITEMS, spread: float = 0.15):
    """(outputs of A per seed, outputs of B per seed, labels per seed): binary logits whose accuracy difference is
    ``effect`` in expectation (0: the null)."""
    y = rng.integers(0, 2, items)
    p = rng.uniform(0.55, 0.85, items)
    a = rng.normal(0, spread, items)
    pa, pb = np.clip(p + a + effect / 2, 0, 1), np.clip(p - a - effect / 2, 0, 1)
    one_seed = np.var(pa - pb) / items + (np.mean(pa * (1 - pa)) + np.mean(pb * (1 - pb))) / items
    tau = math.sqrt(k * one_seed / 2)  # per method: the seed part of a difference has variance 2 tau^2
    outs_a, outs_b = [], []
    for _ in range(seeds):
        for propensity, outs in ((pa, outs_a), (pb, outs_b)):
            right = rng.random(items) < np.clip(propensity + rng.normal(0, tau), 0, 1)
            outs.append(np.eye(2)[np.where(right, y, 1 - y)])
    return outs_a, outs_b, [y] * seeds


def _rejections(seeds: int, k: float, sims: int, effect: float = 0.0, metric: str = "accuracy", seed: int = 0):
    rng = np.random.default_rng([seed, seeds, int(10 * k), int(1000 * effect)])
    hits = 0
    for _ in range(sims):
        a, b, y = _experiment(rng, seeds, k, effect)
        d = compare_outputs(a, b, y, metric, n_resamples=RESAMPLES, rng_seed=int(rng.integers(1 << 30)))
        hits += d.p < 1 - stats.LEVEL
    return hits / sims


@pytest.mark.parametrize(("seeds", "k"), [(3, 5), (3, 40)])
def test_three_seeds_claim_a_difference_at_about_the_nominal_rate_under_the_null(seeds, k):
    """The cases the two-level bootstrap got wrong (11% and 22% at k = 5 and 40): at most 7% here (800
    experiments: the standard error of a 5% rate is 0.8 points)."""
    rate = _rejections(seeds, k, 800)
    assert rate <= 0.07, f"false-positive rate {rate:.3f} at {seeds} seeds, k = {k}"


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [3, 5, 10])
@pytest.mark.parametrize("k", [0, 1, 5, 40])
def test_the_false_positive_rate_stays_in_its_band_over_seed_and_item_variance_ratios(seeds, k):
    """2,000 null experiments per setting (standard error 0.5 points): between 2% (not uselessly conservative)
    and 7%."""
    rate = _rejections(seeds, k, 2000, seed=1)
    assert 0.02 <= rate <= 0.07, f"false-positive rate {rate:.3f} at {seeds} seeds, k = {k}"


@pytest.mark.slow
def test_the_calibration_holds_for_auroc_through_the_resampled_metric():
    rate = _rejections(3, 5, 600, metric="auroc", seed=2)
    assert rate <= 0.07, f"false-positive rate {rate:.3f} for AUROC"


def test_a_real_difference_of_twelve_points_is_found_most_of_the_time_with_five_seeds():
    """Power against a known effect: accuracy 12 points apart on 300 items whose difficulty for the two methods
    varies (item sd 0.15), seed variance equal to the item variance: found in at least 80% of experiments."""
    power = _rejections(5, 1, 200, effect=0.12)
    assert power >= 0.8, f"power {power:.2f}"
    weak = _rejections(5, 1, 200, effect=0.0)
    assert weak < power / 5


# ------------------------------------------------------------------------------------------------ outcomes
def _logits(rng, y, strength):
    n = len(y)
    out = rng.normal(size=(n, 2))
    out[np.arange(n), y] += strength
    return out


def test_a_clear_difference_over_three_seeds_is_better_and_the_interval_excludes_zero():
    rng = np.random.default_rng(2)
    labels = [rng.integers(0, 2, 1000)] * 3
    a = [_logits(rng, y, 2.0) for y in labels]  # ~92% accurate
    b = [_logits(rng, y, 1.0) for y in labels]  # ~76%
    d = compare_outputs(a, b, labels, "accuracy")
    truth = np.mean([metrics.accuracy(x, y) - metrics.accuracy(z, y) for x, z, y in zip(a, b, labels, strict=True)])
    assert d.diff == pytest.approx(truth) and d.low > 0.1 and d.outcome() == BETTER and d.outcome(False) == WORSE
    assert (d.n_seeds, d.n_items, d.n_resamples) == (3, 1000, 2000) and d.seeds_known
    assert d.df >= 2, "at least the seeds' degrees of freedom"
    assert compare_outputs(a, b, labels, "accuracy") == d, "fixed RNG seed: the same interval every run"


def test_identical_predictions_are_equivalent_with_a_zero_width_interval():
    rng = np.random.default_rng(3)
    labels = [rng.integers(0, 2, 500)] * 3
    a = [_logits(rng, y, 1.0) for y in labels]
    for metric in ("accuracy", "auroc", "f1", "mcc"):
        d = compare_outputs(a, [x.copy() for x in a], labels, metric)
        assert d.diff == 0 and d.low == 0 and d.high == 0 and not d.significant and d.outcome() == EQUIVALENT


def test_pairing_items_finds_a_small_difference_that_independent_intervals_would_miss():
    # A and B agree on 960 of 1000 items; of the 40 where they differ A is right on 30: a 2-point gap that the
    # items' shared difficulty hides from unpaired intervals (each ~ +-2.7 points) but not from a paired test.
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 1000)
    correct_b = rng.random(1000) < 0.7
    correct_b[:40] = np.r_[np.zeros(30, bool), np.ones(10, bool)]
    correct_a = correct_b.copy()
    correct_a[:40] = ~correct_b[:40]
    logits = lambda right: np.eye(2)[np.where(right, y, 1 - y)]  # noqa: E731
    d = compare_outputs([logits(correct_a)], [logits(correct_b)], [y], "accuracy")
    assert d.diff == pytest.approx(0.02) and d.significant and d.high - d.low < 0.03
    assert not d.seeds_known and d.more_seeds() is None, "one seed: the seeds' variance is unknown"


def test_a_tiny_precise_difference_is_equivalent_and_a_noisy_one_is_undecided_with_the_seeds_it_needs():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 2000)
    base = [_logits(rng, y, 1.5) for _ in range(3)]
    near = []
    for x in base:  # 6 of 2,000 predictions flipped per seed: differences of ~0.003, far inside the 0.01 margin
        z = x.copy()
        z[:6] = z[:6, ::-1]
        near.append(z)
    d = compare_outputs(base, near, [y] * 3, "accuracy")
    assert d.outcome() == EQUIVALENT and d.p_equivalent < 0.05
    noisy = compare_outputs([_logits(rng, y[:200], 1.0) for _ in range(3)], [_logits(rng, y[:200], 1.1)
                            for _ in range(3)], [y[:200]] * 3, "accuracy")  # fmt: skip
    assert noisy.outcome() == UNDECIDED
    more = noisy.more_seeds()
    assert more is None or more >= 1, "a number of further seeds, or: the test set is too small"


def test_seed_spread_widens_the_interval_where_the_bootstrap_did_not():
    """Three per-seed differences of one sign but very different sizes: the two-level bootstrap excluded 0; the t at
    two degrees of freedom does not."""
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 800)
    a, b = [], []
    for gain in (0.01, 0.04, 0.12):  # per-seed accuracy gains of A
        right_b = rng.random(800) < 0.7
        right_a = right_b.copy()
        flip = rng.choice(np.flatnonzero(~right_b), int(gain * 800), replace=False)
        right_a[flip] = True
        a.append(np.eye(2)[np.where(right_a, y, 1 - y)])
        b.append(np.eye(2)[np.where(right_b, y, 1 - y)])
    d = compare_outputs(a, b, [y] * 3, "accuracy")
    assert d.diff > 0 and d.low < 0 < d.high and d.outcome() == UNDECIDED
    assert d.seed_var > 5 * d.item_var, "the seeds' spread dominates"


def test_an_unpaired_comparison_counts_each_methods_seeds_and_widens_with_their_spread():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 600)
    a = [_logits(rng, y, 2.0) for _ in range(5)]
    b = [_logits(rng, y, 1.0) for _ in range(3)]
    d = compare_outputs(a, b, y, "accuracy", paired=False)
    expect = np.mean([metrics.accuracy(x, y) for x in a]) - np.mean([metrics.accuracy(x, y) for x in b])
    assert d.diff == pytest.approx(expect) and (d.n_seeds, d.seeds_b) == (5, 3) and not d.seeds_paired
    wild = [_logits(rng, y, s) for s in (0.5, 1.5, 2.5, 3.5, 4.5)]
    assert compare_outputs(wild, b, y, "accuracy", paired=False).se > d.se


def test_a_weighted_contrast_tests_a_ratio_of_gains():
    """ "A keeps 95% of B's gain over chance" is the contrast A - 0.95 B - 0.05 chance >= 0."""
    rng = np.random.default_rng(8)
    labels = [rng.integers(0, 2, 1000)] * 3
    a = [_logits(rng, y, 2.0) for y in labels]
    d = compare_outputs(a, a, labels, "accuracy", weight=0.95, offset=0.05 * 0.5)
    acc = np.mean([metrics.accuracy(x, y) for x, y in zip(a, labels, strict=True)])
    assert d.diff == pytest.approx(acc - 0.95 * acc - 0.025) and d.diff > 0


def test_holm_adjusts_a_family_step_down():
    assert stats.holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan], nan_ok=True)
    assert stats.holm([0.5]) == [0.5] and stats.holm([]) == []
    adjusted = contrast.adjusted(
        compare_outputs(*_experiment(np.random.default_rng(9), 3, 1)[:3], "accuracy"), 0.9, 1.0
    )
    assert not adjusted.significant and not adjusted.equivalent
