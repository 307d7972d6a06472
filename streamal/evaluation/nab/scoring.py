"""NAB score of a corpus at one threshold: per-series raw scores, counts, normalisation."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from streamal.evaluation.nab.labels import SeriesInput, WindowsInput
from streamal.evaluation.nab.profiles import NabProfile, resolve_profile
from streamal.evaluation.nab.sweep import NabSweep, sweep_prepared
from streamal.evaluation.nab.weights import (
    DEFAULT_PROBATION_PERCENT,
    Prepared,
    null_score,
    prepare,
)

__all__ = ["NabResult", "NabSeriesScore", "nab_score"]


@dataclass(frozen=True)
class NabSeriesScore:
    """NAB score of one series at one threshold.

    Attributes
    ----------
    raw_score : float
        Sum of window credits/misses and false-positive costs (rule 6).
    tp, fp, fn, tn : int
        Row counts past probation (rule 7).
    total : int
        Rows past probation (``n - P``).
    n_windows : int
        Windows labelled in the series.
    n_scored_windows : int
        Windows with at least one row past probation (only these earn or cost).
    probationary_rows : int
        ``P``.

    Examples
    --------
    >>> s = NabSeriesScore(0.5, 1, 0, 9, 24, 34, 1, 1, 6)
    >>> s.tp + s.fp + s.fn + s.tn == s.total
    True
    """

    raw_score: float
    tp: int
    fp: int
    fn: int
    tn: int
    total: int
    n_windows: int
    n_scored_windows: int
    probationary_rows: int


@dataclass(frozen=True)
class NabResult:
    """NAB score of a corpus of series at one threshold.

    Attributes
    ----------
    profile : str
        Profile name.
    threshold : float
        Threshold used (the optimised one when none was given).
    raw_score : float
        Sum of per-series raw scores.
    null_score : float
        Raw score of a detector that never fires (``-A_fn`` x scored windows).
    perfect_score : float
        ``A_tp`` x number of windows.
    normalized_score : float
        ``100 (raw - null) / (perfect - null)``; NaN when ``perfect == null``.
    tp, fp, fn, tn, total : int
        Row counts summed over series.
    per_series : dict of str to NabSeriesScore
        Breakdown, in input order.
    sweep : NabSweep or None
        The full sweep when the threshold was optimised.

    Examples
    --------
    >>> res = nab_score({"a": (range(40), [0.0] * 40)}, {"a": [(20, 29)]})
    >>> res.threshold, res.raw_score, res.null_score, res.normalized_score
    (1.1, -1.0, -1.0, 0.0)
    """

    profile: str
    threshold: float
    raw_score: float
    null_score: float
    perfect_score: float
    normalized_score: float
    tp: int
    fp: int
    fn: int
    tn: int
    total: int
    per_series: dict[str, NabSeriesScore] = field(repr=False)
    sweep: NabSweep | None = field(default=None, repr=False)


def _score_series(prep: Prepared, threshold: float, prof: NabProfile) -> NabSeriesScore:
    """Rules 6-7 on one prepared series."""
    detected = prep.scores >= threshold  # NaN >= t is False: never a detection
    wid = prep.window_index
    inside = wid >= 0
    tp_rows, fp_rows = detected & inside, detected & ~inside
    raw = float(np.sum(prep.weight[fp_rows]))
    for k in np.unique(wid[inside]):
        hit = tp_rows & (wid == k)
        raw += max(-prof.a_fn, float(prep.weight[hit].max())) if hit.any() else -prof.a_fn
    tp, fp = int(tp_rows.sum()), int(fp_rows.sum())
    n_inside = int(inside.sum())
    total = int(prep.scores.size)
    return NabSeriesScore(
        raw_score=raw,
        tp=tp,
        fp=fp,
        fn=n_inside - tp,
        tn=total - n_inside - fp,
        total=total,
        n_windows=prep.n_windows,
        n_scored_windows=prep.n_scored_windows,
        probationary_rows=prep.probationary_rows,
    )


def nab_score(
    scores: Mapping[str, SeriesInput],
    windows: WindowsInput,
    profile: str | NabProfile = "standard",
    threshold: float | None = None,
    probation_percent: float = DEFAULT_PROBATION_PERCENT,
) -> NabResult:
    """NAB score of a detector over a corpus, at one threshold shared by all series.

    Parameters
    ----------
    scores : mapping of str to DataFrame, Series or (timestamps, scores)
        Detector output per series (see :func:`nab_sweep`).
    windows : mapping of str to list of (start, end)
        Inclusive windows per series, same time unit as the series.
    profile : str or NabProfile, default "standard"
        Cost matrix.
    threshold : float or None, default None
        Detection threshold (``score >= threshold``).  ``None`` optimises it over the
        corpus as NAB's optimiser does (:func:`nab_sweep`).
    probation_percent : float, default 0.15
        Share of each series in probation.

    Returns
    -------
    NabResult
        Raw, null, perfect and normalised scores, counts, per-series breakdown and (when
        optimised) the sweep.

    Examples
    --------
    Hand-made series: 40 rows (probation ``P = floor(0.15 * 40) = 6``), one window on rows
    20..29, alarms on rows 24 (inside) and 35 (after the window).

    >>> s = [0.0] * 40
    >>> s[24], s[35] = 1.0, 1.0
    >>> res = nab_score({"a": (range(40), s)}, {"a": [(20, 29)]}, threshold=0.5)
    >>> # 0.917429 (y = -0.6) + 0.11 * f((35 - 29) / 9) = 0.917429 - 0.102422
    >>> round(res.raw_score, 6), res.tp, res.fp, res.fn, res.tn
    (0.815007, 1, 1, 9, 23)
    >>> round(res.normalized_score, 4)  # 100 (0.815007 + 1) / (1 + 1)
    90.7503
    """
    prof = resolve_profile(profile)
    prepared = prepare(scores, windows, prof, probation_percent)
    sweep = None
    if threshold is None:
        sweep = sweep_prepared(prepared, prof)
        threshold = sweep.best_threshold
    threshold = float(threshold)
    per_series = {name: _score_series(p, threshold, prof) for name, p in prepared.items()}
    series = per_series.values()
    raw = float(sum(r.raw_score for r in series))
    null = null_score(prepared, prof)
    perfect = float(sum(prof.a_tp * r.n_windows for r in series))
    normalized = 100.0 * (raw - null) / (perfect - null) if perfect != null else math.nan
    return NabResult(
        profile=prof.name,
        threshold=threshold,
        raw_score=raw,
        null_score=null,
        perfect_score=perfect,
        normalized_score=normalized,
        tp=sum(r.tp for r in series),
        fp=sum(r.fp for r in series),
        fn=sum(r.fn for r in series),
        tn=sum(r.tn for r in series),
        total=sum(r.total for r in series),
        per_series=per_series,
        sweep=sweep,
    )
