"""A method at one task and budget, over its seeds (``MethodCell``), and what is measured across such cells: the gain
over scratch at the same budget, the Pareto fronts of metric against each cost, and the sample-efficiency area.
Every comparison between methods goes through ``bench.analysis.pairing`` (the paired bootstrap on per-example
predictions) and the seed rule of ``bench.analysis.stats``, so the summary and the report say the same thing.

The sample-efficiency area is the trapezoid area under metric vs log(budget) divided by the log-range of the budgets:
the mean height of the curve on a log axis, in the metric's units. Budget 0 (the whole pool) counts as its
training-set size. Its interval is over seeds whose curve has every budget.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from bench import catalog
from bench.analysis.contrast import WORSE, Difference, adjusted, welch
from bench.analysis.pairing import compare_records
from bench.analysis.stats import NOT_ENOUGH_SEEDS, Interval, enough_seeds, holm, seed_summary
from bench.catalog import held_out

if TYPE_CHECKING:
    from bench.core.api import TaskSpec
    from bench.core.record import Record
    from bench.core.store import Store

SCRATCH = "scratch"  # the method every other is held against for the gain over scratch (negative transfer)
SpecOf = Callable[[str], "TaskSpec"]


@dataclass
class MethodCell:
    """One method at one task and budget, on one backbone's weights and one version of the data: its ok records over
    seeds and their means. ``method`` is the row's key (``method_cells``): the method's name, and after it the backbone
    when it is not the method's default on the task (``lora @ hf:/models/my-encoder``)."""

    task: str
    method: str
    budget: int
    records: list[Record]
    primary: Interval
    forgetting: float  # mean drop (NaN: no forgetting measured, e.g. scratch)
    trainable: float
    peak_mem_bytes: float
    train_time_s: float
    has_predictions: bool
    flags: list[str] = field(default_factory=list)


def method_cells(
    records: Sequence[Record], spec_of: SpecOf = catalog.spec
) -> dict[tuple[str, int], dict[str, MethodCell]]:
    """(task, budget) -> row key -> MethodCell, from ok records; ``spec_of(task)`` gives the TaskSpec.

    Records pool as seeds only when they ran the same method on the same backbone weights and the same data: the row
    key is the method's name for its default backbone on the task (``Method.backbone_for``, else the task's), and
    ``<method> @ <backbone>`` for any other backbone (``row_keys``), so every existing report keeps its plain names."""
    keys = row_keys([r for r in records if r.ok], spec_of)
    groups: dict[tuple[str, int, str], list[Record]] = {}
    for r in records:
        if r.ok:
            groups.setdefault((r.task, r.budget, keys[id(r)]), []).append(r)
    out: dict[tuple[str, int], dict[str, MethodCell]] = {}
    for (task, budget, method), rs in sorted(groups.items()):
        primary = spec_of(task).primary_metric
        out.setdefault((task, budget), {})[method] = MethodCell(
            task=task,
            method=method,
            budget=budget,
            records=sorted(rs, key=lambda r: r.seed),
            primary=seed_summary([r.test_metric(primary) for r in rs], primary),
            forgetting=_mean(
                r.forgetting.drop if r.forgetting and held_out(r.forgetting.probe, r.task) else None for r in rs
            ),  # a probe on the task's own data is not forgetting (bench.probes.held_out)
            trainable=_mean(r.params.trainable if r.params else None for r in rs),
            peak_mem_bytes=_mean(r.cost.peak_mem_bytes if r.cost else None for r in rs),
            train_time_s=_mean(r.cost.train_time_s if r.cost else None for r in rs),
            has_predictions=all(r.predictions for r in rs),
            flags=sorted({f for r in rs for f in r.flags}),
        )
    return out


# ----------------------------------------------------------------------------------------- row identity
def base_method(key: str) -> str:
    """The registered method a row key names: its first word (registry names hold no space)."""
    return key.split(" ", 1)[0]


def variant(key: str) -> str:
    """What a row key says after the method's name (" @ hf:/models/x", " [data 1a2b3c4d]"; "" for a plain name)."""
    return key[len(base_method(key)) :]


def default_backbones(records: Sequence[Record], spec_of: SpecOf = catalog.spec) -> dict[tuple[str, str], str]:
    """(task, method) -> the backbone whose rows keep the method's plain name: the one the method needs on the task
    (``Method.backbone_for``: a causal LM for prompting), else the task's default backbone when any of the task's
    records ran on it, else (a suite that runs the whole task on another backbone, or an unregistered task) the
    backbone most of the task's records ran on (ties: by name)."""
    by_task: dict[str, list[Record]] = {}
    for r in records:
        by_task.setdefault(r.task, []).append(r)
    out = {}
    for task, rs in by_task.items():
        spec = spec_of(task)
        registered = getattr(spec, "backbone", None)  # None: a task this checkout does not register
        counts = Counter(r.backbone for r in rs)
        reference = registered if registered in counts else min(counts, key=lambda b: (-counts[b], b))
        for method in {r.method for r in rs}:
            role = catalog.method_class(method).backbone_for(spec) if registered is not None else None
            out[(task, method)] = role or reference
    return out


