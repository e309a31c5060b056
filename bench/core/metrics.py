"""Task metrics: one declaration per metric (``METRICS``), holding everything the benchmark knows about it.

A ``Metric`` is its function on model outputs (scikit-learn and scipy, no hand-rolled AUROC), its range, its
direction, its chance level and its resampled form (``bench.core.weighted_metrics``: the same score on many bootstrap
resamples at once). Tasks name their metrics; intervals are clipped to the range, plots keep their axes inside it,
the regression gate's noise floor is a proportion's on it, the did-not-learn baseline is its chance level, and the
paired bootstrap recomputes it through its resampled form. A metric a task names must be declared here, with all of
these: a new primary metric is one entry, and nothing downstream has to learn its name.

Classification outputs are logits (N, C); regression outputs are scores (N,). A metric that is undefined on the
given labels (e.g. AUROC when only one class is present) is NaN, never a made-up number.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.core import weighted_metrics as resampled
from bench.core.weighted_metrics import softmax


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float((outputs.argmax(axis=1) == labels).mean())


def auroc(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Binary: ROC-AUC of P(class 1). Multi-class: macro one-vs-rest ROC-AUC (as MedMNIST reports)."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(labels)) < 2:
        return math.nan
    probs = softmax(outputs.astype(np.float64))
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=np.arange(probs.shape[1])))


def f1(outputs: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(labels, outputs.argmax(axis=1), average="binary" if outputs.shape[1] == 2 else "macro"))


def mcc(outputs: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(labels, outputs.argmax(axis=1)))


def pearson(outputs: np.ndarray, labels: np.ndarray) -> float:
    from scipy.stats import pearsonr

    return float(pearsonr(outputs.reshape(-1), labels).statistic)


def spearman(outputs: np.ndarray, labels: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(outputs.reshape(-1), labels).statistic)


# ------------------------------------------------------------------------------------------- chance levels
def _constant(value: float) -> Callable[[np.ndarray, int], float]:
    return lambda labels, num_labels: value


def _chance_accuracy(labels: np.ndarray, num_labels: int) -> float:
    return 1.0 / num_labels


def _chance_f1(labels: np.ndarray, num_labels: int) -> float:
    """Per class c: 2 p_c / (1 + C p_c) (expected counts); binary F1 scores class 1 only."""
    prevalence = np.bincount(np.asarray(labels), minlength=num_labels)[:num_labels] / len(labels)
    per_class = 2 * prevalence / (1 + num_labels * prevalence)
    return float(per_class[1] if num_labels == 2 else per_class.mean())


@dataclass(frozen=True)
class Metric:
    """Everything about one metric. ``chance(labels, num_labels)``: the expected score of predicting each class with
    probability 1/C, independently of the input (regression: a constant has no correlation, so 0).
    ``resampled(outputs, labels, W)``: the score on every row of bootstrap counts ``W`` (R, N). ``margin``: the
    smallest difference that matters in practice; two methods closer than it are equivalent (``bench.analysis.
    contrast``): a point of accuracy, 0.01 of AUROC, 0.02 of MCC (a range twice as wide)."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    range: tuple[float, float]
    higher_is_better: bool
    chance: Callable[[np.ndarray, int], float]
    resampled: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    margin: float

    def __call__(self, outputs: np.ndarray, labels: np.ndarray) -> float:
        return self.fn(outputs, labels)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", accuracy, (0.0, 1.0), True, _chance_accuracy, resampled.accuracy, 0.01),
        Metric("auroc", auroc, (0.0, 1.0), True, _constant(0.5), resampled.auroc, 0.01),
        Metric("f1", f1, (0.0, 1.0), True, _chance_f1, resampled.f1, 0.01),
        Metric("mcc", mcc, (-1.0, 1.0), True, _constant(0.0), resampled.mcc, 0.02),
        Metric("pearson", pearson, (-1.0, 1.0), True, _constant(0.0), resampled.pearson, 0.01),
        Metric("spearman", spearman, (-1.0, 1.0), True, _constant(0.0), resampled.spearman, 0.01),
    )
}


def metric_name(key: str) -> str:
    """The metric of a metric key: ``test/auroc`` -> ``auroc`` (a bare name stays itself)."""
    return key.rpartition("/")[2]


def metric_range(name: str) -> tuple[float, float] | None:
    """The range of a metric (or of a metric key such as ``test/accuracy``); None for a name not declared here. A
    ``gap/`` key (in-domain minus out-of-domain) spans the difference of two scores: [lo - hi, hi - lo]."""
    metric = METRICS.get(metric_name(name))
    if metric is None:
        return None
    lo, hi = metric.range
    return (lo - hi, hi - lo) if name.startswith("gap/") else (lo, hi)


def chance(name: str, labels: np.ndarray, num_labels: int) -> float:
    """The chance level of a metric on these labels (NaN for a metric not declared here: no reference line)."""
    metric = METRICS.get(metric_name(name))
    return metric.chance(np.asarray(labels), num_labels) if metric else math.nan


def compute(names: tuple[str, ...], outputs: np.ndarray, labels: np.ndarray, kind: str) -> dict[str, float]:
    outputs = np.asarray(outputs, dtype=np.float64)
    labels = np.asarray(labels)
    if kind == "classification" and outputs.ndim != 2:
        raise ValueError(f"classification outputs must be (N, C) logits, got shape {outputs.shape}")
    return {name: METRICS[name](outputs, labels) for name in names}


def weighted(name: str, outputs: np.ndarray, labels: np.ndarray, W: np.ndarray) -> np.ndarray:
    """The metric ``name`` for every row of ``W`` (R, N): the resample where item i appears ``W[r, i]`` times."""
    if name not in METRICS:
        raise ValueError(f"no resampled form of metric {name!r} (known: {', '.join(sorted(METRICS))})")
    outputs = np.asarray(outputs, dtype=np.float64)
    W = np.asarray(W)
    if W.ndim != 2 or W.shape[1] != len(labels):
        raise ValueError(f"weights must be (resamples, {len(labels)}), got {W.shape}")
    # integer counts whose row sums stay below 2**24 are exact in float32: half the memory traffic of float64;
    # every metric returns to float64 before products of sums
    exact = np.issubdtype(W.dtype, np.integer) and len(labels) < 2**24
    W = W.astype(np.float32 if exact else np.float64)
    return METRICS[name].resampled(outputs, np.asarray(labels), W)
