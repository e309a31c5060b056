"""Task metrics from model outputs, via scikit-learn and scipy (no hand-rolled AUROC).

Classification outputs are logits (N, C); regression outputs are scores (N,). A metric that is undefined on
the given labels (e.g. AUROC when only one class is present) is NaN, never a made-up number.
"""

from __future__ import annotations

import math

import numpy as np


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float((outputs.argmax(axis=1) == labels).mean())


def auroc(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Binary: ROC-AUC of P(class 1). Multi-class: macro one-vs-rest ROC-AUC (as MedMNIST reports)."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(labels)) < 2:
        return math.nan
    probs = _softmax(outputs.astype(np.float64))
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


# the range of each metric's values: a t-interval over a few seeds of bounded scores can pass it (accuracy 1.01),
# plots keep their axes inside it, and the regression gate's noise floor is a proportion's on it
METRIC_RANGE = {
    "accuracy": (0.0, 1.0),
    "auroc": (0.0, 1.0),
    "f1": (0.0, 1.0),
    "mcc": (-1.0, 1.0),
    "pearson": (-1.0, 1.0),
    "spearman": (-1.0, 1.0),
}

METRICS = {
    "accuracy": accuracy,
    "auroc": auroc,
    "f1": f1,
    "mcc": mcc,
    "pearson": pearson,
    "spearman": spearman,
}


def compute(names: tuple[str, ...], outputs: np.ndarray, labels: np.ndarray, kind: str) -> dict[str, float]:
    outputs = np.asarray(outputs, dtype=np.float64)
    labels = np.asarray(labels)
    if kind == "classification" and outputs.ndim != 2:
        raise ValueError(f"classification outputs must be (N, C) logits, got shape {outputs.shape}")
    return {name: METRICS[name](outputs, labels) for name in names}
