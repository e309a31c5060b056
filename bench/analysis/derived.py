"""Measures derived from records: sanity baselines, did-not-learn, sample-efficiency area, gain over scratch and
Pareto fronts (the decision map is ``bench.analysis.decision_map``). Every comparison between methods goes through
``bench.analysis.stats`` (paired bootstrap on per-example predictions, and the seed rule), so the CLI summary and the
report say the same thing.

- Baselines come from the test labels alone: ``majority`` scores the constant majority-class predictor with
  ``bench.core.metrics`` (AUROC 0.5, MCC 0, F1 of always predicting the majority class); ``chance`` is the expected
  score of predicting a uniformly random class (accuracy 1/C, AUROC 0.5, MCC and correlations 0, F1 its
  large-sample value). Regression has no majority class: a constant has no correlation, so its reference is chance.
- A cell "did not learn" when the interval of its primary metric over seeds reaches the majority baseline; with
  one seed and stored predictions, when the paired bootstrap against the majority predictor cannot tell them apart.
- The sample-efficiency area is the trapezoid area under metric vs log(budget) divided by the log-range of the
  budgets: the mean height of the curve on a log axis, in the metric's units. Budget 0 (the whole pool) counts as
  its training-set size. Its interval is over seeds whose curve has every budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from bench.analysis.stats import (
    LOSES,
    NOT_ENOUGH_SEEDS,
    Interval,
    PairedDiff,
    compare_records,
    paired_bootstrap,
    seed_summary,
    verdict,
)
from bench.probes import held_out

if TYPE_CHECKING:
    from bench.core.api import TaskSpec
    from bench.core.record import Record
    from bench.core.store import Store

SCRATCH = "scratch"
SpecOf = Callable[[str], "TaskSpec"]


def registry_spec(task: str) -> TaskSpec:
    """The TaskSpec of a registered task (the default ``spec_of``)."""
    from bench.core.registry import TASKS, load_all

    load_all()
    return TASKS.get(task).spec


# --------------------------------------------------------------------------------------------- baselines
@dataclass(frozen=True)
class Baselines:
    metric: str
    majority: float  # the constant majority-class predictor (NaN for regression)
    chance: float  # expected score of a uniformly random class
    n_items: int

    @property
    def reference(self) -> float:
        """What a cell must beat to have learned anything: the majority predictor, or chance where it has none."""
        return self.chance if math.isnan(self.majority) else self.majority


def majority_outputs(labels: np.ndarray, num_labels: int) -> np.ndarray:
    """(N, C) logits of always predicting the most frequent class of ``labels``."""
    labels = np.asarray(labels)
    n_classes = max(num_labels, int(labels.max()) + 1)
    out = np.zeros((len(labels), n_classes))
    out[:, int(np.bincount(labels, minlength=n_classes).argmax())] = 1.0
    return out


def chance_score(metric: str, labels: np.ndarray, num_labels: int) -> float:
    """Expected score of predicting each class with probability 1/C, independently of the input."""
    if metric in ("auroc",):
        return 0.5
    if metric in ("mcc", "pearson", "spearman"):
        return 0.0
    if metric == "accuracy":
        return 1.0 / num_labels
    if metric == "f1":  # per class c: 2 p_c / (1 + C p_c) (expected counts); binary F1 scores class 1 only
        prevalence = np.bincount(np.asarray(labels), minlength=num_labels)[:num_labels] / len(labels)
        per_class = 2 * prevalence / (1 + num_labels * prevalence)
        return float(per_class[1] if num_labels == 2 else per_class.mean())
    raise ValueError(f"no chance level for metric {metric!r}")


def baselines(spec: TaskSpec, labels: np.ndarray) -> Baselines:
    """Majority-class and chance scores of the task's primary metric on these (test) labels."""
    from bench.core import metrics

    metric = spec.primary_metric
    labels = np.asarray(labels)
    if spec.kind == "regression":
        return Baselines(metric, math.nan, chance_score(metric, labels, 1), len(labels))
    majority = metrics.METRICS[metric](majority_outputs(labels, spec.num_labels), labels)
    return Baselines(metric, float(majority), chance_score(metric, labels, spec.num_labels), len(labels))


def stored_test_labels(store: Store, records: Sequence[Record], split: str = "test") -> np.ndarray | None:
    """The test labels from the first of ``records`` whose predictions are stored and intact (None: none are)."""
    for r in records:
        if r.ok and r.predictions:
            try:
                preds = store.predictions(r)
            except ValueError:
                continue
            if split in preds:
                return preds[split]["labels"]
    return None


def data_test_labels(record: Record) -> np.ndarray | None:
    """The test labels of ``record``'s task read from the data root (its task settings and ``eval_limit``), for
    records written before predictions were stored. None when the data cannot be read."""
    from bench.core.data import DataError, DataRoot
    from bench.core.registry import TASKS, load_all

    load_all()
    try:
        task = TASKS.get(record.task)(**record.hparams.get("task", {}))
        splits = task.load(DataRoot.resolve())
    except (DataError, OSError, RuntimeError, TypeError, ValueError, KeyError):  # baselines stay unknown
        return None
    limit = record.hparams.get("train", {}).get("eval_limit", 0)
    if limit:
        splits = splits.limit_eval(limit, stratify=task.spec.kind == "classification")
    return splits.test.labels


