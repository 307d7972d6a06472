"""NAB scoring: the Numenta Anomaly Benchmark's window-based detection score.

This module re-implements, from NAB's published rules, the scorer of
`numenta/NAB` (``nab/sweeper.py``, ``nab/scorer.py``, ``nab/optimizer.py`` and the
normalisation step of ``nab/runner.py``) so that it reproduces NAB's own numbers.

Rules (for one series of ``n`` rows indexed ``0..n-1`` in time order):

1. **Detections.** At threshold ``theta`` row ``i`` is a detection when
   ``anomaly_score[i] >= theta``.  A NaN score is never a detection.
2. **Probationary period.** ``P = min(floor(0.15 * n), 0.15 * 5000)`` (so at most 750 rows).
   Rows ``0..P-1`` are excluded from everything: no credit, no penalty, no counts, and
   their scores are not candidate thresholds.  A window counts only if at least one of
   its rows is past probation.
3. **Shape.** ``f(x) = 2 / (1 + exp(5 x)) - 1`` (``2 sigmoid(-5x) - 1``), and ``f(x) = -1``
   exactly when ``x > 3``.
4. **Detection inside a window** ``[L, R]`` of width ``w = R - L + 1``: relative position
   ``y = -(R - i + 1) / w`` (``-1`` on the first row) and credit ``A_tp f(y) / f(-1)``,
   so a detection on the window's first row earns exactly ``A_tp``.
5. **Detection outside every window.** Full cost ``-A_fp`` if no window ended before row
   ``i``; otherwise, with ``R'``, ``w'`` the last row and width of the most recent window
   that ended before ``i``, the cost is ``A_fp f((i - R') / (w' - 1))``.
6. **Raw score of a series** = sum over windows of (the largest credit among the window's
   detections, i.e. its earliest one, or ``-A_fn`` if it has none) + the sum of the costs
   of all detections outside windows.
7. **Counts** are per row past probation: TP/FN = detected/undetected rows inside windows,
   FP/TN = detected/undetected rows outside windows.
8. **Corpus** raw score and counts = sums over series.  One threshold is used for all series.
9. **Threshold sweep.** Candidates are a "nothing detected" threshold (1.1, as in NAB)
   and every distinct score past probation; the candidate with the largest corpus raw
   score wins, ties going to the highest threshold (NAB's optimiser).
10. **Normalisation.** ``100 (raw - null) / (perfect - null)`` with
    ``null = -A_fn x (windows with a row past probation)`` (the raw score of NAB's
    never-firing ``null`` detector) and ``perfect = A_tp x (all windows of the scored
    series)`` (NAB counts every labelled window here).

The floating-point operations follow NAB's order so per-row weights agree with NAB's
bit for bit; corpus sums may differ from NAB's in the last bits (about 1e-15).

Examples
--------
>>> import numpy as np
>>> t = np.arange(40)
>>> s = np.zeros(40); s[20] = 1.0          # alarm on the first row of the window
>>> res = nab_score({"a": (t, s)}, {"a": [(20, 29)]}, threshold=0.5)
>>> float(res.raw_score), float(res.normalized_score)
(1.0, 100.0)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

__all__ = [
    "NAB_PROFILES",
    "NOTHING_DETECTED_THRESHOLD",
    "NabProfile",
    "NabResult",
    "NabRowWeights",
    "NabSeriesScore",
    "NabSweep",
    "nab_row_weights",
    "nab_score",
    "nab_sweep",
    "probationary_length",
    "read_nab_labels",
    "scaled_sigmoid",
    "windows_from_labels",
]

#: NAB's threshold for "no detection at all" (its sweep starts there).
NOTHING_DETECTED_THRESHOLD = 1.1

#: Default share of a series in the probationary period (NAB's ``probationPercent``).
DEFAULT_PROBATION_PERCENT = 0.15

SeriesInput: TypeAlias = pd.DataFrame | pd.Series | tuple[Any, Any]
WindowsInput: TypeAlias = Mapping[str, Sequence[Sequence[Any]]]


@dataclass(frozen=True)
class NabProfile:
    """Cost matrix of a NAB application profile.

    Parameters
    ----------
    a_tp : float
        Credit of a detection on the first row of a window.
    a_fp : float
        Largest cost of a detection outside windows.
    a_fn : float
        Cost of a window without any detection.
    a_tn : float, default 1.0
        Present in NAB's ``profiles.json`` but never used by the scorer.
    name : str, default "custom"
        Label used in results.

    Examples
    --------
    >>> NAB_PROFILES["reward_low_FN_rate"].a_fn
    2.0
    >>> NabProfile(a_tp=1.0, a_fp=0.5, a_fn=1.0).name
    'custom'
    """

    a_tp: float
    a_fp: float
    a_fn: float
    a_tn: float = 1.0
    name: str = "custom"


#: NAB's three application profiles (``config/profiles.json``).
NAB_PROFILES: dict[str, NabProfile] = {
    "standard": NabProfile(1.0, 0.11, 1.0, 1.0, "standard"),
    "reward_low_FP_rate": NabProfile(1.0, 0.22, 1.0, 1.0, "reward_low_FP_rate"),
    "reward_low_FN_rate": NabProfile(1.0, 0.11, 2.0, 1.0, "reward_low_FN_rate"),
}


@dataclass(frozen=True)
class NabRowWeights:
    """Per-row NAB weights of one series (all rows, probation included).

    Attributes
    ----------
    weight : numpy.ndarray
        Credit (inside a window) or cost (outside, negative) that a detection on that
        row would earn.
    window_index : numpy.ndarray
        Index of the window holding the row in the sorted window list, ``-1`` outside.
    probationary_rows : int
        Number of leading rows excluded from scoring.
    window_rows : list of tuple of int
        ``(L, R)`` first and last row of each window, in time order.

    Examples
    --------
    >>> w = nab_row_weights(range(40), [(20, 29)])
    >>> w.window_rows, w.probationary_rows, float(w.weight[20])
    ([(20, 29)], 6, 1.0)
    """

    weight: np.ndarray
    window_index: np.ndarray
    probationary_rows: int
    window_rows: list[tuple[int, int]]


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


# --------------------------------------------------------------------------- rules


def probationary_length(n_rows: int, probation_percent: float = DEFAULT_PROBATION_PERCENT) -> int:
    """Number of leading rows NAB excludes from scoring.

    ``min(floor(probation_percent * n_rows), probation_percent * 5000)``, evaluated in
    doubles as NAB does (so 750 rows at most with the default 15 %).

    Parameters
    ----------
    n_rows : int
        Length of the series.
    probation_percent : float, default 0.15
        Share of the series in probation.

    Returns
    -------
    int
        ``P``; rows ``0..P-1`` are not scored.

    Examples
    --------
    >>> probationary_length(4032), probationary_length(1882), probationary_length(22695)
    (604, 282, 750)
    """
    if n_rows < 0:
        raise ValueError("n_rows must be >= 0")
    p = min(math.floor(probation_percent * n_rows), probation_percent * 5000)
    # Rows i >= p are scored; with a non-integer cap the first scored row is ceil(p).
    return int(math.ceil(p))


def scaled_sigmoid(x: float) -> float:
    """NAB's shape function ``f(x) = 2 / (1 + exp(5x)) - 1``, and ``-1`` when ``x > 3``.

    Parameters
    ----------
    x : float
        Relative position: in ``[-1, 0)`` inside a window, ``> 0`` after one.

    Returns
    -------
    float
        Value in ``[-1, 1)``; ``f(0) = 0``.

    Examples
    --------
    >>> round(scaled_sigmoid(-1.0), 6), scaled_sigmoid(0.0), scaled_sigmoid(3.5)
    (0.986614, 0.0, -1.0)
    """
    if x > 3.0:
        return -1.0
    # Same operation order as NAB: 2 * sigmoid(-5 x) - 1 with sigmoid(z) = 1 / (1 + exp(-z)).
    return 2 * (1 / (1 + math.exp(-(-5 * x)))) - 1.0


# --------------------------------------------------------------------------- inputs


def windows_from_labels(
    labels: Mapping[str, Sequence[Sequence[Any]]],
) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """Parse NAB-format labels (``combined_windows.json``) into timestamp windows.

    Parameters
    ----------
    labels : mapping of str to list of [start, end]
        Series name (e.g. ``"realKnownCause/nyc_taxi.csv"``) to inclusive windows given as
        timestamp strings (NAB writes ``"2014-04-10 07:15:00.000000"``) or datetimes.

    Returns
    -------
    dict of str to list of (pandas.Timestamp, pandas.Timestamp)
        Windows sorted by start.

    Raises
    ------
    ValueError
        If a window ends before it starts or windows of a series overlap.

    Examples
    --------
    >>> w = windows_from_labels({"a.csv": [["2014-04-10 07:15:00.000000",
    ...                                     "2014-04-11 16:45:00.000000"]], "b.csv": []})
    >>> w["a.csv"][0][0], w["b.csv"]
    (Timestamp('2014-04-10 07:15:00'), [])
    """
    out: dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]] = {}
    for name, wins in labels.items():
        parsed = []
        for win in wins:
            if len(win) != 2:
                raise ValueError(f"{name}: a window must be [start, end], got {win!r}")
            start, end = pd.Timestamp(win[0]), pd.Timestamp(win[1])
            if end < start:
                raise ValueError(f"{name}: window {win!r} ends before it starts")
            parsed.append((start, end))
        parsed.sort(key=lambda se: se[0])
        for (_, prev_end), (start, _) in zip(parsed, parsed[1:], strict=False):
            if start <= prev_end:
                raise ValueError(f"{name}: overlapping windows")
        out[name] = parsed
    return out


def read_nab_labels(path: str | Path) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """Read a NAB label file (JSON: series name to list of ``[start, end]``).

    Parameters
    ----------
    path : str or pathlib.Path
        JSON file such as NAB's ``labels/combined_windows.json``.

    Returns
    -------
    dict of str to list of (pandas.Timestamp, pandas.Timestamp)
        As :func:`windows_from_labels`.

    Examples
    --------
    >>> import json, tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "labels.json")
    ...     with open(p, "w") as fh:
    ...         json.dump({"x.csv": [["2020-01-01 01:40:00", "2020-01-01 02:25:00"]]}, fh)
    ...     len(read_nab_labels(p)["x.csv"])
    1
    """
    with open(path, encoding="utf-8") as fh:
        return windows_from_labels(json.load(fh))


def _as_time_values(values: Any) -> np.ndarray:
    """Numbers stay numbers; anything else becomes naive ``datetime64[ns]`` (UTC if aware)."""
    if isinstance(values, (pd.DatetimeIndex, pd.Series)) and isinstance(
        getattr(values, "dtype", None), pd.DatetimeTZDtype
    ):
        idx = pd.DatetimeIndex(values).tz_convert("UTC").tz_localize(None)
        return idx.to_numpy(dtype="datetime64[ns]")
    arr = np.asarray(values)
    if arr.dtype.kind in "iuf":
        return arr
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[ns]")
    idx = pd.DatetimeIndex(pd.to_datetime(arr))
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.to_numpy(dtype="datetime64[ns]")


def _split_series(name: str, data: SeriesInput) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps, scores) from a DataFrame, a Series or a pair."""
    if isinstance(data, pd.DataFrame):
        missing = {"timestamp", "anomaly_score"} - set(data.columns)
        if missing:
            raise KeyError(f"{name}: DataFrame lacks column(s) {sorted(missing)}")
        ts, sc = data["timestamp"], data["anomaly_score"]
    elif isinstance(data, pd.Series):
        ts, sc = data.index, data.to_numpy()
    else:
        ts, sc = data
    times = _as_time_values(ts)
    scores = np.asarray(sc, dtype=float)
    if times.ndim != 1 or scores.ndim != 1 or times.shape != scores.shape:
        raise ValueError(f"{name}: timestamps and scores must be 1-D of equal length")
    return times, scores


