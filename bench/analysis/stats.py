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

if TYPE_CHECKING:
    from bench.core.record import Record
    from bench.core.store import Store

LEVEL = 0.95
N_RESAMPLES = 2000
RNG_SEED = 0  # fixed: the same records give the same interval on every run
MIN_SEEDS = 3
MIN_SEEDS_FOR = {"fewshot": 5}  # the seed picks the demonstrations: in-context results swing with the draw
# Methods whose result does not depend on the seed (no training, no sampled demonstrations): one record is all there
# is, so one seed is enough, and a paired comparison reuses it for every seed of the other method.
SEEDLESS = frozenset({"zeroshot"})
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
    (``bench.core.metrics.METRIC_RANGE``)."""
    from scipy.stats import t

    from bench.core.metrics import METRIC_RANGE

    vals = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if len(vals) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(vals.mean())
    if len(vals) == 1:
        return Interval(mean, math.nan, math.nan, 1)
    half = float(t.ppf(0.5 + LEVEL / 2, len(vals) - 1) * vals.std(ddof=1) / math.sqrt(len(vals)))
    lo, hi = METRIC_RANGE.get((metric or "").rpartition("/")[2], (-math.inf, math.inf))
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
    from bench.core.metrics import METRICS
    from bench.core.weighted_metrics import counts, weighted

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
    from bench.core.metrics import METRICS
    from bench.core.weighted_metrics import counts, weighted

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


@dataclass(frozen=True)
class Paired:
    """Two methods' test outputs paired by seed and aligned by example id."""

    seeds: tuple[int, ...]
    outputs_a: list[np.ndarray]
    outputs_b: list[np.ndarray]
    labels: list[np.ndarray]
    shared_items: bool  # every seed scored the same examples (aligned to one order)


def pair_predictions(
    store: Store, records_a: Sequence[Record], records_b: Sequence[Record], split: str = "test"
) -> Paired:
    """Load both methods' per-example outputs for the seeds they share and align them by example id. A ValueError
    says why they cannot be paired: no common seed, two records of one seed, a record without stored predictions,
    different examples (ids) or different labels for the same example."""
    by_a, by_b = _by_seed(records_a), _by_seed(records_b)
    by_a, by_b = _seedless(by_a, by_b), _seedless(by_b, by_a)
    seeds = tuple(sorted(set(by_a) & set(by_b)))
    if not seeds:
        raise ValueError(
            f"no seed in common: {_name(records_a)} has seeds {sorted(by_a)}, {_name(records_b)} has {sorted(by_b)}"
        )
    out_a, out_b, labels, id_sets = [], [], [], []
    reference: np.ndarray | None = None
    for seed in seeds:
        pa, pb = _split(store, by_a[seed], split), _split(store, by_b[seed], split)
        order_b = _align(pa["ids"], pb["ids"], by_a[seed], by_b[seed], split)
        if not np.array_equal(pa["labels"], pb["labels"][order_b]):
            raise ValueError(f"{by_a[seed].key} and {by_b[seed].key} give the same {split} examples different labels")
        if reference is None:
            reference, order_a = pa["ids"], np.arange(len(pa["ids"]))
        elif len(pa["ids"]) == len(reference) and set(pa["ids"].tolist()) == set(reference.tolist()):
            order_a = _align(reference, pa["ids"], by_a[seeds[0]], by_a[seed], split)
        else:
            order_a = np.arange(len(pa["ids"]))
        out_a.append(pa["outputs"][order_a])
        out_b.append(pb["outputs"][order_b][order_a])
        labels.append(pa["labels"][order_a])
        id_sets.append(frozenset(pa["ids"].tolist()))
    return Paired(seeds, out_a, out_b, labels, shared_items=len(set(id_sets)) == 1)


