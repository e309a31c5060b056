"""The test of a difference between two methods at one task and budget, aware of both sources of noise: the seeds and
the test items.

**Why not the two-level bootstrap.** With three seeds a bootstrap of the seeds has 10 distinct multisets and keeps
(S-1)/S of the between-seed variance: once three per-seed differences share a sign its interval excludes 0 whatever
their spread. Simulated under the null (``tests/test_contrast.py``), it claimed a difference 11% of the time at a
seed/item variance ratio of 5 and 22% at 40, against a nominal 5%.

**The estimate.** A comparison is a contrast of seed means, ``D = mean_A m - weight * mean_B m - offset`` (the plain
difference has weight 1 and offset 0; the rules of thumb use others, e.g. "LoRA keeps 95% of full's gain over
chance"). Every seed of both methods is scored on one shared test set of N items. Write a seed's score as
``m_s = mu + u_s + g + h_s``: ``u_s`` the seed's own effect (training subset, initialisation, data order,
demonstrations, prompt), ``g`` the item-sampling error common to every seed (the same items), ``h_s`` the
item-sampling error particular to that seed. Then ``Var(D) = Var(u)/S + Var(g) + Var(h)/S`` (per method, and the
cross-method part of ``g`` for a paired contrast):

- the spread of the per-seed values estimates ``Var(u) + Var(h)``: ``s^2 / S``, with S - 1 degrees of freedom;
- ``Var(g)`` is the covariance between seeds of their scores on the same resample of items. Each bootstrap resample
  draws the N items once for every seed and both methods (``bench.core.weighted_metrics``: the metric on 2,000
  resamples at once), so over resamples the seed mean varies by ``Var(g) + Var(h)/S`` and one seed by
  ``Var(g) + Var(h)``: ``Var(g) = (S Var(D*) - mean_s Var(D*_s)) / (S - 1)``, floored at 0, ~N - 1 df;
- ``SE^2 = s^2/S + Var(g)`` (paired: s^2 of the per-seed contrasts; unpaired: each method's s^2 over its own seeds
  and the resampled covariance of the two seed means), and the interval is ``D +- t * SE``.
- t's degrees of freedom: Welch-Satterthwaite's for that sum, computed with the seeds' variance at its one-sided 75%
  upper confidence bound (``s^2 (S-1) / chi2_{S-1}(0.25)``). With three seeds s^2 has 2 df, and the plain
  Satterthwaite df grows exactly when s^2 happens to be small, which is when SE is too small: it ran at 7-8% under
  the null. The bound keeps the df near S - 1 unless the items' variance clearly dominates, and near N - 1 when it
  does (the simulated false-positive rate: 0.037-0.053 over the grid of ``tests/test_contrast.py``).

With one seed (a did-not-learn check of one record against the constant majority predictor) only the item term is
known and the result says so (``seeds_known``); a ranking needs the seed rule's seeds (``bench.analysis.stats``).
Written by hand because no library combines crossed seed and item variance with a resampled metric such as AUROC;
scipy supplies the t distribution. A hierarchical bootstrap with a small-sample correction was the alternative; the
variance-components form is exact for a mean such as accuracy, needs one pass of resamples, and its calibration is
a test (``tests/test_contrast.py``: false-positive rate at nominal 5% within [0.02, 0.07] for seed/item variance
ratios 0-40 and 3, 5 or 10 seeds; power against a known effect).

**Outcomes.** Each metric declares a practical margin (``bench.core.metrics``: 0.01 of AUROC or accuracy...). A
comparison ends as one of: A ``better``, A ``worse``, ``equivalent`` (two one-sided tests at 5%: the difference lies
within +-margin) or ``undecided``; an undecided comparison says how many more seeds the current variance estimates
say would decide it (or that the test set, not the seeds, is what is short). Within a report the p-values of a family
of comparisons are Holm-adjusted first (``bench.analysis.stats.holm``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from bench.core.metrics import METRICS, weighted
from bench.core.weighted_metrics import counts

LEVEL = 0.95
ALPHA = 1 - LEVEL
N_RESAMPLES = 2000
RNG_SEED = 0  # fixed: the same records give the same interval on every run
MAX_SEEDS = 100  # the largest number of seeds a "more seeds would decide it" estimate looks at
DF_BOUND = 0.25  # the chi-square quantile that bounds the seeds' variance from above for the degrees of freedom
_CHUNK_ELEMENTS = 8_000_000  # resamples x items per batch of work: bounds memory (~0.5 GB) on large test sets

BETTER, WORSE, EQUIVALENT, UNDECIDED = "better", "worse", "equivalent", "undecided"


@dataclass(frozen=True)
class Difference:
    """A contrast of two methods on one metric: its estimate, standard error and t interval, the variance components
    behind them, and the tests a verdict is made of (p of "no difference", p of "not equivalent")."""

    metric: str
    diff: float
    low: float  # the LEVEL interval (t at ``df``)
    high: float
    se: float
    df: float
    p: float  # two-sided: is the contrast 0?
    p_equivalent: float  # two one-sided tests: is it outside +-margin? (NaN without a margin)
    margin: float  # practical equivalence, in the metric's units (NaN: none declared)
    seed_var: float  # the seeds' part of se^2
    item_var: float  # the test items' part of se^2
    n_seeds: int  # seeds paired; with ``n_seeds_b``, A's seeds
    n_items: int
    n_resamples: int  # resamples with a defined metric (a resample missing a class has no AUROC)
    n_seeds_b: int | None = None  # B's seeds when seeds were not paired
    p_adjusted: float | None = None  # ``p`` after the family's multiplicity adjustment (None: not adjusted)
    p_equivalent_adjusted: float | None = None
    looks: int = 1  # looks of an adaptive design tested (p and p_equivalent are then Bonferroni over them)

    @property
    def seeds_paired(self) -> bool:
        return self.n_seeds_b is None

    @property
    def seeds_b(self) -> int:
        return self.n_seeds if self.n_seeds_b is None else self.n_seeds_b

    @property
    def seeds_known(self) -> bool:
        """Whether the seeds' variance could be estimated (two or more seeds on each side)."""
        return self.n_seeds >= 2 and self.seeds_b >= 2

    @property
    def significant(self) -> bool:
        """The difference is not 0 at the family's level (adjusted when the family was adjusted)."""
        return (self.p if self.p_adjusted is None else self.p_adjusted) < ALPHA

    @property
    def equivalent(self) -> bool:
        p = self.p_equivalent if self.p_equivalent_adjusted is None else self.p_equivalent_adjusted
        return not math.isnan(p) and p < ALPHA

    def outcome(self, higher_is_better: bool = True) -> str:
        """``better`` / ``worse`` (for A), ``equivalent`` or ``undecided``."""
        if self.equivalent:
            return EQUIVALENT
        if self.significant:
            return BETTER if (self.diff > 0) == higher_is_better else WORSE
        return UNDECIDED

    def more_seeds(self) -> int | None:
        """For an undecided comparison: how many more seeds (each side) the current variance estimates say would
        decide it, before any multiplicity adjustment; None when no number of seeds would (the items' variance alone
        keeps it undecided: a larger test set is what is short) or the seeds' variance is unknown."""
        if not self.seeds_known:
            return None
        n = min(self.n_seeds, self.seeds_b)
        per_seed = self.seed_var * n  # se^2's seed part scales as 1/seeds
        for more in range(1, MAX_SEEDS - n + 1):
            seeds = n + more
            se = math.sqrt(per_seed / seeds + self.item_var)
            df = _satterthwaite([(per_seed / seeds, seeds - 1), (self.item_var, self.n_items - 1)], seed_terms=1)
            if se == 0:
                return more
            t2, t1 = t_quantile(1 - ALPHA / 2, df), t_quantile(1 - ALPHA, df)
            if abs(self.diff) > t2 * se or (self.margin == self.margin and abs(self.diff) + t1 * se < self.margin):
                return more
        return None

    def seeds_text(self) -> str:
        if self.seeds_paired:
            return f"{self.n_seeds} seed{'s' * (self.n_seeds != 1)}"
        return f"{self.n_seeds} vs {self.n_seeds_b} seeds, unpaired"

    def describe(self, digits: int = 3) -> str:
        p = self.p if self.p_adjusted is None else self.p_adjusted
        kind = "p" if self.p_adjusted is None else "adjusted p"
        return (
            f"{self.diff:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}] "
            f"({kind} {_p(p)}; {self.seeds_text()} x {self.n_items} items"
            + (f"; Bonferroni over {self.looks} looks" if self.looks > 1 else "")
            + ")"
        )


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def compare_outputs(
    outputs_a: Sequence[np.ndarray],
    outputs_b: Sequence[np.ndarray],
    labels: Sequence[np.ndarray] | np.ndarray,
    metric: str,
    *,
    paired: bool = True,
    shared_items: bool = True,
    weight: float = 1.0,
    offset: float = 0.0,
    n_resamples: int = N_RESAMPLES,
    rng_seed: int = RNG_SEED,
) -> Difference:
    """The contrast ``mean_A m - weight * mean_B m - offset`` of ``metric`` (see the module docstring).

    Paired (``paired``): element s of ``outputs_a``, ``outputs_b`` and ``labels`` is seed s of both methods, on the
    same items in the same order; ``shared_items``: every seed scored the same items in the same order (one draw of
    item indices then serves every seed of a resample). Unpaired: each method's seeds on their own, every output
    array in the order of the one ``labels`` array (the shared test set)."""
    if n_resamples < 10:
        raise ValueError(f"Invalid n_resamples: {n_resamples} (at least 10)")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (known: {', '.join(sorted(METRICS))})")
    a = [np.asarray(x, dtype=np.float64) for x in outputs_a]
    b = [np.asarray(x, dtype=np.float64) for x in outputs_b]
    if not a or not b:
        raise ValueError("a comparison needs at least one seed of each method")
    if paired:
        y = [np.asarray(v) for v in labels]
        if not (len(a) == len(b) == len(y)):
            raise ValueError(f"paired seeds: {len(a)} of A, {len(b)} of B, {len(y)} label arrays")
        for s, (xa, xb, ys) in enumerate(zip(a, b, y, strict=True)):
            if not (len(xa) == len(xb) == len(ys)):
                raise ValueError(f"seed {s}: {len(xa)} outputs of A, {len(xb)} of B, {len(ys)} labels")
        shared_items = shared_items and len({len(v) for v in y}) == 1
    else:
        one = np.asarray(labels)
        for side, outs in (("A", a), ("B", b)):
            for s, x in enumerate(outs):
                if len(x) != len(one):
                    raise ValueError(f"{side} seed {s}: {len(x)} outputs for {len(one)} labels")
        y, shared_items = None, True
    m = METRICS[metric]
    labels_a = y if paired else [one] * len(a)
    labels_b = y if paired else [one] * len(b)
    point_a = np.array([m(x, ys) for x, ys in zip(a, labels_a, strict=True)])
    point_b = np.array([m(x, ys) for x, ys in zip(b, labels_b, strict=True)])
    ra, rb = _resampled(a, b, labels_a, labels_b, metric, shared_items, n_resamples, rng_seed)
    defined = np.isfinite(ra).all(axis=1) & np.isfinite(rb).all(axis=1)
    if defined.sum() < n_resamples / 2:
        raise ValueError(f"{metric} is undefined on most resamples ({int(defined.sum())} of {n_resamples} defined)")
    ra, rb = ra[defined], rb[defined]
    n_items = max(len(v) for v in labels_a)
    if paired:
        values = point_a - weight * point_b - offset
        diff = float(values.mean())
        terms, seed_var, item_var = _paired_terms(values, ra - weight * rb, n_items)
        n_b = None
    else:
        diff = float(point_a.mean() - weight * point_b.mean() - offset)
        terms, seed_var, item_var = _unpaired_terms(point_a, point_b, ra, rb, weight, n_items)
        n_b = len(b)
    return _difference(metric, diff, terms, seed_var, item_var, len(a), n_items, len(ra), n_b)


