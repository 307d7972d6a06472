"""Point-wise anomaly-detection metrics: ROC-AUC, average precision, SKAB F1/FAR/MAR.

All functions are exact and use NumPy only.  Labels are binary (``1``/``True`` =
anomalous row); scores are "higher = more anomalous".

SKAB (Skoltech Anomaly Benchmark, ``waico/SKAB``) scores outlier detection on binary
per-row predictions, counted over the test rows of *all* files together (the files are
concatenated before counting, so counts are pooled, not per-file ratios averaged):

* ``F1  = TP / (TP + (FN + FP) / 2)`` (equal to ``2 TP / (2 TP + FP + FN)``),
* ``FAR = FP / (FP + TN)`` (false-alarm rate), reported by SKAB in percent,
* ``MAR = FN / (FN + TP)`` (missed-alarm rate), reported by SKAB in percent.

SKAB's protocol drops the first 400 rows of every file (its training part) before
counting; that selection is the caller's job.

Examples
--------
>>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
0.75
>>> skab_metrics([[0, 1, 1], [0, 0, 1]], [[1, 1, 0], [0, 0, 1]]).f1
0.6666666666666666
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "BinaryCounts",
    "SkabMetrics",
    "average_precision",
    "binary_counts",
    "pr_auc",
    "roc_auc",
    "skab_metrics",
]


def _binary_labels(y_true: Any) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError("y_true must be 1-D")
    if y.dtype == bool:
        return y
    if y.size and not np.all((y == 0) | (y == 1)):
        raise ValueError("y_true must hold only 0/1 (or booleans)")
    return y.astype(bool)


def _labels_and_scores(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = _binary_labels(y_true)
    s = np.asarray(scores, dtype=float)
    if s.shape != y.shape:
        raise ValueError("y_true and scores must have the same length")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN; drop or impute those rows first")
    return y, s


def roc_auc(y_true: Any, scores: Any) -> float:
    """Exact area under the ROC curve (ties in the scores count one half).

    Equal to the probability that a random anomalous row scores higher than a random
    normal row (Mann-Whitney U / (n_pos n_neg), with mid-ranks for ties), which is the
    trapezoidal area under the ROC curve.

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool
        1 on anomalous rows.
    scores : array-like of float
        Anomaly scores, higher = more anomalous; no NaN.

    Returns
    -------
    float
        AUC in ``[0, 1]``; NaN if only one class is present.

    Examples
    --------
    >>> # pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3/4
    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> roc_auc([0, 1], [0.5, 0.5])
    0.5
    """
    y, s = _labels_and_scores(y_true, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(s, kind="stable")
    sorted_s = s[order]
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    # 1-based mid-rank of each tie group, spread back to the sorted rows.
    mid = first + (counts + 1) / 2.0
    ranks = np.repeat(mid, counts)
    rank_sum = float(ranks[y[order]].sum())
    u = rank_sum - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def average_precision(y_true: Any, scores: Any) -> float:
    """Average precision: the step-wise area under the precision-recall curve.

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds taken in
    decreasing order (``score >= threshold`` is an alarm), with ``R_0 = 0`` -- the
    definition used by scikit-learn's ``average_precision_score`` (no interpolation).

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool
        1 on anomalous rows.
    scores : array-like of float
        Anomaly scores, higher = more anomalous; no NaN.

    Returns
    -------
    float
        AP in ``[0, 1]``; NaN if there is no anomalous row.

    Examples
    --------
    >>> # thresholds 0.8: P=1, R=1/2; 0.4: P=1/2, R=1/2; 0.35: P=2/3, R=1; 0.1: P=1/2, R=1
    >>> # AP = 1/2 * 1 + 0 * 1/2 + 1/2 * 2/3 + 0 = 0.8333...
    >>> round(average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), 6)
    0.833333
    """
    y, s = _labels_and_scores(y_true, scores)
    n_pos = int(y.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last = np.ones(s.size, dtype=bool)
    last[:-1] = s_sorted[1:] != s_sorted[:-1]
    tp = np.cumsum(y_sorted)[last]
    alarms = (np.flatnonzero(last) + 1).astype(float)
    precision = tp / alarms
    recall = tp / n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def pr_auc(y_true: Any, scores: Any) -> float:
    """Area under the precision-recall curve, as average precision.

    Alias of :func:`average_precision` (the step-wise estimate; trapezoidal PR areas are
    optimistic and are not offered).

    Parameters
    ----------
    y_true : array-like of {0, 1} or bool
        1 on anomalous rows.
    scores : array-like of float
        Anomaly scores.

    Returns
    -------
    float
        Average precision.

    Examples
    --------
    >>> pr_auc([0, 1, 1], [0.2, 0.9, 0.7])
    1.0
    """
    return average_precision(y_true, scores)


@dataclass(frozen=True)
class BinaryCounts:
    """Confusion counts of binary alarms.

    Examples
    --------
    >>> BinaryCounts(tp=2, fp=1, fn=0, tn=5).total
    8
    """

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def total(self) -> int:
        """Number of rows counted."""
        return self.tp + self.fp + self.fn + self.tn


@dataclass(frozen=True)
class SkabMetrics:
    """SKAB outlier-detection metrics from pooled counts.

    Attributes
    ----------
    f1 : float
        ``TP / (TP + (FN + FP) / 2)``; NaN when ``TP + FN + FP == 0``.
    far : float
        False-alarm rate ``FP / (FP + TN)`` as a fraction; NaN without normal rows.
    mar : float
        Missed-alarm rate ``FN / (FN + TP)`` as a fraction; NaN without anomalous rows.
    counts : BinaryCounts
        The pooled counts.

    Examples
    --------
    >>> m = SkabMetrics.from_counts(BinaryCounts(tp=3, fp=1, fn=1, tn=5))
    >>> m.f1, m.far_percent, m.mar_percent
    (0.75, 16.666666666666664, 25.0)
    """

    f1: float
    far: float
    mar: float
    counts: BinaryCounts

    @property
    def far_percent(self) -> float:
        """FAR in percent, as SKAB's tables report it."""
        return 100.0 * self.far

    @property
    def mar_percent(self) -> float:
        """MAR in percent, as SKAB's tables report it."""
        return 100.0 * self.mar

    @classmethod
    def from_counts(cls, counts: BinaryCounts) -> SkabMetrics:
        """Compute F1, FAR and MAR from (pooled) counts.

        Parameters
        ----------
        counts : BinaryCounts
            Counts summed over all files.

        Returns
        -------
        SkabMetrics
            The three ratios and the counts.

        Examples
        --------
        >>> SkabMetrics.from_counts(BinaryCounts(tp=0, fp=0, fn=0, tn=4)).far
        0.0
        """
        tp, fp, fn, tn = counts.tp, counts.fp, counts.fn, counts.tn
        f1 = tp / (tp + (fn + fp) / 2) if (tp + fn + fp) else math.nan
        far = fp / (fp + tn) if (fp + tn) else math.nan
        mar = fn / (fn + tp) if (fn + tp) else math.nan
        return cls(f1=f1, far=far, mar=mar, counts=counts)