def _window_rows(
    name: str, times: np.ndarray, windows: Sequence[Sequence[Any]]
) -> list[tuple[int, int]]:
    """First and last row ``(L, R)`` of each window, in time order.

    Sorted timestamps: the window holds the rows with ``start <= t <= end`` (bounds need not
    be timestamps of the series; a bound that is one maps to its first occurrence, as in
    NAB).  Unsorted timestamps (NAB's ``machine_temperature_system_failure`` steps back
    one hour once): bounds must be timestamps of the series and are matched in row order
    as NAB does -- ``L`` is the first row equal to ``start`` after the previous window,
    ``R`` the first row from ``L`` on equal to ``end``.
    """
    if len(windows) == 0:
        return []
    starts = _as_time_values([w[0] for w in windows])
    ends = _as_time_values([w[1] for w in windows])
    numeric = times.dtype.kind in "iuf"
    if (starts.dtype.kind in "iuf") != numeric or (ends.dtype.kind in "iuf") != numeric:
        raise TypeError(f"{name}: window bounds and timestamps must both be numbers or times")
    n = times.size
    ordered = sorted(zip(starts, ends, strict=True), key=lambda se: se[0])
    rows: list[tuple[int, int]] = []
    if n < 2 or bool(np.all(times[1:] >= times[:-1])):
        for start, end in ordered:
            left = int(np.searchsorted(times, start, side="left"))
            j = int(np.searchsorted(times, end, side="left"))
            right = (
                j if j < n and times[j] == end else int(np.searchsorted(times, end, "right")) - 1
            )
            if left > right:
                raise ValueError(f"{name}: window [{start}, {end}] holds no row of the series")
            if rows and left <= rows[-1][1]:
                raise ValueError(f"{name}: overlapping windows")
            rows.append((left, right))
        return rows
    cursor = 0
    for start, end in ordered:
        hit_start = np.flatnonzero(times[cursor:] == start)
        if hit_start.size == 0:
            raise ValueError(
                f"{name}: timestamps are not sorted, so window bounds must be row timestamps;"
                f" {start} is not one (after row {cursor})"
            )
        left = cursor + int(hit_start[0])
        hit_end = np.flatnonzero(times[left:] == end)
        if hit_end.size == 0:
            raise ValueError(f"{name}: window end {end} is not a row timestamp after its start")
        right = left + int(hit_end[0])
        rows.append((left, right))
        cursor = right + 1
    return rows


