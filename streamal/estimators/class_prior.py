"""Prior-shift correction of a classifier's scores: labelled against predicted class frequencies.

A classifier learnt from few labels leans towards the classes it has learnt
most: with 1 % of the labels one digit, seen four times, took three times its
share of the predictions. :class:`ClassPrior` keeps two frequencies per class:
how often it appeared among the *labels* learnt (with one pseudo-count each),
and how much probability the model itself gave it on the records it learnt,
as an exponential moving average. Adding ``log(labelled) − log(predicted)``
to the log-probabilities moves the predictions back to the labelled
frequencies (the prior adjustment of Saerens, Latinne & Decaestecker, 2002,
in one step): a class predicted more often than it is labelled is damped,
one predicted less often is raised. Both frequencies change only when records
are learnt, so scoring never changes the correction.

Examples
--------
>>> import numpy as np
>>> prior = ClassPrior(decay=0.0)
>>> prior.add_classes(2)
>>> prior.count([0, 1])
>>> prior.observe(np.array([[0.9, 0.1], [0.7, 0.3]]))   # the model favours class 0
>>> bool(prior.log_ratio()[1] > 0 > prior.log_ratio()[0])
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_FLOOR = 1e-6
"""Smallest predicted frequency: a class the model never predicts gets a finite boost."""


class ClassPrior:
    """Per-class labelled counts and the model's running predicted frequencies.

    Parameters
    ----------
    decay
        Weight kept by the predicted frequencies for each learnt record, in ``[0, 1)``.
    """

    def __init__(self, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"the prior's decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.labelled = np.zeros(0)
        self.predicted = np.zeros(0)

    def add_classes(self, extra: int) -> None:
        """New classes: no label yet, predicted at the uniform rate of the grown set."""
        total = len(self.labelled) + extra
        self.labelled = np.concatenate([self.labelled, np.zeros(extra)])
        self.predicted = np.concatenate([self.predicted, np.full(extra, 1.0 / total)])

    def count(self, classes: Sequence[int]) -> None:
        """Count learnt labels, given as class indices."""
        np.add.at(self.labelled, np.asarray(classes, dtype=int), 1.0)

    def observe(self, proba: np.ndarray) -> None:
        """Fold the ``(B, K)`` class probabilities of ``B`` learnt records into the average."""
        keep = self.decay ** len(proba)
        self.predicted = keep * self.predicted + (1.0 - keep) * proba.mean(axis=0)

    def log_ratio(self) -> np.ndarray:
        """``log(labelled frequency) − log(predicted frequency)`` per class."""
        labelled = (self.labelled + 1.0) / (self.labelled.sum() + len(self.labelled))
        return np.log(labelled) - np.log(np.maximum(self.predicted, _FLOOR))