def _resampled(a, b, labels_a, labels_b, metric, shared_items, n_resamples, rng_seed):
    """(R, S_A) and (R, S_B): each seed's metric on R bootstrap resamples of the items (the same draws for every seed
    and both methods when the items are shared)."""
    rng = np.random.default_rng(rng_seed)
    ra, rb = np.empty((n_resamples, len(a))), np.empty((n_resamples, len(b)))
    chunk = max(1, _CHUNK_ELEMENTS // max(len(v) for v in [*labels_a, *labels_b]))
    for start in range(0, n_resamples, chunk):
        rows = slice(start, min(start + chunk, n_resamples))
        size = rows.stop - rows.start
        shared = counts(rng, len(labels_a[0]), size) if shared_items else None
        for out, xs, ys in ((ra, a, labels_a), (rb, b, labels_b)):
            for s, (x, yv) in enumerate(zip(xs, ys, strict=True)):
                W = shared if shared_items else counts(rng, len(yv), size)
                out[rows, s] = weighted(metric, x, yv, W)
    return ra, rb


def _common(resampled: np.ndarray) -> tuple[float, float]:
    """(variance over resamples of the seed mean, the seed-specific item variance H) of (R, S) resampled values:
    the seed mean varies by G + H/S, one seed by G + H, so H = S / (S - 1) * (mean per-seed variance - that of the
    mean); one seed: H is not separable (0)."""
    s = resampled.shape[1]
    var_mean = float(resampled.mean(axis=1).var(ddof=1))
    if s < 2:
        return var_mean, 0.0
    per_seed = float(resampled.var(axis=0, ddof=1).mean())
    return var_mean, max(0.0, (per_seed - var_mean) * s / (s - 1))


def _paired_terms(values: np.ndarray, resampled: np.ndarray, n_items: int):
    s = len(values)
    var_mean, seed_specific = _common(resampled)
    if s < 2:
        return [(var_mean, n_items - 1)], 0.0, var_mean
    seed_var = float(values.var(ddof=1)) / s
    item_var = max(0.0, var_mean - seed_specific / s)
    return [(seed_var, s - 1), (item_var, n_items - 1)], seed_var, item_var


def _unpaired_terms(point_a, point_b, ra, rb, weight, n_items):
    sa, sb = len(point_a), len(point_b)
    _, h_a = _common(ra)
    _, h_b = _common(rb)
    var_mean = float((ra.mean(axis=1) - weight * rb.mean(axis=1)).var(ddof=1))
    item_var = max(0.0, var_mean - h_a / sa - weight**2 * h_b / sb)
    var_a = float(point_a.var(ddof=1)) / sa if sa >= 2 else 0.0
    var_b = weight**2 * float(point_b.var(ddof=1)) / sb if sb >= 2 else 0.0
    terms = [(var_a, sa - 1), (var_b, sb - 1), (item_var, n_items - 1)]
    return [(v, df) for v, df in terms if df > 0], var_a + var_b, item_var


def _satterthwaite(terms: Sequence[tuple[float, float]], seed_terms: int = 0) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of variance terms (value, df); the first ``seed_terms`` terms
    are estimated from a few seeds and enter at their upper confidence bound (see the module docstring)."""
    bounded = [(_upper(v, df) if i < seed_terms else v, df) for i, (v, df) in enumerate(terms)]
    total = sum(v for v, _ in bounded)
    denominator = sum(v * v / df for v, df in bounded if df > 0 and v > 0)
    return total * total / denominator if denominator > 0 else math.inf


def _upper(value: float, df: float) -> float:
    """A variance estimated with ``df`` degrees of freedom at its one-sided upper confidence bound."""
    from scipy.stats import chi2

    return value * df / float(chi2.ppf(DF_BOUND, df)) if df > 0 else value


def t_quantile(q: float, df: float) -> float:
    from scipy.stats import norm, t

    return float(norm.ppf(q) if math.isinf(df) else t.ppf(q, df))


def _t_sf(x: float, df: float) -> float:
    from scipy.stats import norm, t

    return float(norm.sf(x) if math.isinf(df) else t.sf(x, df))


def _difference(
    metric, diff, terms, seed_var, item_var, n_seeds, n_items, n_resamples, n_seeds_b, seed_terms: int | None = None
) -> Difference:
    se = math.sqrt(sum(v for v, _ in terms))
    df = _satterthwaite(terms, seed_terms=len(terms) - 1 if seed_terms is None else seed_terms)
    margin = METRICS[metric].margin
    if se == 0:  # identical predictions: no uncertainty to speak of
        p = 1.0 if diff == 0 else 0.0
        p_eq = 0.0 if abs(diff) < margin else 1.0
        return Difference(metric, diff, diff, diff, 0.0, df, p, p_eq, margin, seed_var, item_var, n_seeds, n_items,
                          n_resamples, n_seeds_b)  # fmt: skip
    half = t_quantile(1 - ALPHA / 2, df) * se
    p = min(1.0, 2 * _t_sf(abs(diff) / se, df))
    p_eq = max(_t_sf((diff + margin) / se, df), _t_sf((margin - diff) / se, df))
    return Difference(
        metric, diff, diff - half, diff + half, se, df, p, p_eq, margin, seed_var, item_var, n_seeds, n_items,
        n_resamples, n_seeds_b,
    )  # fmt: skip


def welch(values_a: Sequence[float], values_b: Sequence[float], metric: str) -> Difference | None:
    """The difference of two methods' seed means by Welch's t-test, for records without stored predictions (no item
    term: the seeds' spread is all there is). None with fewer than two seeds on a side or no spread at all."""
    a = np.array([v for v in values_a if not math.isnan(v)], dtype=np.float64)
    b = np.array([v for v in values_b if not math.isnan(v)], dtype=np.float64)
    if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
        return None
    va, vb = float(a.var(ddof=1)) / len(a), float(b.var(ddof=1)) / len(b)
    terms = [(v, df) for v, df in ((va, len(a) - 1), (vb, len(b) - 1)) if v > 0]
    diff = float(a.mean() - b.mean())
    return _difference(metric, diff, terms, va + vb, 0.0, len(a), 0, 0, len(b), seed_terms=0)


def plain_difference(diff: float, var_a: float, var_b: float, n_a: int, n_b: int, what: str = "") -> Difference:
    """A difference of two means whose variances over ``n_a`` and ``n_b`` values are known (Welch's t), for a
    quantity that is not a task metric (peak memory): no item term, no margin."""
    terms = [(float(v), n - 1) for v, n in ((var_a, n_a), (var_b, n_b)) if n > 1 and v > 0]
    se = math.sqrt(sum(v for v, _ in terms))
    df = _satterthwaite(terms)
    if se == 0:
        return Difference(what, diff, diff, diff, 0.0, df, float(diff == 0), math.nan, math.nan, 0.0, 0.0, n_a, 0,
                          0, n_b)  # fmt: skip
    half = t_quantile(1 - ALPHA / 2, df) * se
    p = min(1.0, 2 * _t_sf(abs(diff) / se, df))
    return Difference(what, diff, diff - half, diff + half, se, df, p, math.nan, math.nan, var_a + var_b, 0.0, n_a, 0,
                      0, n_b)  # fmt: skip


def adjusted(d: Difference, p: float, p_equivalent: float) -> Difference:
    """``d`` with its family-adjusted p-values (``bench.analysis.stats.holm``)."""
    return replace(d, p_adjusted=p, p_equivalent_adjusted=p_equivalent)
