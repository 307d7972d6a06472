"""From feature dicts to the network's input: schema, online scaling, unit length.

A record ``{"temp": 71.2, "rpm": 3010}`` becomes a vector in three steps:

1. **schema** — every feature gets a column on first sight (new features of
   one record in sorted order, so dict order never matters); a column absent
   from a record is *missing* there, and its weights are frozen for it;
2. **standardise** — ``z = (v − μ) / σ`` with running moments of each column,
   so sensors in the thousands and in 1e-3 mix with the defaults;
3. **normalise** — a constant *bias* unit ``bias · √(present features)`` is
   appended and the whole vector is scaled to unit length. The bias unit keeps
   the size of the deviation: a record near the mean points along the bias
   axis, a record far from it points away from it.

Examples
--------
>>> import numpy as np
>>> schema = FeatureSchema(max_features=10)
>>> schema.register([{"b": 1.0, "a": 2.0}])
['a', 'b']
>>> schema.to_matrix([{"a": 1.0}])
array([[ 1., nan]])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

Z_CLIP = 1e3
"""Standardised values are clipped to ±Z_CLIP so no finite input can overflow."""

MAX_MAGNITUDE = 1e100
"""Values beyond ±MAX_MAGNITUDE are rejected: their squares would overflow the running
variance (1e300² is infinite) and spoil the feature for every later record."""


def check_magnitude(name: object, value: float) -> None:
    """Raise ``ValueError`` naming the feature when ``value`` is not finite or too large."""
    if not math.isfinite(value):
        raise ValueError(f"feature {name!r} is not finite: {value!r}")
    if abs(value) > MAX_MAGNITUDE:
        raise ValueError(f"feature {name!r} is too large: {value!r} (limit ±{MAX_MAGNITUDE:g})")


_PLAIN_TYPES = (float, int)


def plain_values(
    x: Mapping[str, Any], order: tuple[str, ...], checked: bool = True
) -> np.ndarray | None:
    """``x``'s values as float64 when it has exactly the features ``order``, in that
    order, each a finite float, int or bool within ``±MAX_MAGNITUDE``; else ``None``.

    The fast way in for the common record; ``None`` sends a record to
    :func:`validate_features` and the schema, which take (or reject) anything else.
    ``checked=False`` leaves out the bound on the magnitudes (not the test for NaN
    and infinities), for a caller that applies it itself.

    Examples
    --------
    >>> plain_values({"a": 1.5, "b": 2}, ("a", "b"))
    array([1.5, 2. ])
    >>> plain_values({"b": 2.0, "a": 1.5}, ("a", "b")) is None  # another order
    True
    >>> [plain_values({"a": v, "b": 2.0}, ("a", "b")) for v in (float("nan"), "1", None, 1e200)]
    [None, None, None, None]
    """
    if tuple(x) != order:
        return None
    values = x.values()
    try:
        # A finite sum of type float or int means finite numbers that float() reads
        # as validate_features does: a str, None, Decimal or complex fails here or
        # sums to another type, and so do numpy scalars (they take the general way).
        total = sum(values)
    except (TypeError, OverflowError):
        return None
    if type(total) not in _PLAIN_TYPES or total - total != 0:
        return None
    if checked and max(map(abs, values), default=0) > MAX_MAGNITUDE:
        return None
    try:
        return np.fromiter(values, np.float64, len(order))
    except OverflowError:  # an int beyond the float range
        return None


class FeatureLimitError(ValueError):
    """A record would take the model past its cap on the number of features."""


def validate_features(x: Mapping[str, Any]) -> dict[str, float]:
    """Return ``x`` as ``{name: float}``, dropping ``None`` values (missing).

    Raises ``ValueError`` naming the feature for a non-numeric or non-finite
    value. Booleans count as 0/1.

    Examples
    --------
    >>> validate_features({"a": 1, "b": None, "c": True})
    {'a': 1.0, 'c': 1.0}
    >>> validate_features({"a": float("nan")})
    Traceback (most recent call last):
    ...
    ValueError: feature 'a' is not finite: nan
    """
    clean: dict[str, float] = {}
    for name, value in x.items():
        # the common case, without the ABC check: a finite float within the limits
        # (NaN and ±inf fail the comparison and go on to the full checks below)
        if type(value) is float and -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
            clean[name if type(name) is str else str(name)] = value
            continue
        if type(value) is float:
            check_magnitude(name, value)
        if value is None:
            continue
        if not isinstance(value, numbers.Real):
            raise ValueError(f"feature {name!r} is not a number: {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an int beyond the float range
            raise ValueError(f"feature {name!r} is too large: {value!r}") from None
        check_magnitude(name, number)
        clean[str(name)] = number
    return clean


class FeatureSchema:
    """The columns of the model's input, in order of first appearance.

    Parameters
    ----------
    max_features
        Cap on the number of columns; a record that would pass it raises
        :class:`FeatureLimitError` and changes nothing.
    """

    def __init__(self, max_features: int = 1024, names: Sequence[str] = ()):
        self.max_features = max_features
        self.names: list[str] = list(names)
        self.index = {name: i for i, name in enumerate(self.names)}
        # names as a tuple: tuple(record) == order finds a record with every feature, in order
        self.order = tuple(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def new_names(self, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Features of ``rows`` not yet in the schema, in registration order."""
        seen: dict[str, None] = {}
        for row in rows:
            for name in sorted(k for k in row if k not in self.index and k not in seen):
                seen[name] = None
        new = list(seen)
        if len(self.names) + len(new) > self.max_features:
            raise FeatureLimitError(
                f"{len(new)} new feature(s) {new[:5]} would exceed max_features="
                f"{self.max_features} (the model has {len(self.names)})"
            )
        return new

    def register(self, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        """Add the new features of ``rows``; return them in the order added."""
        new = self.new_names(rows)
        for name in new:
            self.index[name] = len(self.names)
            self.names.append(name)
        self.order = tuple(self.names)
        return new

    def to_matrix(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """``(len(rows), len(self))`` float64 values, NaN where missing; unknown keys ignored."""
        matrix = np.full((len(rows), len(self.names)), np.nan)
        for r, row in enumerate(rows):
            for name, value in row.items():
                column = self.index.get(name)
                if column is not None:
                    matrix[r, column] = value
        return matrix


class RunningMoments:
    """Per-column count, mean and variance, merged batch by batch (Chan et al.).

    Missing values (NaN) are left out of their column's statistics.

    Examples
    --------
    >>> import numpy as np
    >>> m = RunningMoments(1)
    >>> m.update(np.array([[1.0], [3.0]]))
    >>> m.update(np.array([[5.0], [np.nan]]))
    >>> m.mean, m.var
    (array([3.]), array([2.66666667]))
    """

    def __init__(self, size: int = 0):
        self.count = np.zeros(size)
        self.mean = np.zeros(size)
        self.m2 = np.zeros(size)
        self._refresh()

    def _refresh(self) -> None:
        """Cache :attr:`scale` for the current arrays (only learning calls this, so
        scoring never changes the object). The cache is used only while ``count``,
        ``mean`` and ``m2`` are still the very arrays it was computed from;
        :meth:`update` keeps it current in place."""
        self._scaled = (self.count, self.mean, self.m2, self.scale)

    def current(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(count, mean, m2, scale)`` as they are, to read (:meth:`owned` to write);
        :attr:`scale` comes from the cache while it is the current arrays'."""
        cached = self._scaled
        if cached[0] is self.count and cached[1] is self.mean and cached[2] is self.m2:
            return cached
        return (self.count, self.mean, self.m2, self.scale)

    @property
    def var(self) -> np.ndarray:
        return np.divide(self.m2, self.count, out=np.zeros_like(self.m2), where=self.count > 0)

    def grow(self, extra: int) -> None:
        """Add ``extra`` empty columns."""
        self.count = np.concatenate([self.count, np.zeros(extra)])
        self.mean = np.concatenate([self.mean, np.zeros(extra)])
        self.m2 = np.concatenate([self.m2, np.zeros(extra)])
        self._refresh()

    def owned(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(count, mean, m2, scale)``: the object's own arrays, which :meth:`update`
        and the compiled kernels change in place (arrays assigned from outside are
        copied first, so only the object's own are ever written)."""
        cached = self._scaled
        if not (cached[0] is self.count and cached[1] is self.mean and cached[2] is self.m2):
            self.count, self.mean, self.m2 = (
                np.array(a, dtype=np.float64) for a in (self.count, self.mean, self.m2)
            )
            self._refresh()
        return self._scaled

    def update(self, values: np.ndarray) -> None:
        """Fold a ``(B, size)`` batch into the statistics, in place (a compiled kernel)."""
        from streamal.kernels import moments_update, writable_rows  # numba loads on first use

        moments_update(writable_rows(values), *self.owned())

    def standardise(self, values: np.ndarray) -> np.ndarray:
        """``(v − μ) / σ`` per column, clipped to ``±Z_CLIP``; NaN stays NaN.

        A column with (almost) no spread yet uses a floor of ``1e-6·(|μ| + 1e-6)``
        so a constant sensor that moves is flagged instead of dividing by zero.
        """
        z = (values - self.mean) / self.current()[3]
        return np.minimum(np.maximum(z, -Z_CLIP), Z_CLIP)  # np.clip, less overhead; NaN stays

    @property
    def scale(self) -> np.ndarray:
        """The standard deviation, floored at ``1e-6·(|μ| + 1e-6)``."""
        return np.maximum(np.sqrt(self.var), 1e-6 * (np.abs(self.mean) + 1e-6))

    def unstandardise(self, z: np.ndarray) -> np.ndarray:
        """Back from standardised values to each column's own scale."""
        return self.mean + z * self.scale


def unit_inputs(z: np.ndarray, bias: float) -> tuple[np.ndarray, np.ndarray]:
    """Append the bias unit to standardised rows and scale each to unit length.

    Returns ``(inputs, mask)``: ``(B, d + 1)`` unit-length rows (missing values
    as 0) and the mask of present units (the bias unit is always present).

    Examples
    --------
    >>> import numpy as np
    >>> x, mask = unit_inputs(np.array([[3.0, np.nan]]), bias=4.0)
    >>> x
    array([[0.6, 0. , 0.8]])
    >>> mask
    array([[1., 0., 1.]])
    """
    present = ~np.isnan(z)
    rows = unit_rows(z, bias, present)
    mask = np.ones(rows.shape)
    mask[:, :-1] = present
    return rows, mask


def unit_rows(z: np.ndarray, bias: float, present: np.ndarray | None = None) -> np.ndarray:
    """The first result of :func:`unit_inputs`, without the mask (for scoring).

    ``present`` (``~np.isnan(z)``) may be passed when the caller has it.

    Examples
    --------
    >>> import numpy as np
    >>> unit_rows(np.array([[3.0, np.nan]]), bias=4.0)
    array([[0.6, 0. , 0.8]])
    """
    if present is None:
        present = ~np.isnan(z)
    rows = np.empty((z.shape[0], z.shape[1] + 1))
    if present.all():
        rows[:, :-1] = z
        rows[:, -1] = bias * math.sqrt(max(z.shape[1], 1))
    else:
        np.copyto(rows[:, :-1], np.where(present, z, 0.0))
        n_present = np.maximum(present.sum(axis=1), 1)
        rows[:, -1] = bias * np.sqrt(n_present)
    norms = np.sqrt(np.add.reduce(rows * rows, axis=1, keepdims=True))
    return rows / norms
