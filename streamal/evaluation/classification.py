"""Prequential (test-then-train) classification metrics.

In prequential evaluation every record is first predicted, then (maybe) learnt from.
``y_pred[i]`` is the model's prediction for record ``i`` made *before* it saw that
record's label.  In semi-supervised streams only some labels are revealed to the model;
the evaluator still knows every true label, so accuracy can be split into records whose
label was revealed (after the prediction) and records whose label never was.

Labels may be any hashable values (ints, strings, ...).  A missing prediction (``None``,
e.g. before the model has seen any label) counts as wrong.

Examples
--------
>>> prequential_accuracy(["a", "b", "b", "a"], ["a", "b", "a", "a"])
0.75
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "LabelledSplitAccuracy",
    "cohen_kappa",
    "labelled_split_accuracy",
    "prequential_accuracy",
    "rolling_accuracy",
]


def _correct(y_true: Any, y_pred: Any) -> np.ndarray:
    """Boolean array: prediction equals the true label (None / NaN never match)."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1 or t.shape != p.shape:
        raise ValueError("y_true and y_pred must be 1-D of the same length")
    numeric = "biuf"
    if (t.dtype.kind in numeric and p.dtype.kind in numeric) or (
        t.dtype.kind == "U" and p.dtype.kind == "U"
    ):
        return np.asarray(t == p, dtype=bool)
    return np.fromiter(
        (a is not None and b is not None and bool(a == b) for a, b in zip(t, p, strict=True)),
        dtype=bool,
        count=t.size,
    )


def prequential_accuracy(y_true: Any, y_pred: Any) -> float:
    """Share of records predicted correctly (before their label was learnt).

    Parameters
    ----------
    y_true : array-like
        True label of each record.
    y_pred : array-like
        Prediction made for each record before learning from it; ``None`` = no prediction
        (counted wrong).

    Returns
    -------
    float
        Accuracy in ``[0, 1]``; NaN for an empty stream.

    Examples
    --------
    >>> prequential_accuracy([1, 0, 1, 1], [1, 1, 1, None])
    0.5
    """
    correct = _correct(y_true, y_pred)
    return float(correct.mean()) if correct.size else math.nan


def rolling_accuracy(y_true: Any, y_pred: Any, window: int | None = None) -> np.ndarray:
    """Prequential accuracy as a series over time.

    Parameters
    ----------
    y_true : array-like
        True labels.
    y_pred : array-like
        Predictions made before learning each record.
    window : int or None, default None
        Entry ``i`` is the accuracy over the last ``window`` records ``i-window+1..i``
        (fewer at the start of the stream).  ``None`` gives the cumulative accuracy
        over records ``0..i``.

    Returns
    -------
    numpy.ndarray
        One float per record.

    Examples
    --------
    >>> rolling_accuracy([1, 1, 1, 1], [1, 0, 0, 1], window=2).tolist()
    [1.0, 0.5, 0.0, 0.5]
    >>> rolling_accuracy([1, 1, 1, 1], [1, 0, 0, 1]).tolist()
    [1.0, 0.5, 0.3333333333333333, 0.5]
    """
    correct = _correct(y_true, y_pred).astype(np.int64)
    hits = np.cumsum(correct)
    n_seen = np.arange(1, correct.size + 1)
    if window is None:
        return hits / n_seen
    if window < 1:
        raise ValueError("window must be >= 1")
    dropped = np.concatenate([np.zeros(window, dtype=np.int64), hits[:-window]])[: hits.size]
    return (hits - dropped) / np.minimum(n_seen, window)


def cohen_kappa(y_true: Any, y_pred: Any) -> float:
    """Cohen's kappa: agreement beyond chance, ``(p_o - p_e) / (1 - p_e)``.

    ``p_o`` is the accuracy and ``p_e = sum_c P(true = c) P(pred = c)`` the agreement
    expected from the two marginal label frequencies.  A missing prediction (``None``)
    is its own category and never agrees.

    Parameters
    ----------
    y_true : array-like
        True labels.
    y_pred : array-like
        Predictions.

    Returns
    -------
    float
        Kappa in ``[-1, 1]``; NaN when ``p_e == 1`` (both constant and equal) or empty.

    Examples
    --------
    >>> # p_o = 3/4; p_e = P(t=1)P(p=1) + P(t=0)P(p=0) = 1/2*1/4 + 1/2*3/4 = 1/2
    >>> cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0])
    0.5
    """
    correct = _correct(y_true, y_pred)
    n = correct.size
    if n == 0:
        return math.nan
    true_keys: list[tuple[Any, ...]] = [("label", v) for v in np.asarray(y_true).tolist()]
    pred_keys: list[tuple[Any, ...]] = [
        ("none",) if v is None else ("label", v) for v in np.asarray(y_pred).tolist()
    ]
    true_freq = Counter(true_keys)
    pred_freq = Counter(pred_keys)
    p_o = float(correct.mean())
    p_e = sum(c * pred_freq.get(k, 0) for k, c in true_freq.items()) / (n * n)
    if p_e == 1.0:
        return math.nan
    return (p_o - p_e) / (1.0 - p_e)


@dataclass(frozen=True)
class LabelledSplitAccuracy:
    """Prequential accuracy split by whether the model was given the record's label.

    Attributes
    ----------
    overall : float
        Accuracy on all records.
    labelled : float
        Accuracy on records whose label was revealed to the model (NaN if none).
    unlabelled : float
        Accuracy on records whose label the model never got (NaN if none).
    n_labelled, n_unlabelled : int
        Record counts.

    Examples
    --------
    >>> LabelledSplitAccuracy(0.5, 1.0, 0.0, 1, 1).n_labelled
    1
    """

    overall: float
    labelled: float
    unlabelled: float
    n_labelled: int
    n_unlabelled: int


def labelled_split_accuracy(y_true: Any, y_pred: Any, labelled: Any) -> LabelledSplitAccuracy:
    """Accuracy on labelled vs unlabelled records of a semi-supervised stream.

    Parameters
    ----------
    y_true : array-like
        True label of every record (known to the evaluator).
    y_pred : array-like
        Prediction made for each record before any learning from it.
    labelled : array-like of bool
        ``True`` where the record's label was revealed to the model.

    Returns
    -------
    LabelledSplitAccuracy
        Overall, labelled-only and unlabelled-only accuracies with counts.

    Examples
    --------
    >>> r = labelled_split_accuracy([0, 1, 1, 0, 1], [0, 1, 0, 1, 1],
    ...                             [True, False, True, False, False])
    >>> r.overall, r.labelled, r.unlabelled  # 3/5, 1/2 (rows 0, 2), 2/3 (rows 1, 3, 4)
    (0.6, 0.5, 0.6666666666666666)
    """
    correct = _correct(y_true, y_pred)
    mask = np.asarray(labelled, dtype=bool)
    if mask.shape != correct.shape:
        raise ValueError("labelled must have one flag per record")
    n_lab = int(mask.sum())
    n_unl = int(mask.size - n_lab)
    return LabelledSplitAccuracy(
        overall=float(correct.mean()) if correct.size else math.nan,
        labelled=float(correct[mask].mean()) if n_lab else math.nan,
        unlabelled=float(correct[~mask].mean()) if n_unl else math.nan,
        n_labelled=n_lab,
        n_unlabelled=n_unl,
    )
