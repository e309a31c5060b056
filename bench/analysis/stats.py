"""How two numbers are compared: intervals over seeds, the paired bootstrap, DeLong's test and the seed rule.

- ``seed_summary``: the mean over seeds with a 95% t-interval (scipy.stats.t); one seed has no interval
  (``low = high = nan``) and is shown as "one seed", never as a bare number that looks like a mean.
- ``paired_bootstrap``: the difference A - B of a task metric between two methods scored on the same test items
  under the same seeds. Each resample draws the test items with replacement (the same indices for both methods,
  and for every seed when all seeds saw the same items, since the test set is one shared sample) and, with more
  than one seed, the seeds too; the metric is recomputed on each resample (``bench.core.weighted_metrics``, which
  equals ``bench.core.metrics`` on the resample). 2,000 resamples and a fixed RNG seed by default, so a rerun prints
  the same interval. Written by hand: scipy.stats.bootstrap resamples one axis of paired samples but not items
  within seeds and seeds together, and calls the statistic once per resample (seconds per pair with
  scikit-learn metrics; the count-matrix form here takes milliseconds).
- ``unpaired_seeds_bootstrap``: the same difference when the two methods ran different seeds (fewshot's 5
  demonstration draws against 3 trained seeds): the test items are still paired (one shared test set, the same
  item indices for both), but each method's seeds are resampled on their own and the estimate is mean over A's
  seeds minus mean over B's. ``compare_records`` uses it only when the seeds the two share are too few for the
  seed rule and each method has enough seeds of its own; it is wider than pairing by seed (a seed fixes the
  training subset both methods saw), never narrower.
- ``delong``: DeLong's test for two correlated binary ROC-AUCs on one set of items, in the O(n log n) midrank
  form of Sun & Xu (2014), "Fast implementation of DeLong's algorithm for comparing the areas under correlated
  receiver operating characteristic curves", IEEE Signal Processing Letters 21(11). Written by hand because
  neither scipy nor scikit-learn has it; the midranks are scipy's ``rankdata``. Used to cross-check the bootstrap.
- The seed rule (``verdict``): "A beats B" only when the paired interval excludes zero and each method has at
  least ``MIN_SEEDS`` seeds in the comparison (``fewshot``: 5, its seed is a draw of demonstrations, a larger
  source of variance; ``zeroshot``: 1, nothing in it depends on the seed, and its one record is paired with every
  seed of the other); otherwise the comparison is "not enough seeds", never a ranking from one seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bench import catalog
from bench.core.metrics import METRICS, metric_range, softmax, weighted
from bench.core.weighted_metrics import counts

if TYPE_CHECKING:
    pass

LEVEL = 0.95
N_RESAMPLES = 2000
RNG_SEED = 0  # fixed: the same records give the same interval on every run
MIN_SEEDS = 3  # a method may declare more (``Method.min_seeds``) or be seedless (``Method.seedless``: 1)
_CHUNK_ELEMENTS = 8_000_000  # resamples x items per batch of work: bounds memory (~0.5 GB) on large test sets

BEATS, LOSES, NO_DIFFERENCE, NOT_ENOUGH_SEEDS = "beats", "loses to", "no significant difference", "not enough seeds"


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% interval over ``n`` values; ``low``/``high`` are NaN with fewer than two."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def one_seed(self) -> bool:
        return self.n == 1

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def describe(self, digits: int = 3) -> str:
        if self.n == 0 or math.isnan(self.mean):
            return "–"
        if not self.has_interval:
            return f"{self.mean:.{digits}f} (one seed)" if self.one_seed else f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def seed_summary(values: Sequence[float | None], metric: str | None = None) -> Interval:
    """Mean over seeds and the 95% t-interval (scipy.stats.t). None/NaN values (a metric undefined for a seed)
    are left out and ``n`` counts the rest; one value gives ``low = high = nan`` (shown as "one seed"). With the
    ``metric`` (``accuracy`` or ``test/accuracy``), the interval is clipped to its range
    (``bench.core.metrics``)."""
    from scipy.stats import t

    vals = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if len(vals) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(vals.mean())
    if len(vals) == 1:
        return Interval(mean, math.nan, math.nan, 1)
    half = float(t.ppf(0.5 + LEVEL / 2, len(vals) - 1) * vals.std(ddof=1) / math.sqrt(len(vals)))
    lo, hi = metric_range(metric or "") or (-math.inf, math.inf)
    return Interval(mean, max(mean - half, lo), min(mean + half, hi), len(vals))


# ------------------------------------------------------------------------------------------- paired bootstrap
@dataclass(frozen=True)
class PairedDiff:
    """Metric(A) - metric(B), mean over paired seeds, with the bootstrap's percentile interval and spread."""

    metric: str
    diff: float
    low: float
    high: float
    se: float  # standard deviation of the bootstrap distribution
    n_seeds: int  # seeds paired; with ``n_seeds_b``, A's seeds
    n_items: int
    n_resamples: int  # resamples with a defined metric (a resample missing a class has no AUROC)
    n_seeds_b: int | None = None  # B's seeds when seeds were not paired (``unpaired_seeds_bootstrap``)

    @property
    def seeds_paired(self) -> bool:
        return self.n_seeds_b is None

    @property
    def seeds_b(self) -> int:
        return self.n_seeds if self.n_seeds_b is None else self.n_seeds_b

    def verdict(self, method_a: str, method_b: str, higher_is_better: bool = True) -> str:
        """The seed rule on this interval (``verdict``) with the seeds each side brought."""
        return verdict(method_a, method_b, self.low, self.high, self.n_seeds, higher_is_better, self.seeds_b)

    def seeds_text(self) -> str:
        if self.seeds_paired:
            return f"{self.n_seeds} seed{'s' * (self.n_seeds != 1)}"
        return f"{self.n_seeds} vs {self.n_seeds_b} seeds, unpaired"

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    def describe(self, digits: int = 3) -> str:
        return (
            f"{self.diff:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}] "
            f"({self.seeds_text()} x {self.n_items} items)"
        )


