"""A seasonal check for univariate series: is today unlike the same time one period ago?

A window of recent first differences sees the *shape* of the last few records,
not their context: a daily peak that never comes, a lower peak, a holiday that
looks like a quiet Sunday on a Thursday all have ordinary differences. They do
differ from the same stretch one period earlier. :class:`SeasonalCheck` finds
the period of the series from its first ``probation`` records
(:func:`estimate_period`), then scores each record by the size of the seasonal
difference ``v_t − v_{t−T}``, averaged over the last tenth of a period, and
ranks that with its own :class:`~streamal.calibration.RankCalibrator`. A
series with no clear period gets no check (score 0). Put it beside a detector
with :class:`~streamal.calibration.Strongest`, as
:func:`~streamal.estimators.detector.series_detector` does.

Examples
--------
A daily pattern of 48 records whose peak fails to come on one day:

>>> import math, random
>>> from streamal.calibration import RankCalibrator
>>> rng = random.Random(0)
>>> def value(t):
...     peak = 0.0 if 1000 <= t < 1048 else 1.0
...     return peak * max(math.sin(2 * math.pi * t / 48), 0.0) + rng.gauss(0, 0.05)
>>> check = SeasonalCheck(RankCalibrator(Magnitude(), window=300, grace=50), probation=300)
>>> scores = []
>>> for t in range(1200):
...     x = {"v": value(t)}
...     scores.append(check.score_one(x))
...     check.learn_one(x)
>>> ordinary, missing = scores[952:1000], scores[1000:1048]  # a day each
>>> check.period, sum(s >= 0.99 for s in ordinary), sum(s >= 0.99 for s in missing)
(48, 2, 26)
"""

from __future__ import annotations

import collections
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
from river import base

from streamal.piece_state import export_child, floats, load_child

_PEAK_TOLERANCE = 0.02