def _resolve_profile(profile: str | NabProfile) -> NabProfile:
    if isinstance(profile, NabProfile):
        return profile
    try:
        return NAB_PROFILES[profile]
    except KeyError:
        raise ValueError(
            f"unknown NAB profile {profile!r}; choose from {sorted(NAB_PROFILES)}"
        ) from None


def _row_weights_from_rows(
    n: int, rows: list[tuple[int, int]], prof: NabProfile
) -> tuple[np.ndarray, np.ndarray]:
    weight = np.empty(n, dtype=float)
    window_index = np.full(n, -1, dtype=np.int64)
    max_tp = scaled_sigmoid(-1.0)
    prev_right: int | None = None
    prev_width = 0.0
    cursor = 0
    bounds = rows + [(n, n)]
    for k, (left, right) in enumerate(bounds):
        # Rows cursor..left-1 are outside every window: cost after the previous window.
        for i in range(cursor, min(left, n)):
            if prev_right is None:
                unweighted = -1.0
            else:
                denominator = float(prev_width - 1)
                pos = abs(prev_right - i) / denominator if denominator > 0 else math.inf
                unweighted = scaled_sigmoid(pos)
            weight[i] = unweighted * prof.a_fp
        if k == len(rows):
            break
        width = float(right - left + 1)
        for i in range(left, right + 1):
            pos = -(right - i + 1) / width
            weight[i] = scaled_sigmoid(pos) * prof.a_tp / max_tp
        window_index[left : right + 1] = k
        prev_right, prev_width, cursor = right, width, right + 1
    return weight, window_index


