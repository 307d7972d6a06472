"""A lane's rows as one float matrix, and the array-level calls into a streamal estimator.

The runtime drives an :class:`~streamal.estimators.base.ActivationEstimator` on
NumPy arrays, without pandas: the features of a lane's rows in one poll become
one :class:`Block`, whose leading columns are the model's own feature columns
in the model's order. Judging a run of rows is then one call on a slice of the
block (:func:`judge`), learning them another (:func:`learn`): the calls that
the estimator's ``score_many``/``predict_proba_many``/``learn_many`` make once
they have taken the values out of their frame, so the numbers are the same.

The decoder has validated every value already (finite, within the magnitude
limit), which is all the checks those public methods add. A subclass that
overrides one of them is called through it, with a frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from streamal.estimators.base import ActivationEstimator
from streamal.estimators.classifier import ActivationClassifier
from streamal.estimators.detector import ActivationDetector
from streamal.runtime.decode import Decoded

__all__ = ["Block", "judge", "learn", "room", "schema_names"]

Row = tuple[Any, Decoded]


class Block:
    """The features of ``rows`` as a ``(len(rows), len(columns))`` float64 matrix.

    ``columns`` are ``known`` (the model's feature columns, in its order)
    followed by the features new to the model, row by row, each row's new ones
    in sorted order (the order in which the model registers them); NaN where a
    row lacks a column. ``names`` are the feature names of every row when all
    rows have the same ones (the usual fixed record layout), else ``None``.

    Examples
    --------
    >>> rows = [(None, Decoded({"b": 1.0, "a": 2.0})), (None, Decoded({"c": 3.0, "a": 4.0}))]
    >>> block = Block(rows, ["a"])
    >>> block.columns, block.names
    (['a', 'b', 'c'], None)
    >>> block.values
    array([[ 2.,  1., nan],
           [ 4., nan,  3.]])
    >>> block.aligned(["a", "c"], 1, 2)
    array([[4., 3.]])
    """

    def __init__(self, rows: Sequence[Row], known: Sequence[str]):
        index = {name: j for j, name in enumerate(known)}
        layout = tuple(rows[0][1].features) if rows else ()
        self.names: frozenset[str] | None = None
        if all(tuple(d.features) == layout for _, d in rows):  # the usual fixed record layout
            self.names = frozenset(layout)
            for name in sorted(n for n in layout if n not in index):
                index[name] = len(index)
            raw = np.array([tuple(d.features.values()) for _, d in rows], dtype=np.float64)
            raw = raw.reshape(len(rows), len(layout))
            targets = [index[name] for name in layout]
            if targets == list(range(len(index))):
                values = raw
            else:
                values = np.full((len(rows), len(index)), np.nan)
                values[:, targets] = raw
        else:
            for _, d in rows:
                for name in sorted(n for n in d.features if n not in index):
                    index[name] = len(index)
            values = np.full((len(rows), len(index)), np.nan)
            for i, (_, d) in enumerate(rows):
                for name, value in d.features.items():
                    values[i, index[name]] = value
        self.columns = list(index)
        self.values = values
        self._index = index
        self._checked = (-1, False)  # (schema width, whether it is a prefix of columns)

    def leads_with(self, names: Sequence[str]) -> bool:
        """Whether ``columns`` start with ``names`` (a schema that only ever grows)."""
        width, prefix = self._checked
        if width != len(names):
            prefix = self.columns[: len(names)] == list(names)
            self._checked = (len(names), prefix)
        return prefix

    def aligned(self, names: Sequence[str], start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` in the columns ``names`` (NaN for a column not in the block).

        Usually a view of :attr:`values`: read it, never write it.
        """
        if self.leads_with(names):
            return self.values[start:stop, : len(names)]
        out = np.full((stop - start, len(names)), np.nan)
        for j, name in enumerate(names):
            column = self._index.get(name)
            if column is not None:
                out[:, j] = self.values[start:stop, column]
        return out


def room(model: Any) -> int:
    """Rows the model can queue before it updates (1 for models that learn every record)."""
    if not isinstance(model, ActivationEstimator):
        return 1
    pending = getattr(model, "_pending_values", None) or ()  # unset before the first record
    return max(1, model.batch_size - len(pending))


def schema_names(model: ActivationEstimator) -> list[str]:
    """The model's feature columns, in its order (its state is built first if need be)."""
    model._ensure_state()
    return model._schema.names


def judge(model: ActivationEstimator, task: str, columns: Sequence[str],
          values: np.ndarray) -> np.ndarray:
    """Anomaly scores ``(n,)`` or class probabilities ``(n, classes)`` of rows in ``columns``.

    ``columns`` are the model's own (see :func:`schema_names`). The numbers of
    ``score_many``/``predict_proba_many`` on the same rows in a frame
    (probabilities in the order of ``model.classes``, which must not be
    empty); a subclass that overrides those methods is called through them.
    """
    if task == "anomaly":
        if _stock(model, "score_many"):
            return np.asarray(model._scores(values), dtype=float)  # type: ignore[attr-defined]
        scores = model.score_many(_frame(columns, values))  # type: ignore[attr-defined]
        return np.asarray(scores, dtype=float)
    if _stock(model, "predict_proba_many"):
        return np.asarray(model._proba(values), dtype=float)  # type: ignore[attr-defined]
    proba = model.predict_proba_many(_frame(columns, values))  # type: ignore[attr-defined]
    return proba.to_numpy(dtype=float)


def learn(model: ActivationEstimator, task: str, columns: Sequence[str], values: np.ndarray,
          labels: Sequence[Any]) -> None:
    """Learn rows of ``values`` (columns named by ``columns``), as ``learn_many`` would.

    ``labels`` are validated labels (``None`` where absent), one per row. A
    subclass that overrides ``learn_many`` is called through it (with the
    columns missing in every row left out, and the labels of a classifier).
    """
    if _stock(model, "learn_many"):
        model._ingest(columns, values, labels)
        return
    X = _frame(columns, values)
    X = X.loc[:, X.notna().any(axis=0)]
    if task == "classification":
        model.learn_many(X, pd.Series(list(labels), dtype=object))  # type: ignore[attr-defined]
    else:
        model.learn_many(X)  # type: ignore[attr-defined]


def _stock(model: ActivationEstimator, method: str) -> bool:
    """Whether ``model`` uses streamal's own ``method`` (not a subclass's override)."""
    for stock in (ActivationDetector, ActivationClassifier):
        if isinstance(model, stock):
            return getattr(type(model), method, None) is getattr(stock, method)
    return False


def _frame(columns: Sequence[str], values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(values, columns=list(columns))
