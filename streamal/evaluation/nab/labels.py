"""NAB inputs: label windows, detector output, and the rows each window covers."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

__all__ = [
    "SeriesInput",
    "WindowsInput",
    "as_time_values",
    "read_nab_labels",
    "split_series",
    "window_rows",
    "windows_from_labels",
]

SeriesInput: TypeAlias = pd.DataFrame | pd.Series | tuple[Any, Any]
WindowsInput: TypeAlias = Mapping[str, Sequence[Sequence[Any]]]


def windows_from_labels(
    labels: WindowsInput,
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
        for (_, prev_end), (start, _) in zip(parsed, parsed[1:]):
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


def as_time_values(values: Any) -> np.ndarray:
    """Numbers stay numbers; anything else becomes naive ``datetime64[ns]`` (UTC if aware)."""
    if isinstance(values, (pd.Index, pd.Series)) and isinstance(values.dtype, pd.DatetimeTZDtype):
        idx = pd.DatetimeIndex(values)
    else:
        arr = np.asarray(values)
        if arr.dtype.kind in "iuf":
            return arr
        if arr.dtype.kind == "M":
            return arr.astype("datetime64[ns]")
        idx = pd.DatetimeIndex(pd.to_datetime(arr))
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.to_numpy(dtype="datetime64[ns]")


def split_series(name: str, data: SeriesInput) -> tuple[np.ndarray, np.ndarray]:
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
    times = as_time_values(ts)
    scores = np.asarray(sc, dtype=float)
    if times.ndim != 1 or scores.ndim != 1 or times.shape != scores.shape:
        raise ValueError(f"{name}: timestamps and scores must be 1-D of equal length")
    return times, scores


def window_rows(
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
    starts = as_time_values([w[0] for w in windows])
    ends = as_time_values([w[1] for w in windows])
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