def nab_row_weights(
    timestamps: Any,
    windows: Sequence[Sequence[Any]],
    profile: str | NabProfile = "standard",
    probation_percent: float = DEFAULT_PROBATION_PERCENT,
) -> NabRowWeights:
    """Weight a detection would earn on each row of one series (rules 3-5).

    Parameters
    ----------
    timestamps : array-like
        Non-decreasing timestamps (datetimes, strings or plain numbers).
    windows : sequence of (start, end)
        Inclusive windows in the same unit as ``timestamps``.
    profile : str or NabProfile, default "standard"
        Cost matrix.
    probation_percent : float, default 0.15
        Share of the series in probation.

    Returns
    -------
    NabRowWeights
        Weights and window membership for every row (probationary rows included).

    Examples
    --------
    >>> w = nab_row_weights(range(40), [(20, 29)])
    >>> # y = -(29 - 24 + 1)/10 = -0.6;  f(-0.6)/f(-1) = 0.905148.../0.986614...
    >>> round(float(w.weight[24]), 10), round(float(w.weight[10]), 2)
    (0.9174286804, -0.11)
    """
    prof = _resolve_profile(profile)
    times = _as_time_values(timestamps)
    rows = _window_rows("series", times, windows)
    weight, window_index = _row_weights_from_rows(times.size, rows, prof)
    return NabRowWeights(
        weight, window_index, probationary_length(times.size, probation_percent), rows
    )


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class _Prepared:
    """One series, rows past probation only; window indices are corpus-global."""

    scores: np.ndarray
    weight: np.ndarray
    window_index: np.ndarray
    n_windows: int
    n_scored_windows: int
    probationary_rows: int