def paired_bootstrap(
    outputs_a: Sequence[np.ndarray],
    outputs_b: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    metric: str,
    *,
    shared_items: bool = True,
    n_resamples: int = N_RESAMPLES,
    rng_seed: int = RNG_SEED,
) -> PairedDiff:
    """Paired bootstrap of metric(A) - metric(B). Element s of each sequence is one seed: both methods' outputs on
    the same items in the same order, and their labels. ``shared_items``: every seed scored the same items in the
    same order, so one draw of item indices serves all seeds of a resample."""
    if not (len(outputs_a) == len(outputs_b) == len(labels)) or not labels:
        raise ValueError("paired_bootstrap needs one (outputs A, outputs B, labels) triple per seed, at least one")
    if n_resamples < 10:
        raise ValueError(f"Invalid n_resamples: {n_resamples} (at least 10)")
    a = [np.asarray(x, dtype=np.float64) for x in outputs_a]
    b = [np.asarray(x, dtype=np.float64) for x in outputs_b]
    y = [np.asarray(v) for v in labels]
    for s, (xa, xb, ys) in enumerate(zip(a, b, y, strict=True)):
        if not (len(xa) == len(xb) == len(ys)):
            raise ValueError(f"seed {s}: {len(xa)} outputs of A, {len(xb)} of B, {len(ys)} labels")
    sizes = {len(v) for v in y}
    shared_items = shared_items and len(sizes) == 1
    n_seeds = len(y)
    point = float(
        np.mean([METRICS[metric](xa, ys) - METRICS[metric](xb, ys) for xa, xb, ys in zip(a, b, y, strict=True)])
    )

    rng = np.random.default_rng(rng_seed)
    seed_counts = _seed_counts(rng, n_seeds, n_resamples)
    per_seed = np.empty((n_resamples, n_seeds))
    chunk = max(1, _CHUNK_ELEMENTS // max(sizes))
    for start in range(0, n_resamples, chunk):
        rows = slice(start, min(start + chunk, n_resamples))
        size = rows.stop - rows.start
        W = counts(rng, len(y[0]), size) if shared_items else None
        for s in range(n_seeds):
            Ws = W if shared_items else counts(rng, len(y[s]), size)
            per_seed[rows, s] = weighted(metric, a[s], y[s], Ws) - weighted(metric, b[s], y[s], Ws)
    boot = _defined(_mean_over_drawn_seeds(seed_counts, per_seed), metric, n_resamples)
    return PairedDiff(metric, point, *_interval(boot), n_seeds, int(max(sizes)), len(boot))


def _seed_counts(rng: np.random.Generator, n_seeds: int, n_resamples: int) -> np.ndarray:
    """(R, S) how often each of S seeds is drawn in each of R resamples of the seeds (one seed: always once)."""
    if n_seeds == 1:
        return np.ones((n_resamples, 1), dtype=np.int64)
    draws = rng.integers(0, n_seeds, (n_resamples, n_seeds))
    return np.stack([np.bincount(row, minlength=n_seeds) for row in draws])


def _mean_over_drawn_seeds(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per resample, the mean of ``values`` (resamples x seeds) over the seeds drawn ``counts`` times each; NaN
    where a drawn seed has no defined metric."""
    drawn = counts > 0
    out = (counts * np.where(drawn, values, 0.0)).sum(axis=1) / counts.shape[1]
    out[(drawn & np.isnan(values)).any(axis=1)] = np.nan
    return out


def _defined(boot: np.ndarray, metric: str, n_resamples: int) -> np.ndarray:
    boot = boot[np.isfinite(boot)]
    if len(boot) < n_resamples / 2:
        raise ValueError(f"{metric} is undefined on most resamples ({len(boot)} of {n_resamples} defined)")
    return boot


def _interval(boot: np.ndarray) -> tuple[float, float, float]:
    """The percentile interval at ``LEVEL`` and the spread of a bootstrap distribution."""
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(boot, [tail, 100 - tail])
    return float(low), float(high), float(boot.std(ddof=1))


def unpaired_seeds_bootstrap(
    outputs_a: Sequence[np.ndarray],
    outputs_b: Sequence[np.ndarray],
    labels: np.ndarray,
    metric: str,
    *,
    n_resamples: int = N_RESAMPLES,
    rng_seed: int = RNG_SEED,
) -> PairedDiff:
    """metric(A) - metric(B) as the mean over A's seeds minus the mean over B's, for methods that ran different
    seeds on one shared test set: every output array is in the order of ``labels``. Each resample draws the items
    once (the same indices for every seed of both methods) and each method's seeds on their own."""
    if not outputs_a or not outputs_b:
        raise ValueError("unpaired_seeds_bootstrap needs at least one seed of each method")
    if n_resamples < 10:
        raise ValueError(f"Invalid n_resamples: {n_resamples} (at least 10)")
    y = np.asarray(labels)
    a = [np.asarray(x, dtype=np.float64) for x in outputs_a]
    b = [np.asarray(x, dtype=np.float64) for x in outputs_b]
    for side, outs in (("A", a), ("B", b)):
        for s, x in enumerate(outs):
            if len(x) != len(y):
                raise ValueError(f"{side} seed {s}: {len(x)} outputs for {len(y)} labels")
    point = float(np.mean([METRICS[metric](x, y) for x in a]) - np.mean([METRICS[metric](x, y) for x in b]))
    rng = np.random.default_rng(rng_seed)
    ca, cb = _seed_counts(rng, len(a), n_resamples), _seed_counts(rng, len(b), n_resamples)
    ma, mb = np.empty((n_resamples, len(a))), np.empty((n_resamples, len(b)))
    chunk = max(1, _CHUNK_ELEMENTS // len(y))
    for start in range(0, n_resamples, chunk):
        rows = slice(start, min(start + chunk, n_resamples))
        W = counts(rng, len(y), rows.stop - rows.start)
        for s, x in enumerate(a):
            ma[rows, s] = weighted(metric, x, y, W)
        for s, x in enumerate(b):
            mb[rows, s] = weighted(metric, x, y, W)

    boot = _defined(_mean_over_drawn_seeds(ca, ma) - _mean_over_drawn_seeds(cb, mb), metric, n_resamples)
    return PairedDiff(metric, point, *_interval(boot), len(a), len(y), len(boot), len(b))


# ------------------------------------------------------------------------------------------------- DeLong
@dataclass(frozen=True)
class DeLong:
    """DeLong's test of AUC(A) = AUC(B) on one set of items; ``var`` is the variance of AUC(A) - AUC(B)."""

    auc_a: float
    auc_b: float
    var_a: float
    var_b: float
    var: float
    z: float
    p_value: float
    low: float
    high: float

    @property
    def diff(self) -> float:
        return self.auc_a - self.auc_b


def binary_scores(outputs: np.ndarray) -> np.ndarray:
    """P(class 1) from (N, 2) logits, as ``bench.core.metrics.auroc`` scores them; (N,) scores pass through."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim == 1:
        return outputs
    if outputs.shape[1] != 2:
        raise ValueError(f"DeLong's test is for binary tasks: outputs have {outputs.shape[1]} classes")
    return softmax(outputs)[:, 1]


def delong(scores_a: np.ndarray, scores_b: np.ndarray, labels: np.ndarray) -> DeLong:
    """DeLong's test for two correlated ROC-AUCs (Sun & Xu 2014). Scores are (N,) or binary (N, 2) logits."""
    from scipy.stats import norm, rankdata

    labels = np.asarray(labels)
    if set(np.unique(labels).tolist()) - {0, 1}:
        raise ValueError("DeLong's test needs binary 0/1 labels")
    positive = labels == 1
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's test needs at least two positives and two negatives (got {m} and {n})")
    scores = np.stack([binary_scores(scores_a), binary_scores(scores_b)])
    x, y = scores[:, positive], scores[:, ~positive]
    tx, ty = rankdata(x, axis=1), rankdata(y, axis=1)  # midranks within positives, within negatives
    tz = rankdata(np.concatenate([x, y], axis=1), axis=1)  # and over all items
    auc = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, :m] - tx) / n  # each positive's share of negatives ranked below it
    v01 = 1.0 - (tz[:, m:] - ty) / m  # each negative's share of positives ranked above it
    cov = np.cov(v10) / m + np.cov(v01) / n
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = float(auc[0] - auc[1])
    se = math.sqrt(max(var, 0.0))
    z = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    half = float(norm.ppf(0.5 + LEVEL / 2)) * se
    p_value = float(2 * norm.sf(abs(z)))
    return DeLong(
        float(auc[0]), float(auc[1]), float(cov[0, 0]), float(cov[1, 1]), var, z, p_value, diff - half, diff + half
    )


# ------------------------------------------------------------------------------------------------ seed rule
def min_seeds(method: str) -> int:
    """Seeds a ranking of ``method`` needs: 1 for a seedless method, its declared ``min_seeds``, else ``MIN_SEEDS``."""
    cls = catalog.method_class(method)
    return 1 if cls.seedless else (cls.min_seeds or MIN_SEEDS)


def seedless(method: str) -> bool:
    """Its result does not depend on the seed: one record stands for every seed (``Method.seedless``)."""
    return catalog.method_class(method).seedless


def seed_exceptions() -> list[str]:
    """The registered methods whose seed rule is not the default, in words: ["5 for fewshot", "1 for zeroshot"]."""
    classes = {m: catalog.method_class(m) for m in catalog.METHODS.names()}
    needs_more = [f"{c.min_seeds} for {m}" for m, c in classes.items() if not c.seedless and c.min_seeds]
    return needs_more + [f"1 for {m}" for m, c in classes.items() if c.seedless]


def enough_seeds(method: str, n: int) -> bool:
    return n >= min_seeds(method)


def verdict(
    method_a: str,
    method_b: str,
    low: float,
    high: float,
    n_seeds: int,
    higher_is_better: bool = True,
    n_seeds_b: int | None = None,
) -> str:
    """``BEATS`` (A is better), ``LOSES``, ``NO_DIFFERENCE`` or ``NOT_ENOUGH_SEEDS`` for an interval of
    metric(A) - metric(B) over ``n_seeds`` seeds both methods have (with ``n_seeds_b``: A's and B's seeds of an
    unpaired comparison): a ranking needs ``min_seeds`` of them for each side, however narrow one seed's interval
    is."""
    if not (enough_seeds(method_a, n_seeds) and enough_seeds(method_b, n_seeds if n_seeds_b is None else n_seeds_b)):
        return NOT_ENOUGH_SEEDS
    if not (low > 0 or high < 0):
        return NO_DIFFERENCE
    return BEATS if (low > 0) == higher_is_better else LOSES


def seed_rule_text(method_a: str, method_b: str, n_seeds: int) -> str:
    need = max(min_seeds(method_a), min_seeds(method_b))
    return f"{NOT_ENOUGH_SEEDS} ({n_seeds} paired, {need} needed)"
