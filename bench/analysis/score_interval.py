"""The 95% interval of one method's mean test score over its seeds, counting both sources of noise: the seeds and the
test items. The leaderboards, summary.md and the table at a glance show it (``bench.analysis.tables``: ``Row.metrics``).

**Why.** A t-interval over seeds counts only the seeds' spread. Every seed is scored on the same test items, so the
item-sampling error they share never shows in that spread: a deterministic method (every seed identical) got a
zero-width interval although its score on N test items has a sampling error of its own, and three seeds that happen to
agree understate it. The comparisons (``bench.analysis.contrast``) already count both; this interval is the same
estimate for one method.

**The estimate.** ``bench.analysis.contrast``'s contrast ``D = mean_A m - weight * mean_B m - offset`` with
``weight = 0`` and ``offset = 0`` is one method's mean score over its S seeds. With a seed's score
``m_s = mu + u_s + g + h_s`` (seed effect, item error shared by every seed, item error particular to the seed),
``SE^2 = s^2/S + Var(g)``: ``s^2`` the spread of the per-seed scores (S - 1 df), ``Var(g)`` from bootstrap resamples
of the items drawn once for every seed (``bench.core.weighted_metrics``; 2,000 resamples, a fixed generator seed so a
page is reproducible). The interval is ``mean +- t * SE`` at the same degrees of freedom the comparisons use, clipped
to the metric's range (``bench.core.metrics.metric_range``). It is computed by contrast's own terms, so
``compare_outputs(A, B, labels, metric, weight=0)`` gives the same numbers (``tests/test_score_interval.py``).

**Kinds** (``Interval.kind``, named on the page):

- ``seeds+items``: two or more seeds with stored per-example predictions of the metric's split.
- ``items``: one seed (or a seedless method such as zeroshot, whose one record stands for every seed): only the
  items' part is known. For a method with seeds, the seeds' noise is missing from it, not zero.
- ``seeds``: no stored predictions (records written before they were kept), a metric predictions cannot give (a
  ``gap/`` metric, one not declared in ``bench.core.metrics``), predictions that do not reproduce the recorded score,
  or a metric undefined on most resamples: the t-interval over seeds of ``bench.analysis.stats.seed_summary``.

A deterministic cell gets the items' interval, never zero width (unless the items themselves cannot vary the score: a
constant predictor's AUROC, a perfect accuracy). Cost: one resampled metric per record and metric, read from the
predictions the report has already cached (``bench.analysis.pairing.CachedPredictions``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from bench.analysis.contrast import N_RESAMPLES, RNG_SEED, _difference, _paired_terms, _resampled
from bench.analysis.stats import ITEMS, SEEDS_ITEMS, Interval, seed_summary
from bench.core.metrics import METRICS, metric_name, metric_range, weighted
from bench.core.record import split_of
from bench.core.weighted_metrics import counts

if TYPE_CHECKING:
    from bench.core.record import Record
    from bench.core.store import Store

AGREE = 1e-9  # predictions must reproduce the recorded score to this: else they are not what the record measured
_CACHED_ELEMENTS = 4_000_000  # resamples x items of a draw of counts kept for the next cell (32 MB; two kept)


def score_interval(
    outputs: Sequence[np.ndarray],
    labels: Sequence[np.ndarray] | np.ndarray,
    metric: str,
    *,
    shared_items: bool = True,
    values: Sequence[float] | None = None,
    n_resamples: int = N_RESAMPLES,
    rng_seed: int = RNG_SEED,
) -> Interval:
    """The mean of ``metric`` over seeds (element s of ``outputs`` and ``labels``: seed s) with its 95% interval over
    seeds and items; ``labels`` one array serves every seed. ``shared_items``: every seed scored the same items in the
    same order. ``metric``: a name (``auroc``) or a key (``test/auroc``), clipped to its range. ``values``: each
    seed's score when already known (the records'), else computed. A ValueError when the metric is undefined on most
    resamples (a test set with a class missing from most resamples)."""
    name = metric_name(metric)
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r} (known: {', '.join(sorted(METRICS))})")
    xs = [np.asarray(x, dtype=np.float64) for x in outputs]
    if not xs:
        raise ValueError("a score interval needs at least one seed")
    ys = [np.asarray(v) for v in labels] if isinstance(labels, list | tuple) else [np.asarray(labels)] * len(xs)
    if len(ys) != len(xs) or any(len(x) != len(y) for x, y in zip(xs, ys, strict=True)):
        raise ValueError(f"{len(xs)} seeds of outputs ({[len(x) for x in xs]}) and labels ({[len(y) for y in ys]})")
    shared_items = shared_items and len({len(y) for y in ys}) == 1
    if values is None:
        values = [METRICS[name](x, y) for x, y in zip(xs, ys, strict=True)]
    values = np.asarray(values, dtype=np.float64)
    resampled = _resampled_scores(xs, ys, name, shared_items, n_resamples, rng_seed)
    defined = np.isfinite(resampled).all(axis=1)
    if defined.sum() < n_resamples / 2:
        raise ValueError(f"{name} is undefined on most resamples ({int(defined.sum())} of {n_resamples} defined)")
    n_items = max(len(y) for y in ys)
    terms, seed_var, item_var = _paired_terms(values, resampled[defined], n_items)
    d = _difference(name, float(values.mean()), terms, seed_var, item_var, len(xs), n_items, int(defined.sum()), None)
    lo, hi = metric_range(metric) or (-math.inf, math.inf)
    return Interval(d.diff, max(d.low, lo), min(d.high, hi), len(xs), SEEDS_ITEMS if len(xs) > 1 else ITEMS)


def _resampled_scores(xs, ys, name, shared_items, n_resamples, rng_seed) -> np.ndarray:
    """(R, S): each seed's metric on R bootstrap resamples of the items, the very draws ``bench.analysis.contrast``
    makes; a draw of shared items is kept for the next cell of the same test set (drawing it costs more than scoring
    it)."""
    n = len(ys[0])
    if shared_items and n * n_resamples <= _CACHED_ELEMENTS:
        W = _shared_counts(n, n_resamples, rng_seed)
        return np.stack([weighted(name, x, y, W) for x, y in zip(xs, ys, strict=True)], axis=1)
    return _resampled(xs, [], ys, [], name, shared_items, n_resamples, rng_seed)[0]


@lru_cache(maxsize=2)
def _shared_counts(n_items: int, n_resamples: int, rng_seed: int) -> np.ndarray:
    """The counts contrast's ``_resampled`` draws for one batch of shared items (read-only: it is shared)."""
    W = counts(np.random.default_rng(rng_seed), n_items, n_resamples)
    W.flags.writeable = False
    return W


