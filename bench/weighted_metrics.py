"""Task metrics on many bootstrap resamples at once: each resample is a row of per-example counts.

A bootstrap resample of N test items is a count vector ``w`` (how often each item was drawn); a metric on the
resample equals the metric on the items repeated ``w`` times. ``weighted(name, outputs, labels, W)`` computes
``bench.metrics.METRICS[name]`` for every row of ``W`` (R, N) in a few array operations instead of R calls into
scikit-learn, which is what makes 2,000 paired resamples over thousands of items take milliseconds. Written by
hand because neither scikit-learn nor scipy takes a batch of weight vectors; each function follows the library
definition it replaces (tests/test_stats.py checks every one against ``bench.metrics`` on explicit resamples):

- accuracy: mean of correct predictions.
- f1: binary F1 of class 1 (2 classes), else the macro mean over classes present in the labels or predictions
  of the resample, 0 where a class has no true or predicted positive (scikit-learn's ``zero_division`` default).
- mcc: the multiclass Matthews correlation from the confusion matrix's margins, 0 when undefined (scikit-learn).
- auroc: ROC-AUC of P(class 1) (binary) or macro one-vs-rest AUC of the softmax (multiclass), ties counted 1/2
  (the Mann-Whitney form of scikit-learn's trapezoids); NaN when a class has no positive or no negative.
- pearson / spearman: weighted moments; Spearman on midranks (scipy's ``rankdata`` ties), NaN when constant.
"""

from __future__ import annotations

import numpy as np

from bench.metrics import _softmax


def weighted(name: str, outputs: np.ndarray, labels: np.ndarray, W: np.ndarray) -> np.ndarray:
    """The metric ``name`` for every row of ``W`` (R, N): the resample where item i appears ``W[r, i]`` times."""
    if name not in WEIGHTED:
        raise ValueError(f"no resampled form of metric {name!r} (known: {', '.join(sorted(WEIGHTED))})")
    outputs = np.asarray(outputs, dtype=np.float64)
    W = np.asarray(W)
    if W.ndim != 2 or W.shape[1] != len(labels):
        raise ValueError(f"weights must be (resamples, {len(labels)}), got {W.shape}")
    # integer counts whose row sums stay below 2**24 are exact in float32: half the memory traffic of float64;
    # every metric returns to float64 before products of sums
    exact = np.issubdtype(W.dtype, np.integer) and len(labels) < 2**24
    W = W.astype(np.float32 if exact else np.float64)
    return WEIGHTED[name](outputs, np.asarray(labels), W)


