"""What a detection on each row would earn (NAB rules 2-5), per series and per corpus."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamal.evaluation.nab.labels import (
    SeriesInput,
    WindowsInput,
    as_time_values,
    split_series,
    window_rows,
)
from streamal.evaluation.nab.profiles import NabProfile, resolve_profile, scaled_sigmoid

__all__ = [
    "DEFAULT_PROBATION_PERCENT",
    "NabRowWeights",
    "Prepared",
    "nab_row_weights",
    "null_score",
    "prepare",
    "probationary_length",
    "row_weights",
]

#: Default share of a series in the probationary period (NAB's ``probationPercent``).
DEFAULT_PROBATION_PERCENT = 0.15


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


def row_weights(
    name: str,
    times: np.ndarray,
    windows: Sequence[Sequence[Any]],
    prof: NabProfile,
    probation_percent: float,
) -> NabRowWeights:
    """:func:`nab_row_weights` for timestamps already through :func:`as_time_values`."""
    rows = window_rows(name, times, windows)
    n = times.size
    weight = np.empty(n, dtype=float)
    window_index = np.full(n, -1, dtype=np.int64)
    max_tp = scaled_sigmoid(-1.0)
    prev_right: int | None = None
    prev_width = 0.0
    cursor = 0
    for k, (left, right) in enumerate([*rows, (n, n)]):
        # Rows cursor..left-1 are outside every window: cost after the previous window.
        for i in range(cursor, left):
            if prev_right is None:
                unweighted = -1.0
            else:
                denominator = prev_width - 1
                pos = (i - prev_right) / denominator if denominator > 0 else math.inf
                unweighted = scaled_sigmoid(pos)
            weight[i] = unweighted * prof.a_fp
        if k == len(rows):
            break
        width = float(right - left + 1)
        for i in range(left, right + 1):
            weight[i] = scaled_sigmoid(-(right - i + 1) / width) * prof.a_tp / max_tp
        window_index[left : right + 1] = k
        prev_right, prev_width, cursor = right, width, right + 1
    return NabRowWeights(weight, window_index, probationary_length(n, probation_percent), rows)


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
    prof = resolve_profile(profile)
    return row_weights("series", as_time_values(timestamps), windows, prof, probation_percent)


@dataclass(frozen=True)
class Prepared:
    """One series, rows past probation only; window indices are corpus-global."""

    scores: np.ndarray
    weight: np.ndarray
    window_index: np.ndarray
    n_windows: int
    n_scored_windows: int
    probationary_rows: int


def prepare(
    scores: Mapping[str, SeriesInput],
    windows: WindowsInput,
    prof: NabProfile,
    probation_percent: float,
) -> dict[str, Prepared]:
    """Scores, weights and global window ids past probation, per series in input order."""
    prepared: dict[str, Prepared] = {}
    offset = 0
    for name, data in scores.items():
        if name not in windows:
            raise KeyError(f"no windows given for series {name!r} (pass [] if it has none)")
        times, values = split_series(name, data)
        rw = row_weights(name, times, windows[name], prof, probation_percent)
        p, n_windows = rw.probationary_rows, len(rw.window_rows)
        wid = rw.window_index[p:]
        # Global ids: offset + local index (windows wholly in probation simply never appear).
        gid = np.where(wid >= 0, wid + offset, -1)
        n_scored = sum(right >= p for _, right in rw.window_rows)
        prepared[name] = Prepared(values[p:], rw.weight[p:], gid, n_windows, n_scored, p)
        offset += n_windows
    return prepared


def null_score(prepared: Mapping[str, Prepared], prof: NabProfile) -> float:
    """Raw score of NAB's never-firing detector: ``-A_fn`` x windows past probation."""
    return float(sum(-prof.a_fn * p.n_scored_windows for p in prepared.values()))