def cell_intervals(store: Store, records: Sequence[Record], keys: Sequence[str]) -> dict[str, Interval]:
    """key -> the interval of one cell's (its records': one per seed) mean of each metric key (``test/auroc``):
    over seeds and items where the records' stored predictions of that split give the metric, else over seeds
    (``bench.analysis.stats.seed_summary``, kind ``seeds``). ``store``: best a ``CachedPredictions``."""
    preds = _predictions(store, records)
    return {k: _key_interval(preds, records, k) for k in keys}


def _key_interval(preds: list[dict] | None, records: Sequence[Record], key: str) -> Interval:
    recorded = [r.metrics.get(key) for r in records]
    fallback = seed_summary(recorded, key)
    split, name = split_of(key)
    if preds is None or name not in METRICS or key.startswith("gap/"):
        return fallback
    if any(split not in p for p in preds) or any(v is None or math.isnan(v) for v in recorded):
        return fallback
    outputs, labels, shared = _aligned([p[split] for p in preds])
    try:
        if not all(_agrees(name, o, y, v) for o, y, v in zip(outputs, labels, recorded, strict=True)):
            return fallback  # the stored predictions are not what the recorded score measured
        return score_interval(outputs, labels, key, shared_items=shared, values=recorded)
    except ValueError:
        return fallback  # undefined on most resamples, or outputs that do not fit the metric


def _agrees(name: str, outputs: np.ndarray, labels: np.ndarray, recorded: float) -> bool:
    """Whether the predictions give the recorded score (the resampled form on one unweighted copy of the items:
    the same number as the metric's own function, without scikit-learn's per-call overhead)."""
    score = weighted(name, outputs, labels, np.ones((1, len(labels)), dtype=np.int64))[0]
    return bool(abs(score - recorded) <= AGREE)


def _predictions(store: Store, records: Sequence[Record]) -> list[dict] | None:
    """Every record's stored predictions (split -> arrays), or None when one has none or they cannot be read."""
    if not records or not all(r.predictions for r in records):
        return None
    try:
        return [store.predictions(r) for r in records]
    except (ValueError, OSError):
        return None


def _aligned(arrays: Sequence[dict]) -> tuple[list[np.ndarray], list[np.ndarray], bool]:
    """Each seed's outputs and labels, in the first seed's item order when every seed scored the same items (then
    one draw of resampled items serves every seed); else each seed as stored, its items resampled on their own."""
    ids = [np.asarray(a["ids"]) for a in arrays]
    first = ids[0]
    same = all(len(i) == len(first) and len(np.unique(i)) == len(i) for i in ids) and all(
        np.array_equal(np.sort(i), np.sort(first)) for i in ids
    )
    if not same:
        return [a["outputs"] for a in arrays], [np.asarray(a["labels"]) for a in arrays], False
    outputs, labels = [], []
    for a, i in zip(arrays, ids, strict=True):
        order = np.argsort(i)[np.argsort(np.argsort(first))]  # positions of first's ids in i
        outputs.append(np.asarray(a["outputs"])[order])
        labels.append(np.asarray(a["labels"])[order])
    return outputs, labels, True