def _as_files(x: Any) -> list[np.ndarray]:
    """One 1-D array, or a sequence / mapping of per-file 1-D arrays."""
    if isinstance(x, Mapping):
        return [np.asarray(v) for v in x.values()]
    if isinstance(x, np.ndarray):
        if x.ndim == 1:
            return [x]
        raise ValueError("pass per-file arrays as a list, not a 2-D array")
    if hasattr(x, "to_numpy"):  # pandas Series
        return [np.asarray(x.to_numpy())]
    if isinstance(x, Sequence) and len(x) > 0 and np.ndim(x[0]) > 0:
        return [np.asarray(v) for v in x]
    return [np.asarray(x)]


def _paired_files(y_true: Any, y_pred: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    if isinstance(y_true, Mapping) and isinstance(y_pred, Mapping):
        if set(y_true) != set(y_pred):
            raise KeyError("y_true and y_pred must hold the same files")
        y_pred = {k: y_pred[k] for k in y_true}
    trues, preds = _as_files(y_true), _as_files(y_pred)
    if len(trues) != len(preds):
        raise ValueError("y_true and y_pred must hold the same number of files")
    return list(zip(trues, preds, strict=True))


def _count(pairs: list[tuple[np.ndarray, np.ndarray]]) -> BinaryCounts:
    tp = fp = fn = tn = 0
    for t, p in pairs:
        tb, pb = _binary_labels(t), _binary_labels(p)
        if tb.shape != pb.shape:
            raise ValueError("each file's y_true and y_pred must have the same length")
        tp += int(np.sum(tb & pb))
        fp += int(np.sum(~tb & pb))
        fn += int(np.sum(tb & ~pb))
        tn += int(np.sum(~tb & ~pb))
    return BinaryCounts(tp=tp, fp=fp, fn=fn, tn=tn)


def binary_counts(y_true: Any, y_pred: Any) -> BinaryCounts:
    """TP/FP/FN/TN of binary alarms, summed over one or several files.

    Parameters
    ----------
    y_true : array-like, or sequence / mapping of array-likes
        True labels (0/1 or bool), one array per file when several.
    y_pred : same structure as ``y_true``
        Alarms (0/1 or bool).  With mappings, files are matched by key.

    Returns
    -------
    BinaryCounts
        Counts pooled over files.

    Examples
    --------
    >>> binary_counts([0, 1, 1, 0], [1, 1, 0, 0])
    BinaryCounts(tp=1, fp=1, fn=1, tn=1)
    """
    return _count(_paired_files(y_true, y_pred))


def skab_metrics(y_true: Any, y_pred: Any, threshold: float | None = None) -> SkabMetrics:
    """SKAB's F1, FAR and MAR, pooled over files.

    Counts are summed over all files (SKAB concatenates the files) before the ratios are
    taken.

    Parameters
    ----------
    y_true : array-like, or sequence / mapping of array-likes
        True labels per row (SKAB's ``anomaly`` column), one array per file when several.
    y_pred : same structure as ``y_true``
        Binary alarms, or anomaly scores when ``threshold`` is given.
    threshold : float or None, default None
        If given, a row alarms when ``score >= threshold`` (NaN never alarms).

    Returns
    -------
    SkabMetrics
        ``f1``, ``far``, ``mar`` (fractions; ``far_percent``/``mar_percent`` for SKAB's
        tables) and the pooled counts.

    Examples
    --------
    >>> # file 1: TP=1 FP=1 FN=1 TN=0; file 2: TP=1 FP=0 FN=0 TN=2 -> pooled 2, 1, 1, 2
    >>> m = skab_metrics([[0, 1, 1], [0, 0, 1]], [[0.9, 0.8, 0.1], [0.2, 0.0, 0.7]],
    ...                  threshold=0.5)
    >>> m.counts
    BinaryCounts(tp=2, fp=1, fn=1, tn=2)
    >>> m.f1, m.far, m.mar  # F1 = 2 / (2 + (1 + 1) / 2), FAR = 1 / (1 + 2), MAR = 1 / (1 + 2)
    (0.6666666666666666, 0.3333333333333333, 0.3333333333333333)
    """
    pairs = _paired_files(y_true, y_pred)
    if threshold is not None:
        pairs = [(t, np.asarray(p, dtype=float) >= threshold) for t, p in pairs]
    return SkabMetrics.from_counts(_count(pairs))