def row_keys(records: Sequence[Record], spec_of: SpecOf = catalog.spec) -> dict[int, str]:
    """id(record) -> the key of the row it is a seed of. Records share a row when they share the task, the budget,
    the method, the backbone, the backbone's weights (``Record.backbone_identity``: a folder's digest, a hub commit)
    and the data (a declared dataset's content fingerprint, ``Record.dataset``). The key is readable and stable:

    - ``lora``: the method on its default backbone (``default_backbones``), as every report has always named it;
    - ``lora @ hf:/models/my-encoder``: on another backbone;
    - `` [weights 1a2b3c4d]`` after it when records of one backbone name on a task carry different weights (the first
      8 characters of the digest or commit; "unknown": a hub model not in the cache; "not recorded": an older record);
    - `` [data 1a2b3c4d]`` when records of one task carry different data fingerprints.
    A key another group already has gets `` #2``, `` #3``..., so two groups never share a row."""
    defaults = default_backbones(records, spec_of)
    weights: dict[tuple[str, str], set[str]] = {}
    data: dict[str, set[str]] = {}
    for r in records:
        weights.setdefault((r.task, r.backbone), set()).add(_weights(r))
        data.setdefault(r.task, set()).add(_data(r))

    def group(r: Record) -> tuple[str, ...]:  # what must be equal for two records to be seeds of one row
        ident = json.dumps(r.backbone_identity, sort_keys=True)
        return (r.method, r.backbone, ident, str((r.dataset or {}).get("fingerprint") or ""))

    keys: dict[int, str] = {}
    taken: dict[tuple[str, str], tuple[str, ...]] = {}  # (task, key) -> the group that has it
    for r in sorted(records, key=lambda r: (r.task, *group(r))):
        key = r.method
        if r.backbone and r.backbone != defaults[(r.task, r.method)]:
            key += f" @ {r.backbone}"
        if len(weights[(r.task, r.backbone)]) > 1:
            key += f" [weights {_weights(r)}]"
        if len(data[r.task]) > 1:
            key += f" [data {_data(r)}]"
        unique, n = key, 1
        while taken.setdefault((r.task, unique), group(r)) != group(r):
            n += 1
            unique = f"{key} #{n}"
        keys[id(r)] = unique
    return keys


def _weights(r: Record) -> str:
    """A short name of the record's backbone weights (``Backbone.identity``) for a row key."""
    ident = r.backbone_identity
    if ident is None:
        return "not recorded"
    return str(ident.get("sha256") or ident.get("revision") or "unknown")[:8]


def _data(r: Record) -> str:
    """A short name of the record's data: a declared dataset's content fingerprint ("" for a built-in task, whose
    files are pinned by checksums)."""
    return str((r.dataset or {}).get("fingerprint") or "none")[:8]


def _mean(values) -> float:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else math.nan


def effective_budget(record: Record) -> int | None:
    """Labelled examples the cell trained on: its budget, or for budget 0 (all) its training-set size."""
    if record.budget:
        return record.budget
    return record.splits.train if record.splits else None


