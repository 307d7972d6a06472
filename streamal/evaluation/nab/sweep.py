"""NAB's threshold optimiser: the corpus raw score at every candidate threshold (rule 9)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from streamal.evaluation.nab.labels import SeriesInput, WindowsInput
from streamal.evaluation.nab.profiles import NabProfile, resolve_profile
from streamal.evaluation.nab.weights import (
    DEFAULT_PROBATION_PERCENT,
    Prepared,
    null_score,
    prepare,
)

__all__ = ["NOTHING_DETECTED_THRESHOLD", "NabSweep", "nab_sweep", "sweep_prepared"]

#: NAB's threshold for "no detection at all" (its sweep starts there).
NOTHING_DETECTED_THRESHOLD = 1.1


@dataclass(frozen=True)
class NabSweep:
    """Corpus raw score at every candidate threshold (NAB's optimiser).

    Attributes
    ----------
    thresholds : numpy.ndarray
        Candidate thresholds, strictly decreasing; the first detects nothing.
    raw_scores : numpy.ndarray
        Corpus raw score at each candidate.
    best_threshold : float
        Highest threshold among those reaching the maximum raw score.
    best_raw_score : float
        The maximum.
    tied_thresholds : tuple of float
        Every candidate reaching the maximum, highest first.

    Examples
    --------
    >>> sw = nab_sweep({"a": (range(40), [0.0] * 20 + [0.9] + [0.0] * 19)},
    ...                {"a": [(20, 29)]})
    >>> sw.thresholds.tolist(), sw.raw_scores.round(4).tolist(), sw.best_threshold
    ([1.1, 0.9, 0.0], [-1.0, 1.0, -1.4191], 0.9)
    """

    thresholds: np.ndarray
    raw_scores: np.ndarray
    best_threshold: float
    best_raw_score: float
    tied_thresholds: tuple[float, ...]

    @property
    def n_candidates(self) -> int:
        """Number of candidate thresholds (distinct scores past probation, plus one)."""
        return int(self.thresholds.size)


def sweep_prepared(prepared: Mapping[str, Prepared], prof: NabProfile) -> NabSweep:
    """:func:`nab_sweep` on a corpus already through :func:`prepare`."""
    parts = list(prepared.values())
    s = np.concatenate([np.empty(0), *(p.scores for p in parts)])
    w = np.concatenate([np.empty(0), *(p.weight for p in parts)])
    wid = np.concatenate([np.empty(0, dtype=np.int64), *(p.window_index for p in parts)])
    base = null_score(prepared, prof)
    keep = ~np.isnan(s)
    s, w, wid = s[keep], w[keep], wid[keep]
    order = np.argsort(-s, kind="stable")
    s, w, wid = s[order], w[order], wid[order]

    # Score change when a row joins the detections (rows join in decreasing score order):
    # a false positive adds its cost; a window row raises the window's value to the
    # running maximum of its credits (the value starts at -A_fn).
    delta = np.where(wid < 0, w, 0.0)
    inside = wid >= 0
    if inside.any():
        ids = wid[inside]
        value = np.maximum(pd.Series(w[inside]).groupby(ids).cummax().to_numpy(), -prof.a_fn)
        previous = pd.Series(value).groupby(ids).shift(1, fill_value=-prof.a_fn).to_numpy()
        delta[inside] = value - previous
    running = base + np.cumsum(delta)

    # Each distinct score is a candidate; its raw score is the running total at its last row.
    last_of_group = np.ones(s.size, dtype=bool)
    last_of_group[:-1] = s[1:] != s[:-1]
    top = float(s[0]) if s.size else -math.inf
    none_threshold = (
        NOTHING_DETECTED_THRESHOLD
        if top < NOTHING_DETECTED_THRESHOLD
        else float(np.nextafter(top, np.inf))
    )
    thresholds = np.concatenate([[none_threshold], s[last_of_group]])
    raw_scores = np.concatenate([[base], running[last_of_group]])
    best = float(raw_scores.max())
    tied = thresholds[raw_scores == best]
    return NabSweep(
        thresholds=thresholds,
        raw_scores=raw_scores,
        best_threshold=float(tied[0]),
        best_raw_score=best,
        tied_thresholds=tuple(float(t) for t in tied),
    )


def nab_sweep(
    scores: Mapping[str, SeriesInput],
    windows: WindowsInput,
    profile: str | NabProfile = "standard",
    probation_percent: float = DEFAULT_PROBATION_PERCENT,
) -> NabSweep:
    """Corpus raw NAB score at every candidate threshold (NAB's threshold optimiser).

    Parameters
    ----------
    scores : mapping of str to DataFrame, Series or (timestamps, scores)
        Detector output per series: a DataFrame with ``timestamp`` and ``anomaly_score``
        columns, a Series of scores indexed by time, or a ``(timestamps, scores)`` pair.
    windows : mapping of str to list of (start, end)
        Inclusive windows per series (see :func:`windows_from_labels`); every series in
        ``scores`` needs an entry (``[]`` when it has no window).
    profile : str or NabProfile, default "standard"
        ``"standard"``, ``"reward_low_FP_rate"``, ``"reward_low_FN_rate"`` or a custom one.
    probation_percent : float, default 0.15
        Share of each series in probation.

    Returns
    -------
    NabSweep
        Candidates (the nothing-detected threshold, 1.1 unless a score reaches it, then
        every distinct score past probation, decreasing) and the corpus raw score at each;
        the best is the highest threshold reaching the maximum.

    Examples
    --------
    >>> t = range(40)
    >>> s = [0.0] * 24 + [0.8] + [0.0] * 5 + [0.6] + [0.0] * 9
    >>> sw = nab_sweep({"a": (t, s)}, {"a": [(20, 29)]})
    >>> sw.thresholds.tolist()
    [1.1, 0.8, 0.6, 0.0]
    >>> sw.best_threshold, round(sw.best_raw_score, 6)
    (0.8, 0.917429)
    """
    prof = resolve_profile(profile)
    return sweep_prepared(prepare(scores, windows, prof, probation_percent), prof)
