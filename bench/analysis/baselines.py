"""What a cell must beat to have learned anything, from the test labels alone, and whether it did.

- ``majority`` scores the constant majority-class predictor with the task's metric (AUROC 0.5, MCC 0, F1 of always
  predicting the majority class); ``chance`` is the metric's declared chance level (``bench.core.metrics``: the
  expected score of predicting a uniformly random class: accuracy 1/C, AUROC 0.5, MCC and correlations 0, F1 its
  large-sample value). Regression has no majority class: a constant has no correlation, so its reference is chance.
- A cell "did not learn" when the interval of its primary metric over seeds reaches the majority baseline; with
  one seed and stored predictions, when the paired bootstrap against the majority predictor cannot tell them apart.

The labels come from the predictions stored beside the records; for records written before those were kept, from
the task's data in the data root (``data_test_labels``), the one place where an analysis reads a dataset.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bench.analysis.contrast import Difference, compare_outputs
from bench.analysis.stats import Interval
from bench.catalog import TASKS
from bench.core import metrics
from bench.core.data import DataError, DataRoot

if TYPE_CHECKING:
    from bench.core.api import TaskSpec
    from bench.core.record import Record
    from bench.core.store import Store


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


def of_labels(spec: TaskSpec, labels: np.ndarray) -> Baselines:
    """Majority-class and chance scores of the task's primary metric on these (test) labels."""
    metric = spec.primary_metric
    labels = np.asarray(labels)
    if spec.kind == "regression":
        return Baselines(metric, math.nan, metrics.chance(metric, labels, 1), len(labels))
    majority = metrics.METRICS[metric](majority_outputs(labels, spec.num_labels), labels)
    return Baselines(metric, float(majority), metrics.chance(metric, labels, spec.num_labels), len(labels))


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
    try:
        task = TASKS.get(record.task)(**record.hparams.get("task", {}))
        splits = task.load(DataRoot.resolve())
    except (DataError, OSError, RuntimeError, TypeError, ValueError, KeyError):  # baselines stay unknown
        return None
    limit = record.hparams.get("train", {}).get("eval_limit", 0)
    if limit:
        splits = splits.limit_eval(limit, stratify=task.spec.kind == "classification")
    return splits.test.labels


def noise_vs_majority(store: Store, record: Record, spec: TaskSpec) -> Difference | None:
    """One record's test metric against the majority predictor on the same items: the item term of the seed-aware
    test (one seed: no seed term; None without stored predictions, or for regression, where there is no majority
    predictor)."""
    if spec.kind == "regression" or not record.predictions:
        return None
    try:
        test = store.predictions(record)["test"]
    except (ValueError, KeyError):  # altered or missing file, or no test split: no paired noise to offer
        return None
    constant = majority_outputs(test["labels"], spec.num_labels)
    return compare_outputs([test["outputs"]], [constant], [test["labels"]], spec.primary_metric)


def did_not_learn(spec: TaskSpec, baseline: float, interval: Interval, noise: Difference | None = None) -> bool:
    """Whether a cell's primary metric is indistinguishable from (or worse than) the ``baseline``: its interval
    over seeds reaches the baseline; with one seed, the paired ``noise`` against the majority predictor includes
    zero (or, without predictions, the value is not above the baseline)."""
    if math.isnan(baseline) or interval.n == 0 or math.isnan(interval.mean):
        return False
    sign = spec.sign
    if interval.has_interval:
        nearest = interval.low if spec.higher_is_better else interval.high
        return sign * (nearest - baseline) <= 0
    if noise is not None:  # record - majority: learned only when the paired interval is clear of zero
        return not (noise.low > 0 if spec.higher_is_better else noise.high < 0)
    return sign * (interval.mean - baseline) <= 0