def _prepare(
    scores: Mapping[str, SeriesInput],
    windows: WindowsInput,
    prof: NabProfile,
    probation_percent: float,
) -> dict[str, _Prepared]:
    prepared: dict[str, _Prepared] = {}
    offset = 0
    for name, data in scores.items():
        if name not in windows:
            raise KeyError(f"no windows given for series {name!r} (pass [] if it has none)")
        times, values = _split_series(name, data)
        rows = _window_rows(name, times, windows[name])
        weight, window_index = _row_weights_from_rows(times.size, rows, prof)
        p = probationary_length(times.size, probation_percent)
        wid = window_index[p:]
        scored = np.unique(wid[wid >= 0])
        # Global ids: offset + local index (windows wholly in probation simply never appear).
        gid = np.where(wid >= 0, wid + offset, -1)
        prepared[name] = _Prepared(values[p:], weight[p:], gid, len(rows), int(scored.size), p)
        offset += len(rows)
    return prepared


def _score_series(prep: _Prepared, threshold: float, prof: NabProfile) -> NabSeriesScore:
    detected = prep.scores >= threshold  # NaN >= t is False: never a detection
    inside = prep.window_index >= 0
    fp_rows = detected & ~inside
    tp_rows = detected & inside
    raw = float(np.sum(prep.weight[fp_rows]))
    wid = prep.window_index
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


def _sweep(prepared: Mapping[str, _Prepared], prof: NabProfile) -> NabSweep:
    if prepared:
        s = np.concatenate([p.scores for p in prepared.values()])
        w = np.concatenate([p.weight for p in prepared.values()])
        wid = np.concatenate([p.window_index for p in prepared.values()])
    else:
        s, w, wid = np.empty(0), np.empty(0), np.empty(0, dtype=np.int64)
    base = float(sum(-prof.a_fn * p.n_scored_windows for p in prepared.values()))
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
        previous = pd.Series(value).groupby(ids).shift(1).to_numpy()
        previous = np.where(np.isnan(previous), -prof.a_fn, previous)
        delta[inside] = value - previous
    running = base + np.cumsum(delta)

    last_of_group = np.ones(s.size, dtype=bool)
    if s.size > 1:
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
    prof = _resolve_profile(profile)
    return _sweep(_prepare(scores, windows, prof, probation_percent), prof)


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
    prof = _resolve_profile(profile)
    prepared = _prepare(scores, windows, prof, probation_percent)
    sweep = None
    if threshold is None:
        sweep = _sweep(prepared, prof)
        threshold = sweep.best_threshold
    threshold = float(threshold)
    per_series = {name: _score_series(p, threshold, prof) for name, p in prepared.items()}
    raw = float(sum(r.raw_score for r in per_series.values()))
    null = float(sum(-prof.a_fn * r.n_scored_windows for r in per_series.values()))
    perfect = float(sum(prof.a_tp * r.n_windows for r in per_series.values()))
    normalized = 100.0 * (raw - null) / (perfect - null) if perfect != null else math.nan
    return NabResult(
        profile=prof.name,
        threshold=threshold,
        raw_score=raw,
        null_score=null,
        perfect_score=perfect,
        normalized_score=normalized,
        tp=sum(r.tp for r in per_series.values()),
        fp=sum(r.fp for r in per_series.values()),
        fn=sum(r.fn for r in per_series.values()),
        tn=sum(r.tn for r in per_series.values()),
        total=sum(r.total for r in per_series.values()),
        per_series=per_series,
        sweep=sweep,
    )