# -------------------------------------------------------------------------------------- did not learn
def noise_vs_majority(store: Store, record: Record, spec: TaskSpec) -> PairedDiff | None:
    """Paired bootstrap of one record's test metric against the majority predictor on the same items (None without
    stored predictions, or for regression, where there is no majority predictor)."""
    if spec.kind == "regression" or not record.predictions:
        return None
    try:
        test = store.predictions(record)["test"]
    except (ValueError, KeyError):  # altered or missing file, or no test split: no paired noise to offer
        return None
    constant = majority_outputs(test["labels"], spec.num_labels)
    return paired_bootstrap([test["outputs"]], [constant], [test["labels"]], spec.primary_metric)


def did_not_learn(spec: TaskSpec, baseline: float, interval: Interval, noise: PairedDiff | None = None) -> bool:
    """Whether a cell's primary metric is indistinguishable from (or worse than) the ``baseline``: its interval
    over seeds reaches the baseline; with one seed, the paired ``noise`` against the majority predictor includes
    zero (or, without predictions, the value is not above the baseline)."""
    if math.isnan(baseline) or interval.n == 0 or math.isnan(interval.mean):
        return False
    sign = 1.0 if spec.higher_is_better else -1.0
    if interval.has_interval:
        nearest = interval.low if spec.higher_is_better else interval.high
        return sign * (nearest - baseline) <= 0
    if noise is not None:  # record - majority: learned only when the paired interval is clear of zero
        return not (noise.low > 0 if spec.higher_is_better else noise.high < 0)
    return sign * (interval.mean - baseline) <= 0


def still_improving(record: Record) -> bool:
    """The run ended by its length (step cap or fixed schedule), not by patience, and its best validation pass was
    its last: it was still improving when stopped, so a longer run may score higher."""
    sel = record.selection
    if sel is None or sel.best_step is None or sel.stopped_by not in ("cap", "schedule end") or len(sel.history) < 2:
        return False
    last = sel.stopped_at if sel.stopped_at is not None else sel.history[-1].get("step")
    return sel.best_step == last


# ------------------------------------------------------------------------------------ sample efficiency
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


# --------------------------------------------------------------------------------------------- cells
@dataclass
class MethodCell:
    """One method at one task and budget: its ok records over seeds and their means."""

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
    records: Sequence[Record], spec_of: SpecOf = registry_spec
) -> dict[tuple[str, int], dict[str, MethodCell]]:
    """(task, budget) -> method -> MethodCell, from ok records; ``spec_of(task)`` gives the TaskSpec."""
    groups: dict[tuple[str, int, str], list[Record]] = {}
    for r in records:
        if r.ok:
            groups.setdefault((r.task, r.budget, r.method), []).append(r)
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


def _mean(values) -> float:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else math.nan


# ------------------------------------------------------------------------------------ gain over scratch
@dataclass(frozen=True)
class Gain:
    """metric(method) - metric(scratch) at one budget: paired bootstrap when both have predictions for common
    seeds, else the difference of seed means with Welch's t-interval."""

    method: str
    budget: int
    diff: float
    low: float
    high: float
    n_seeds: int
    paired: bool
    verdict: str  # bench.analysis.stats verdict of method vs scratch

    @property
    def negative_transfer(self) -> bool:
        """Pretrained worse than scratch: the interval entirely on the wrong side of 0, with enough seeds."""
        return self.verdict == LOSES

    def describe(self) -> str:
        interval = "" if math.isnan(self.low) else f" [{self.low:+.3f}, {self.high:+.3f}]"
        return f"{self.diff:+.3f}{interval}{'' if self.paired else ' (unpaired)'}"


def gain_over_scratch(store: Store, cell: MethodCell, scratch: MethodCell, spec: TaskSpec) -> Gain:
    metric = spec.primary_metric
    if cell.has_predictions and scratch.has_predictions:
        try:
            d = compare_records(store, cell.records, scratch.records, metric)
        except ValueError:
            d = None
        if d is not None:
            v = d.verdict(cell.method, SCRATCH, spec.higher_is_better)
            return Gain(cell.method, cell.budget, d.diff, d.low, d.high, d.n_seeds, True, v)
    a = [v for v in (r.test_metric(metric) for r in cell.records) if not math.isnan(v)]
    b = [v for v in (r.test_metric(metric) for r in scratch.records) if not math.isnan(v)]
    diff = float(np.mean(a) - np.mean(b)) if a and b else math.nan
    low = high = math.nan
    if len(a) >= 2 and len(b) >= 2 and (np.std(a) > 0 or np.std(b) > 0):
        from scipy.stats import ttest_ind

        ci = ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
        low, high = float(ci.low), float(ci.high)
    n = min(len(a), len(b))
    v = verdict(cell.method, SCRATCH, low, high, n, spec.higher_is_better) if not math.isnan(low) else NOT_ENOUGH_SEEDS
    return Gain(cell.method, cell.budget, diff, low, high, n, False, v)


# --------------------------------------------------------------------------------------------- Pareto
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