def estimate_period(values: Any, min_correlation: float = 0.8) -> int | None:
    """The period of a series, in records, from its autocorrelation; ``None`` if it has none.

    The period is the lag of the highest autocorrelation after the
    autocorrelation first turns negative (so the slow decay of a smooth
    series is no period), among lags below half the length; a shorter lag
    whose peak comes within 0.02 of the highest wins (twice the period
    correlates as well as the period). It counts only if that
    autocorrelation (each lag's products averaged over the pairs it has)
    reaches ``min_correlation``.

    Examples
    --------
    >>> import math
    >>> estimate_period([math.sin(2 * math.pi * t / 24) for t in range(200)])
    24
    >>> import random
    >>> rng = random.Random(0)
    >>> print(estimate_period([rng.gauss(0, 1) for _ in range(200)]))
    None
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)] - np.mean(x[np.isfinite(x)]) if x.size else x
    n = x.size
    if n < 4 or not np.any(x):
        return None
    spectrum = np.fft.rfft(x, 2 * n)
    covariance = np.fft.irfft(spectrum * np.conj(spectrum), 2 * n)[: n // 2]
    lags = np.arange(n // 2)
    correlation = covariance / covariance[0] * n / (n - lags)
    negative = np.flatnonzero(correlation[1:] < 0)
    if negative.size == 0:
        return None
    first = int(negative[0]) + 1
    best = float(np.max(correlation[first:]))
    if best < min_correlation:
        return None
    # multiples of the period correlate as well as the period: the shortest peak near the best
    inner = correlation[first:-1]
    peaks = first + np.flatnonzero(
        (inner >= correlation[first - 1 : -2])
        & (inner >= correlation[first + 1 :])
        & (inner >= best - _PEAK_TOLERANCE)
    )
    return int(peaks[0]) if peaks.size else int(first + np.argmax(correlation[first:]))


class Magnitude(base.AnomalyDetector):
    """Raw score = the largest absolute feature value; learns nothing.

    For features that are already deviations, such as a seasonal difference.

    Examples
    --------
    >>> Magnitude().score_one({"a": -3.0, "b": 2.0})
    3.0
    """

    def score_one(self, x: dict) -> float:
        """``max |x_i|`` (0 for an empty record)."""
        return max((abs(v) for v in x.values()), default=0.0)

    def learn_one(self, x: dict) -> None:
        """Nothing to learn."""

    def _export_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """No state: nothing is learnt."""
        return {}, {}

    def _load_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """No state to load."""


class SeasonalCheck(base.AnomalyDetector):
    """Calibrated score of the seasonal difference of a univariate series.

    The first ``probation`` learnt records are kept; then the period ``T``
    is estimated from them (:func:`estimate_period`). If there is one, the
    kept records are replayed through ``calibrator`` (so it starts with a full
    reference) and from then on ``score_one(x)`` is the calibrated score of
    ``{"season": s}``, where ``s`` is the mean of ``v_t − v_{t−T}`` over the
    last ``max(1, int(smooth·T))`` records (``v_0`` stands in for the values
    before the first). Before the estimate, and for a series without a
    period, the score is 0. The history advances on every ``learn_one``,
    whether or not the calibrator gates the record.

    Parameters
    ----------
    calibrator
        A :class:`~streamal.calibration.RankCalibrator` (or any anomaly
        detector) around a raw detector of the ``{"season": s}`` record,
        usually :class:`Magnitude`.
    probation
        Records to estimate the period from.
    smooth
        Share of a period the seasonal difference is averaged over.
    min_correlation
        Autocorrelation the period needs (see :func:`estimate_period`).

    Records carry one numeric feature (its name does not matter); a missing
    value repeats the last one.

    Examples
    --------
    A daily cycle of 24 records whose peak does not come one day:

    >>> import math
    >>> from streamal.calibration import RankCalibrator
    >>> check = SeasonalCheck(RankCalibrator(Magnitude(), window=200), probation=200)
    >>> day = [math.sin(2 * math.pi * t / 24) for t in range(24)]
    >>> for t in range(486):  # the next record is the day's peak, 1.0
    ...     check.learn_one({"value": day[t % 24] + 0.01 * math.sin(t)})
    >>> check.period
    24
    >>> check.score_one({"value": 1.0}) < 0.9 < check.score_one({"value": -1.0})
    True
    """

    def __init__(
        self,
        calibrator: base.Estimator,
        probation: int = 750,
        smooth: float = 0.1,
        min_correlation: float = 0.8,
    ):
        self.calibrator = calibrator
        self.probation = probation
        self.smooth = smooth
        self.min_correlation = min_correlation

    @classmethod
    def _unit_test_params(cls):
        from streamal.calibration import RankCalibrator

        yield {"calibrator": RankCalibrator(Magnitude(), window=20, grace=5), "probation": 30}

    def _ensure_state(self) -> None:
        if getattr(self, "_past", None) is not None:
            return
        if self.probation < 4:
            raise ValueError(f"probation must be at least 4, got {self.probation}")
        self._kept: list[float] | None = []  # the probation records, until the estimate
        self._period: int | None = None
        self._first = math.nan
        self._past: collections.deque[float] = collections.deque()
        self._diffs: collections.deque[float] = collections.deque()
        self._last = math.nan

    @property
    def period(self) -> int | None:
        """The estimated period in records (``None`` before the estimate or without one)."""
        self._ensure_state()
        return self._period

    def _value(self, x: dict) -> float:
        found = [
            float(v)
            for v in x.values()
            if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        ]
        if len(found) > 1:
            raise ValueError(f"SeasonalCheck watches one feature; got {len(found)}: {x!r}")
        return found[0] if found else self._last

    def _season(self, value: float) -> dict[str, float]:
        """The ``{"season": s}`` record of ``value`` as the next record of the series."""
        assert self._period is not None
        before = self._past[0] if len(self._past) == self._period else self._first
        diffs = [*self._diffs, value - before][-max(1, int(self.smooth * self._period)) :]
        return {"season": sum(diffs) / len(diffs)}

    def _advance(self, value: float) -> None:
        assert self._period is not None
        season = self._season(value)
        self.calibrator.learn_one(season)  # type: ignore[attr-defined]
        before = self._past[0] if len(self._past) == self._period else self._first
        self._diffs.append(value - before)
        if len(self._diffs) > max(1, int(self.smooth * self._period)):
            self._diffs.popleft()
        self._past.append(value)
        if len(self._past) > self._period:
            self._past.popleft()

    def score_one(self, x: dict) -> float:
        """Calibrated seasonal score of ``x`` (0 while there is no period); changes nothing."""
        self._ensure_state()
        value = self._value(x)
        if self._period is None or math.isnan(value):
            return 0.0
        return float(self.calibrator.score_one(self._season(value)))  # type: ignore[attr-defined]

    def learn_one(self, x: dict) -> None:
        """Move the series on; estimate the period once ``probation`` records are known."""
        self._ensure_state()
        value = self._value(x)
        if math.isnan(value):
            return
        self._last = value
        if self._period is not None:
            self._advance(value)
            return
        if self._kept is None:
            return  # no period: nothing more to do
        self._kept.append(value)
        if len(self._kept) == self.probation:
            kept, self._kept = self._kept, None
            self._period = estimate_period(kept, self.min_correlation)
            if self._period is not None:
                self._first = kept[0]
                for v in kept:
                    self._advance(v)

    def classify(self, score: float) -> bool:
        """The calibrator's alert decision."""
        return bool(self.calibrator.classify(score))  # type: ignore[attr-defined]

    # ---- checkpoints (see streamal.piece_state) ------------------------------------
    def _export_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The kept records (before the estimate), the history, the period, the calibrator."""
        self._ensure_state()
        arrays, calibrator = export_child(self.calibrator, "calibrator.")
        arrays.update(kept=floats(self._kept or ()), past=floats(self._past),
                      diffs=floats(self._diffs), ends=floats((self._first, self._last)))
        meta = {"estimating": self._kept is not None, "period": self._period,
                "calibrator": calibrator}
        return arrays, meta

    def _load_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Load what :meth:`_export_state` wrote into this twin (same parameters)."""
        self._ensure_state()
        self.calibrator = load_child(self.calibrator, arrays, meta["calibrator"], "calibrator.")
        self._kept = [float(v) for v in arrays["kept"]] if meta["estimating"] else None
        self._period = None if meta["period"] is None else int(meta["period"])
        self._past = collections.deque(float(v) for v in arrays["past"])
        self._diffs = collections.deque(float(v) for v in arrays["diffs"])
        self._first, self._last = (float(v) for v in arrays["ends"])