def normalised_auc(budgets: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoid area under ``values`` over log(budget), divided by the log-range: the curve's mean height."""
    b, v = np.asarray(budgets, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if len(b) != len(v) or len(np.unique(b)) < 2 or (b <= 0).any():
        raise ValueError(f"need two or more distinct positive budgets with one value each, got {list(b)}")
    order = np.argsort(b)
    x = np.log(b[order])
    return float(np.trapezoid(v[order], x) / (x[-1] - x[0]))


def sample_efficiency_auc(curves: Mapping[int, Mapping[int, float]]) -> Interval:
    """Normalised area per seed (``seed -> {budget: value}``), summarised over the seeds whose curve has every
    budget any seed has; an empty interval (n=0) with fewer than two budgets or no complete seed."""
    budgets = sorted({b for curve in curves.values() for b in curve})
    if len(budgets) < 2:
        return Interval(math.nan, math.nan, math.nan, 0)
    areas = [
        normalised_auc(budgets, [curve[b] for b in budgets])
        for curve in curves.values()
        if all(b in curve and not math.isnan(curve[b]) for b in budgets)
    ]
    return seed_summary(areas)


@dataclass(frozen=True)
class Gain:
    """metric(method) - metric(scratch) at one budget: the seed-aware test (``bench.analysis.contrast``) when both
    have stored predictions, else Welch's t-test on the seed means; the gains of a report are one family, adjusted
    together (``adjust_gains``)."""

    method: str
    budget: int
    diff: float
    low: float
    high: float
    n_seeds: int
    paired: bool
    d: Difference | None  # None: not enough seeds on a side to test
    higher_is_better: bool = True

    @property
    def outcome(self) -> str:
        """The method against scratch: better, worse, equivalent, undecided; "not enough seeds" without a test."""
        return self.d.outcome(self.higher_is_better) if self.d is not None else NOT_ENOUGH_SEEDS

    @property
    def negative_transfer(self) -> bool:
        """Pretrained significantly worse than scratch (after the family's adjustment)."""
        return self.outcome == WORSE

    def describe(self) -> str:
        interval = "" if math.isnan(self.low) else f" [{self.low:+.3f}, {self.high:+.3f}]"
        return f"{self.diff:+.3f}{interval}{'' if self.paired else ' (unpaired)'}"


def gain_over_scratch(store: Store, cell: MethodCell, scratch: MethodCell, spec: TaskSpec) -> Gain:
    """The method against scratch at one budget; without the seed rule's seeds on both sides the interval is shown
    but no verdict is drawn (``outcome``: not enough seeds)."""
    metric = spec.primary_metric
    d, paired = None, False
    if cell.has_predictions and scratch.has_predictions:
        try:
            d, paired = compare_records(store, cell.records, scratch.records, metric), True
        except ValueError:
            d = None
    if d is None:
        d = welch(
            [r.test_metric(metric) for r in cell.records], [r.test_metric(metric) for r in scratch.records], metric
        )
    if d is None:
        a = [v for v in (r.test_metric(metric) for r in cell.records) if not math.isnan(v)]
        b = [v for v in (r.test_metric(metric) for r in scratch.records) if not math.isnan(v)]
        diff = float(np.mean(a) - np.mean(b)) if a and b else math.nan
        return Gain(cell.method, cell.budget, diff, math.nan, math.nan, min(len(a), len(b)), False, None)
    decided = enough_seeds(cell.method, d.n_seeds) and enough_seeds(SCRATCH, d.seeds_b)
    n = min(d.n_seeds, d.seeds_b)
    return Gain(
        cell.method, cell.budget, d.diff, d.low, d.high, n, paired, d if decided else None, spec.higher_is_better
    )


def adjust_gains(gains: Sequence[Gain]) -> list[Gain]:
    """The gains over scratch of a report as one family: their p-values Holm-adjusted together."""
    tested = [i for i, g in enumerate(gains) if g.d is not None]
    p = holm([gains[i].d.p for i in tested])
    p_eq = holm([gains[i].d.p_equivalent for i in tested])
    out = list(gains)
    for i, pi, qi in zip(tested, p, p_eq, strict=True):
        out[i] = replace(gains[i], d=adjusted(gains[i].d, pi, qi))
    return out


def pareto_front(points: Mapping[str, Sequence[float]], maximise: Sequence[bool]) -> list[str]:
    """Names of the non-dominated points: no other point is at least as good on every axis and better on one.
    ``maximise[i]`` says which way axis i points; points with a NaN coordinate are left out."""
    names = [n for n, p in points.items() if len(p) == len(maximise) and not any(math.isnan(v) for v in p)]
    if not names:
        return []
    sign = np.where(np.asarray(maximise), 1.0, -1.0)
    x = np.array([points[n] for n in names], dtype=np.float64) * sign  # every axis: larger is better
    at_least = (x[:, None, :] >= x[None, :, :]).all(axis=2)  # [i, j]: i at least as good as j everywhere
    better = (x[:, None, :] > x[None, :, :]).any(axis=2)
    dominated = (at_least & better).any(axis=0)
    return [n for n, d in zip(names, dominated, strict=True) if not d]


PARETO_AXES = {  # name -> (MethodCell attribute, larger is better)
    "forgetting": ("forgetting", False),
    "trainable params": ("trainable", False),
    "peak memory": ("peak_mem_bytes", False),
    "train time": ("train_time_s", False),
}


def pareto_fronts(cells: Mapping[str, MethodCell], higher_is_better: bool = True) -> dict[str, list[str]]:
    """For each cost axis, the methods on the front of mean primary metric vs that cost."""
    return {
        axis: pareto_front(
            {m: (c.primary.mean, getattr(c, attr)) for m, c in cells.items()}, (higher_is_better, larger_better)
        )
        for axis, (attr, larger_better) in PARETO_AXES.items()
    }