def counts(rng: np.random.Generator, n_items: int, n_resamples: int) -> np.ndarray:
    """(R, N) counts of R bootstrap resamples of N items: drawn as item indices, then counted per row, so a
    resample is exactly "N indices drawn with replacement" (the same indices serve both methods of a pair)."""
    idx = rng.integers(0, n_items, size=(n_resamples, n_items))
    flat = (idx + n_items * np.arange(n_resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=n_resamples * n_items).reshape(n_resamples, n_items)


def _accuracy(outputs: np.ndarray, labels: np.ndarray, W: np.ndarray) -> np.ndarray:
    correct = (outputs.argmax(axis=1) == labels).astype(W.dtype)
    return (W @ correct).astype(np.float64) / W.sum(axis=1, dtype=np.float64)


def _f1(outputs: np.ndarray, labels: np.ndarray, W: np.ndarray) -> np.ndarray:
    pred = outputs.argmax(axis=1)
    n_classes = outputs.shape[1]
    scores, present = [], []
    for c in [1] if n_classes == 2 else range(n_classes):
        tp = (W @ ((pred == c) & (labels == c)).astype(W.dtype)).astype(np.float64)
        fp = (W @ ((pred == c) & (labels != c)).astype(W.dtype)).astype(np.float64)
        fn = (W @ ((pred != c) & (labels == c)).astype(W.dtype)).astype(np.float64)
        denom = 2 * tp + fp + fn
        scores.append(np.divide(2 * tp, denom, out=np.zeros_like(denom), where=denom > 0))
        present.append(denom > 0)
    if n_classes == 2:
        return scores[0]
    s, p = np.stack(scores), np.stack(present)
    return (s * p).sum(axis=0) / p.sum(axis=0)


def _mcc(outputs: np.ndarray, labels: np.ndarray, W: np.ndarray) -> np.ndarray:
    n_classes = max(outputs.shape[1], int(labels.max()) + 1)
    pred = outputs.argmax(axis=1)
    onehot = np.eye(n_classes, dtype=W.dtype)
    t, p = (W @ onehot[labels]).astype(np.float64), (W @ onehot[pred]).astype(np.float64)  # per class: true, predicted
    correct = (W @ (pred == labels).astype(W.dtype)).astype(np.float64)
    n = W.sum(axis=1, dtype=np.float64)
    cov_tp = correct * n - (t * p).sum(axis=1)
    cov_pp = n**2 - (p * p).sum(axis=1)
    cov_tt = n**2 - (t * t).sum(axis=1)
    denom = cov_pp * cov_tt
    ok = denom > 0
    return np.where(ok, cov_tp / np.sqrt(np.where(ok, denom, 1.0)), 0.0)  # 0 when undefined, as scikit-learn


def _groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort order, start of each run of equal values in that order, and each item's run (in original order)."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    group_sorted = np.cumsum(np.r_[True, sorted_values[1:] != sorted_values[:-1]]) - 1
    group = np.empty_like(group_sorted)
    group[order] = group_sorted
    return order, starts, group


def _binary_auc(scores: np.ndarray, positive: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Weighted Mann-Whitney AUC: P(score of a positive > score of a negative) + 1/2 P(tie)."""
    order, starts, _ = _groups(scores)
    w_pos = W[:, order] * positive[order]
    w_neg = W[:, order] - w_pos
    if len(starts) < len(scores):  # ties: one run per distinct score
        w_pos, w_neg = np.add.reduceat(w_pos, starts, axis=1), np.add.reduceat(w_neg, starts, axis=1)
    neg_below = np.cumsum(w_neg, axis=1) - w_neg
    total_pos, total_neg = w_pos.sum(axis=1, dtype=np.float64), w_neg.sum(axis=1, dtype=np.float64)
    wins = np.einsum("rg,rg->r", w_pos, neg_below + 0.5 * w_neg, dtype=np.float64)
    defined = (total_pos > 0) & (total_neg > 0)
    return np.where(defined, wins / np.where(defined, total_pos * total_neg, 1.0), np.nan)


def _auroc(outputs: np.ndarray, labels: np.ndarray, W: np.ndarray) -> np.ndarray:
    probs = _softmax(outputs)
    if probs.shape[1] == 2:
        return _binary_auc(probs[:, 1], labels == 1, W)
    per_class = [_binary_auc(probs[:, c], labels == c, W) for c in range(probs.shape[1])]
    return np.mean(per_class, axis=0)  # NaN when a class has no positive in the resample, as scikit-learn


def _corr(x: np.ndarray, y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Weighted Pearson correlation per row of W; x and y are (N,) or (R, N)."""
    W = W.astype(np.float64)
    n = W.sum(axis=1)
    mx = (W * x).sum(axis=1) / n
    my = (W * y).sum(axis=1) / n
    dx, dy = x - mx[:, None], y - my[:, None]
    sxy, sxx, syy = (W * dx * dy).sum(axis=1), (W * dx * dx).sum(axis=1), (W * dy * dy).sum(axis=1)
    # a constant resample (up to rounding): scipy's pearsonr is NaN there too
    ok = (sxx > 1e-20 * (W * x * x).sum(axis=1)) & (syy > 1e-20 * (W * y * y).sum(axis=1))
    return np.where(ok, sxy / np.sqrt(np.where(ok, sxx * syy, 1.0)), np.nan)


def _pearson(outputs: np.ndarray, labels: np.ndarray, W: np.ndarray) -> np.ndarray:
    x = outputs.reshape(-1)
    y = labels.astype(np.float64)
    return _corr(x - x.mean(), y - y.mean(), W)


def _midranks(values: np.ndarray, W: np.ndarray) -> np.ndarray:
    """(R, N) rank of each item within each resample, ties (and repeats of one item) at their mean rank."""
    order, starts, group = _groups(values)
    per_group = np.add.reduceat(W[:, order].astype(np.float64), starts, axis=1)
    below = np.cumsum(per_group, axis=1) - per_group
    return (below + (per_group + 1) / 2)[:, group]


def _spearman(outputs: np.ndarray, labels: np.ndarray, W: np.ndarray) -> np.ndarray:
    return _corr(_midranks(outputs.reshape(-1), W), _midranks(labels.astype(np.float64), W), W)


WEIGHTED = {
    "accuracy": _accuracy,
    "auroc": _auroc,
    "f1": _f1,
    "mcc": _mcc,
    "pearson": _pearson,
    "spearman": _spearman,
}
