"""Ground truth for a backtest: labelled time windows (NAB's format) or a label column.

Window labels are a JSON object of series name to ``[start, end]`` windows, both ends
included, as NAB writes them (``{"realKnownCause/nyc_taxi.csv": [["2014-11-01
19:00:00.000000", "2014-11-02 12:00:00.000000"], ...]}``). Times without a zone are UTC,
as the pipeline reads event times. A series name is matched either to the record key
(``decode.key_field``) or to the source file a record came from (see
:func:`match_series`).

Examples
--------
>>> import numpy as np
>>> windows = windows_from_json({"a.csv": [["1970-01-01 00:00:10", "1970-01-01 00:00:20"]]})
>>> windows
{'a.csv': [(10.0, 20.0)]}
>>> match_series(windows, ["data/a.csv", "data/b.csv"], by="file")
({'a.csv': 'data/a.csv'}, [])
>>> in_windows(np.array([5.0, 10.0, 15.0, 21.0]), windows["a.csv"]).tolist()
[False, True, True, False]
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from streamal.evaluation import windows_from_labels

__all__ = [
    "LabelError",
    "anomaly_flag",
    "class_value",
    "in_windows",
    "match_series",
    "read_windows",
    "windows_from_json",
]

Window = tuple[float, float]
"""``(start, end)`` in epoch seconds, both included."""

_TRUE = {"1", "true", "yes", "anomaly", "anomalous"}
_FALSE = {"0", "false", "no", "normal"}


class LabelError(ValueError):
    """Labels that cannot be used: a missing or malformed file, a bad label value."""


def _epoch(stamp: pd.Timestamp) -> float:
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return float(stamp.timestamp())


def windows_from_json(data: Any, origin: str = "labels") -> dict[str, list[Window]]:
    """Windows per series, in epoch seconds, from parsed NAB-format JSON.

    Raises :class:`LabelError` naming ``origin`` when the structure or a time is wrong.
    """
    if not isinstance(data, Mapping) or not all(
            isinstance(w, list) for w in data.values()):
        raise LabelError(f"{origin}: expected a JSON object of series name to a list of "
                         "[start, end] windows (NAB's format)")
    try:
        parsed = windows_from_labels(data)
    except (ValueError, TypeError) as exc:  # pandas' time parse errors are ValueErrors
        raise LabelError(f"{origin}: {exc}") from None
    return {name: [(_epoch(s), _epoch(e)) for s, e in wins] for name, wins in parsed.items()}


def read_windows(path: str | os.PathLike[str]) -> dict[str, list[Window]]:
    """Read a NAB-format window file; ``bundled:NAME`` names one shipped in ``streamal/data``."""
    from streamal.pipelines import SpecError
    from streamal.pipelines.build import resolve_path

    name = os.fspath(path)
    try:
        resolved = resolve_path(name)
    except SpecError as exc:
        raise LabelError(f"labels file {name!r}: {exc.problems[0][1]}") from None
    if not os.path.isfile(resolved):
        raise LabelError(f"labels file {name!r} does not exist")
    try:
        with open(resolved, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LabelError(f"labels file {name!r} is not readable JSON: {exc}") from None
    return windows_from_json(data, f"labels file {name!r}")


def match_series(labels: Iterable[str], seen: Sequence[str],
                 by: str) -> tuple[dict[str, str], list[str]]:
    """Pair each labelled series with a series of the run; return ``(matches, unmatched)``.

    ``by="key"``: the name equals a record key. ``by="file"``: the name equals a
    source file's path, or is its tail after a ``/`` (``realKnownCause/x.csv`` matches
    ``data/realKnownCause/x.csv``), or else has the same base name. A name that fits
    several files raises :class:`LabelError`.

    >>> match_series(["k/x.csv", "y.csv"], ["d/x.csv", "d/z.csv"], by="file")
    ({'k/x.csv': 'd/x.csv'}, ['y.csv'])
    """
    matches: dict[str, str] = {}
    unmatched: list[str] = []
    for name in labels:
        if by == "key":
            found = [s for s in seen if s == name]
        else:
            found = [s for s in seen if s == name or s.endswith("/" + name)]
            if not found:
                base = os.path.basename(name)
                found = [s for s in seen if os.path.basename(s) == base]
        if len(found) > 1:
            raise LabelError(f"labels series {name!r} fits several source files: {found[:5]}")
        if found:
            matches[name] = found[0]
        else:
            unmatched.append(name)
    return matches, unmatched


def in_windows(times: np.ndarray, windows: Sequence[Window]) -> np.ndarray:
    """True where a time lies in one of the windows (NaN times never do)."""
    inside = np.zeros(times.shape, dtype=bool)
    for start, end in windows:
        inside |= (times >= start) & (times <= end)
    return inside


def anomaly_flag(value: Any) -> bool | None:
    """An anomaly label as a bool: 1/0, true/false (also as text); ``None`` when missing.

    >>> [anomaly_flag(v) for v in (1, 0.0, "true", "0", None, True)]
    [True, False, True, False, None, True]
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise LabelError(f"{value!r} is not an anomaly label (1/true = anomalous, 0/false = normal)")


def class_value(value: Any) -> Any:
    """A class label made comparable: NumPy scalars unwrapped, whole floats as ints.

    CSV columns with gaps are read as floats, so ``3.0`` there is the class ``3``.

    >>> class_value(3.0), class_value("a"), class_value(float("nan"))
    (3, 'a', None)
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return int(value)
    return value
