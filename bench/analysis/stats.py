"""Intervals over seeds, the seed rule, the family-wise adjustment and DeLong's test. The comparison of two methods
(seeds and test items both counted) is ``bench.analysis.contrast``; lining their records up is
``bench.analysis.pairing``.

- ``seed_summary``: the mean over seeds with a 95% t-interval (scipy.stats.t), of kind ``seeds``; one seed has no
  interval (``low = high = nan``) and is shown as "one seed", never as a bare number that looks like a mean. With the
  metric, the interval is clipped to its range. A test score's interval over seeds and test items is
  ``bench.analysis.score_interval`` (kinds ``seeds+items``, ``items``).
- The seed rule: a ranking needs ``MIN_SEEDS`` seeds of each method (a method may declare more, ``Method.min_seeds``:
  fewshot's seed is a draw of demonstrations, a larger source of variance); fewer is "not enough seeds", never a
  ranking from one seed.
- ``holm``: a report's comparisons are a family, and their p-values are Holm-adjusted together (the decision map's
  comparisons over every task and budget; the gains over scratch; the claims a rerun checks).
- ``delong``: DeLong's test for two correlated binary ROC-AUCs on one set of items, in the O(n log n) midrank
  form of Sun & Xu (2014), "Fast implementation of DeLong's algorithm for comparing the areas under correlated
  receiver operating characteristic curves", IEEE Signal Processing Letters 21(11). Written by hand because
  neither scipy nor scikit-learn has it; the midranks are scipy's ``rankdata``. A cross-check of the item term of
  ``bench.analysis.contrast`` on one seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bench import catalog
from bench.core.metrics import metric_range, softmax

if TYPE_CHECKING:
    pass

LEVEL = 0.95
MIN_SEEDS = 3  # a method may declare more (``Method.min_seeds``) or be seedless (``Method.seedless``: 1)

NOT_ENOUGH_SEEDS = "not enough seeds"


SEEDS_ITEMS, SEEDS, ITEMS = "seeds+items", "seeds", "items"  # what an interval counts (``Interval.kind``)


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` seeds with its 95% interval, and what the interval counts (``kind``): ``seeds`` (the
    t-interval over seeds of ``seed_summary``; NaN bounds with fewer than two), ``seeds+items`` or ``items`` (one
    seed: the test items only; ``bench.analysis.score_interval``)."""

    mean: float
    low: float
    high: float
    n: int
    kind: str = SEEDS

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
        text = f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"
        return f"{text} (one seed)" if self.one_seed else text  # an items-only interval: the seeds' noise not in it


def interval_kinds(intervals: Iterable[Interval | None]) -> str:
    """What a column of intervals counts, for its header: "seeds+items", or e.g. "seeds+items / items" when some
    rows have one seed (the kinds of the intervals that have bounds, the main kind first)."""
    found = {i.kind for i in intervals if i is not None and i.has_interval}
    return " / ".join(k for k in (SEEDS_ITEMS, ITEMS, SEEDS) if k in found) or SEEDS


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


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family's p-values (in their order): the family-wise error rate stays at the
    nominal level whatever the dependence between the tests. NaN p-values (no test) stay NaN and do not count."""
    finite = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    out = [math.nan] * len(p_values)
    running, m = 0.0, len(finite)
    for rank, (p, i) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out
