"""Pairing two methods' records for a comparison: their per-example test outputs, read once per record
(``CachedPredictions``), lined up by seed and by example id (``pair_predictions``), and the test that fits them
(``compare_records``: paired by seed when the seeds both have are enough for the seed rule, else seeds unpaired with
the items still paired). The test itself is ``bench.analysis.contrast``; the seed rule is ``bench.analysis.stats``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bench.analysis.contrast import N_RESAMPLES, Difference, compare_outputs
from bench.analysis.stats import enough_seeds, seedless

if TYPE_CHECKING:
    from bench.core.record import Record
    from bench.core.store import Store


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
    weight: float = 1.0,
    offset: float = 0.0,
) -> Difference:
    """The test of ``metric`` between two methods' records (same task and budget; the contrast
    ``A - weight * B - offset``, by default A - B): paired by seed over the seeds both have when those are enough for
    the seed rule; otherwise, when each method has enough seeds of its own (fewshot's 5 draws against 3 trained
    seeds), over all seeds of each with seeds unpaired; otherwise paired over the common seeds (which the seed rule
    then refuses)."""
    a_name, b_name = _name(records_a), _name(records_b)
    by_a, by_b = _by_seed(records_a), _by_seed(records_b)
    common = len(set(_seedless(by_a, by_b)) & set(_seedless(by_b, by_a)))  # the seeds pair_predictions pairs
    if (
        common
        and not (enough_seeds(a_name, common) and enough_seeds(b_name, common))
        and enough_seeds(a_name, len(by_a))
        and enough_seeds(b_name, len(by_b))
        and not seedless(a_name)
        and not seedless(b_name)
    ):
        unpaired = _unpaired_outputs(store, records_a, records_b, split)
        if unpaired is not None:
            return compare_outputs(
                *unpaired, metric, paired=False, weight=weight, offset=offset, n_resamples=n_resamples
            )
    p = pair_predictions(store, records_a, records_b, split)
    return compare_outputs(
        p.outputs_a,
        p.outputs_b,
        p.labels,
        metric,
        shared_items=p.shared_items,
        weight=weight,
        offset=offset,
        n_resamples=n_resamples,
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
    """A seedless method's single record stands for every seed of the other side (``Method.seedless``)."""
    if len(mine) == 1 and seedless(next(iter(mine.values())).method) and other:
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
