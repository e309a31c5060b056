"""Task metrics on many bootstrap resamples at once: each resample is a row of per-example counts.

A bootstrap resample of N test items is a count vector ``w`` (how often each item was drawn); a metric on the
resample equals the metric on the items repeated ``w`` times. Each function here computes its metric (its entry in
``bench.core.metrics.METRICS``, whose ``resampled`` it is) for every row of ``W`` (R, N) in a few array operations
instead of R calls into scikit-learn, which is what makes 2,000 paired resamples over thousands of items take
milliseconds. Written by hand because neither scikit-learn nor scipy takes a batch of weight vectors; each function
follows the library definition it replaces (tests/test_stats.py checks every one against ``bench.core.metrics`` on
explicit resamples):

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


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def counts(rng: np.random.Generator, n_items: int, n_resamples: int) -> np.ndarray:
    """(R, N) counts of R bootstrap resamples of N items: drawn as item indices, then counted per row, so a
    resample is exactly "N indices drawn with replacement" (the same indices serve both methods of a pair).
    Stored item-major (the transpose of a C-ordered (N, R) array): AUROC copies whole items' rows in score order."""
    idx = rng.integers(0, n_items, size=(n_resamples, n_items))
    flat = (idx * n_resamples + np.arange(n_resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=n_resamples * n_items).reshape(n_items, n_resamples).T


def accuracy(outputs: np.ndarray, labels: np.ndarray, W: np.ndarray) -> np.ndarray:
    correct = (outputs.argmax(axis=1) == labels).astype(W.dtype)
    return (W @ correct).astype(np.float64) / W.sum(axis=1, dtype=np.float64)


def f1(outputs: np.ndarray, labels: np.ndarray, W: np.ndarray) -> np.ndarray:
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


def mcc(outputs: np.ndarray, labels: np.ndarray, W: np.ndarray) -> np.ndarray:
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


def _binary_auc(scores: np.ndarray, positive: np.ndarray, WT: np.ndarray) -> np.ndarray:
    """Weighted Mann-Whitney AUC, P(score of a positive > score of a negative) + 1/2 P(tie), per column of
    ``WT`` (N, R). Written as sum over the larger class of its weight times the prefix sum of the smaller class's
    weights below (or above) its score, found by ``searchsorted``: one cumulative sum over the smaller class only
    (a one-vs-rest positive class is a fraction of the items) and row copies, which are cheap in this layout."""
    pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
    small_is_neg = len(neg) < len(pos)
    small, big = (neg, pos) if small_is_neg else (pos, neg)
    if len(small) == 0:
        return np.full(WT.shape[1], np.nan)
    small = small[np.argsort(scores[small], kind="stable")]
    prefix = np.zeros((len(small) + 1, WT.shape[1]), dtype=WT.dtype)
    _cumsum_rows(np.take(WT, small, axis=0), out=prefix[1:])  # np.take: twice as fast as WT[small] here
    lo = np.searchsorted(scores[small], scores[big], side="left")
    hi = np.searchsorted(scores[small], scores[big], side="right")
    w_big = np.take(WT, big, axis=0)
    # the smaller class's weight below each item of the larger class, ties counted half
    if np.array_equal(lo, hi):  # no score shared across the classes (the usual case): one gather, not two
        below = np.einsum("ir,ir->r", w_big, np.take(prefix, lo, axis=0), dtype=np.float64)
    else:
        halves = np.take(prefix, lo, axis=0) + np.take(prefix, hi, axis=0)
        below = np.einsum("ir,ir->r", w_big, halves, dtype=np.float64) / 2
    total_small, total_big = prefix[-1].astype(np.float64), w_big.sum(axis=0, dtype=np.float64)
    wins = below if small_is_neg else total_small * total_big - below  # else: positives above each negative
    defined = (total_small > 0) & (total_big > 0)
    return np.where(defined, wins / np.where(defined, total_small * total_big, 1.0), np.nan)


def _cumsum_rows(x: np.ndarray, out: np.ndarray) -> None:
    """``np.cumsum(x, axis=0, out=out)``: with many columns a loop of row additions is several times faster than
    numpy's cumsum along the first axis, which does not vectorise across columns."""
    if x.shape[1] < 64:
        np.cumsum(x, axis=0, out=out)
        return
    if len(x):
        out[0] = x[0]
    for i in range(1, len(x)):
        np.add(out[i - 1], x[i], out=out[i])


def auroc(outputs: np.ndarray, labels: np.ndarray, W: np.ndarray) -> np.ndarray:
    probs = softmax(outputs)
    WT = np.ascontiguousarray(W.T)  # no copy for weights from ``counts``
    if probs.shape[1] == 2:
        return _binary_auc(probs[:, 1], labels == 1, WT)
    per_class = [_binary_auc(probs[:, c], labels == c, WT) for c in range(probs.shape[1])]
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


def pearson(outputs: np.ndarray, labels: np.ndarray, W: np.ndarray) -> np.ndarray:
    x = outputs.reshape(-1)
    y = labels.astype(np.float64)
    return _corr(x - x.mean(), y - y.mean(), W)


def _midranks(values: np.ndarray, W: np.ndarray) -> np.ndarray:
    """(R, N) rank of each item within each resample, ties (and repeats of one item) at their mean rank."""
    order, starts, group = _groups(values)
    per_group = np.add.reduceat(W[:, order].astype(np.float64), starts, axis=1)
    below = np.cumsum(per_group, axis=1) - per_group
    return (below + (per_group + 1) / 2)[:, group]


def spearman(outputs: np.ndarray, labels: np.ndarray, W: np.ndarray) -> np.ndarray:
    return _corr(_midranks(outputs.reshape(-1), W), _midranks(labels.astype(np.float64), W), W)