class CachedPredictions:
    """A Store whose ``predictions`` are read (and checksummed) once per record: a decision map pairs the best
    method with every other one, and gains pair every method with scratch."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[tuple[str, str], dict] = {}

    def predictions(self, record: Record) -> dict:
        key = (record.suite, record.key)
        if key not in self._cache:
            self._cache[key] = self._store.predictions(record)
        return self._cache[key]

    def __getattr__(self, name: str):
        return getattr(self._store, name)


def compare_records(
    store: Store,
    records_a: Sequence[Record],
    records_b: Sequence[Record],
    metric: str,
    split: str = "test",
    n_resamples: int = N_RESAMPLES,
) -> PairedDiff:
    """The bootstrap of ``metric`` between two methods' records (same task and budget): paired by seed over the
    seeds both have when those are enough for the seed rule; otherwise, when each method has enough seeds of its
    own (fewshot's 5 draws against 3 trained seeds), over all seeds of each with seeds unpaired
    (``unpaired_seeds_bootstrap``); otherwise paired over the common seeds (which the seed rule then refuses)."""
    a_name, b_name = _name(records_a), _name(records_b)
    by_a, by_b = _by_seed(records_a), _by_seed(records_b)
    common = len(set(_seedless(by_a, by_b)) & set(_seedless(by_b, by_a)))  # the seeds pair_predictions pairs
    if (
        common
        and not (enough_seeds(a_name, common) and enough_seeds(b_name, common))
        and enough_seeds(a_name, len(by_a))
        and enough_seeds(b_name, len(by_b))
        and a_name not in SEEDLESS
        and b_name not in SEEDLESS
    ):
        unpaired = _unpaired_outputs(store, records_a, records_b, split)
        if unpaired is not None:
            return unpaired_seeds_bootstrap(*unpaired, metric, n_resamples=n_resamples)
    p = pair_predictions(store, records_a, records_b, split)
    return paired_bootstrap(
        p.outputs_a, p.outputs_b, p.labels, metric, shared_items=p.shared_items, n_resamples=n_resamples
    )


def _unpaired_outputs(
    store: Store, records_a: Sequence[Record], records_b: Sequence[Record], split: str
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray] | None:
    """Every seed's outputs of both methods in one item order, or None when the seeds did not all score the same
    items (a per-seed test subset): then only pairing by seed can line the items up."""
    preds = [_split(store, r, split) for r in [*records_a, *records_b]]
    reference = preds[0]
    ref_ids = set(reference["ids"].tolist())
    if any(len(p["ids"]) != len(reference["ids"]) or set(p["ids"].tolist()) != ref_ids for p in preds):
        return None
    first = [*records_a, *records_b][0]
    outs = []
    for r, p in zip([*records_a, *records_b], preds, strict=True):
        order = _align(reference["ids"], p["ids"], first, r, split)
        if not np.array_equal(reference["labels"], p["labels"][order]):
            raise ValueError(f"{first.key} and {r.key} give the same {split} examples different labels")
        outs.append(p["outputs"][order])
    return outs[: len(records_a)], outs[len(records_a) :], reference["labels"]


def _seedless(mine: dict[int, Record], other: dict[int, Record]) -> dict[int, Record]:
    """A seedless method's single record stands for every seed of the other side (see ``SEEDLESS``)."""
    if len(mine) == 1 and next(iter(mine.values())).method in SEEDLESS and other:
        only = next(iter(mine.values()))
        return dict.fromkeys(other, only)
    return mine


def _by_seed(records: Sequence[Record]) -> dict[int, Record]:
    out: dict[int, Record] = {}
    for r in records:
        if r.seed in out:
            raise ValueError(
                f"two records of {r.task} x {r.method} @ {r.budget} seed {r.seed}: {out[r.seed].key}, {r.key}"
            )
        out[r.seed] = r
    return out


def _name(records: Sequence[Record]) -> str:
    return records[0].method if records else "(no records)"


def _split(store: Store, record: Record, split: str) -> dict[str, np.ndarray]:
    preds = store.predictions(record)
    if split not in preds:
        raise ValueError(f"record {record.key} has no {split} predictions (it has {', '.join(sorted(preds))})")
    return preds[split]


def _align(ids_a: np.ndarray, ids_b: np.ndarray, ra: Record, rb: Record, split: str) -> np.ndarray:
    """Indices that put ``ids_b`` in the order of ``ids_a``; a ValueError when they are not the same examples."""
    if len(np.unique(ids_a)) != len(ids_a) or len(np.unique(ids_b)) != len(ids_b):
        raise ValueError(f"repeated {split} example ids in {ra.key} or {rb.key}")
    if np.array_equal(ids_a, ids_b):
        return np.arange(len(ids_b))
    only_a, only_b = np.setdiff1d(ids_a, ids_b), np.setdiff1d(ids_b, ids_a)
    if len(only_a) or len(only_b):
        raise ValueError(
            f"{ra.key} and {rb.key} were scored on different {split} examples ({len(ids_a)} and {len(ids_b)} ids; "
            f"{len(only_a)} only in the first, {len(only_b)} only in the second): they cannot be paired"
        )
    position = {v: i for i, v in enumerate(ids_b.tolist())}
    return np.array([position[v] for v in ids_a.tolist()], dtype=np.int64)


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
    from bench.core.metrics import _softmax

    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim == 1:
        return outputs
    if outputs.shape[1] != 2:
        raise ValueError(f"DeLong's test is for binary tasks: outputs have {outputs.shape[1]} classes")
    return _softmax(outputs)[:, 1]


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
    return 1 if method in SEEDLESS else MIN_SEEDS_FOR.get(method, MIN_SEEDS)


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
