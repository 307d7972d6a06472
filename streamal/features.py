"""Features for detectors on time series: a short window of recent values.

A single reading says little about a time series; a short window of recent
values shows its shape. :class:`LagWindow` turns each record into the window
that ends with it (river has no such transformer: ``stats.Shift`` keeps one
lag of one variable, ``feature_extraction.Agg`` aggregates by group).
:class:`Lagged` puts a window in front of any anomaly detector.

Why a wrapper and not a river ``Pipeline``: a pipeline updates an
unsupervised transformer *before* transforming the record it learns, so the
window it would learn from already contains the record twice, while the
window it scores from does not. :class:`Lagged` scores and learns from the
same window and advances it after learning, whatever the wrapped detector
decides to learn (a gated detector skips anomalous windows, but time still
moves on).

Examples
--------
>>> window = LagWindow(size=3)
>>> for v in [1.0, 2.0]:
...     window.learn_one({"v": v})
>>> window.transform_one({"v": 4.0})
{'v_lag0': 4.0, 'v_lag1': 2.0, 'v_lag2': 1.0}
"""

from __future__ import annotations

import collections
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
from river import anomaly, base

from streamal.piece_state import export_child, floats, load_child


class LagWindow(base.Transformer):
    """The last ``size`` values of every numeric feature, newest first.

    ``transform_one(x)`` returns ``{f"{name}_lag{k}": value}`` for ``k`` in
    ``0..size-1`` (``k`` zero-padded to the width of ``size - 1``, so names
    sort by lag): lag 0 is ``x`` itself, lag ``k`` the value ``k`` learnt
    records ago. ``learn_one(x)`` appends ``x`` to the history. Before
    ``size - 1`` records have been learnt, the oldest known value repeats (a
    fresh series looks flat rather than missing, so detectors that fix their
    features on the first record, such as river's LODA, see every lag).

    Parameters
    ----------
    size
        Number of lags, the current value included.
    diff
        Give first differences ``v_t − v_{t−1}`` instead of values (``0``
        for the very first record). Differences forget the level and keep the
        shape, so a series that drifts looks stationary.

    A missing feature (absent, ``None`` or NaN) is carried forward from its
    last known value; a feature never seen yet is left out.

    Examples
    --------
    >>> window = LagWindow(size=3, diff=True)
    >>> for v in [10.0, 11.0, 13.0]:
    ...     window.learn_one({"v": v})
    >>> window.transform_one({"v": 12.0})
    {'v_lag0': -1.0, 'v_lag1': 2.0, 'v_lag2': 1.0}
    """

    def __init__(self, size: int = 32, diff: bool = False):
        self.size = size
        self.diff = diff

    @classmethod
    def _unit_test_params(cls):
        yield {"size": 3}
        yield {"size": 2, "diff": True}

    def _history(self) -> dict[str, collections.deque[float]]:
        history = getattr(self, "_values", None)
        if history is None:
            if self.size < 1:
                raise ValueError(f"size must be at least 1, got {self.size}")
            history = {}
            self._values: dict[str, collections.deque[float]] = history
        return history

    @staticmethod
    def _numbers(x: dict) -> dict[str, float]:
        out = {}
        for name, value in x.items():
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                number = float(value)
                if math.isfinite(number):
                    out[name] = number
        return out

    def _current(self, x: dict) -> dict[str, float]:
        """``x``'s numeric values, missing ones carried forward from the history."""
        current = self._numbers(x)
        for name, past in self._history().items():
            if name not in current and past:
                current[name] = past[-1]
        return current

    def transform_one(self, x: dict) -> dict:
        """The window ending with ``x`` (pure: the history does not change)."""
        history = self._history()
        need = self.size + 1 if self.diff else self.size
        width = len(str(self.size - 1))
        out: dict[str, float] = {}
        for name, value in self._current(x).items():
            series = [value, *reversed(history.get(name, ()))][:need]  # newest first
            series += [series[-1]] * (need - len(series))
            for k in range(self.size):
                v = series[k] - series[k + 1] if self.diff else series[k]
                out[f"{name}_lag{k:0{width}d}"] = v
        return out

    def learn_one(self, x: dict) -> None:
        """Append ``x`` to the history."""
        history = self._history()
        for name, value in self._current(x).items():
            history.setdefault(name, collections.deque(maxlen=self.size)).append(value)

    # ---- checkpoints (see streamal.piece_state) ------------------------------------
    def _export_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The history: one array per feature, the names (in order) in the meta."""
        history = self._history()
        arrays = {f"values.{i}": floats(values) for i, values in enumerate(history.values())}
        return arrays, {"names": list(history)}

    def _load_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Load what :meth:`_export_state` wrote into this twin (same ``size``)."""
        history = self._history()
        history.clear()
        for i, name in enumerate(meta["names"]):
            history[str(name)] = collections.deque(
                (float(v) for v in arrays[f"values.{i}"]), maxlen=self.size)


class Lagged(base.AnomalyDetector):
    """A detector that sees the :class:`LagWindow` ending with each record.

    ``score_one(x)`` scores the window ending with ``x``; ``learn_one(x)``
    passes that same window to the detector (which may decline to learn it,
    e.g. a gated :class:`~streamal.calibration.RankCalibrator`) and then
    appends ``x`` to the window's history.

    Parameters
    ----------
    detector
        Any anomaly detector taking the window's features.
    window
        The lag window (default: ``LagWindow()``).

    Examples
    --------
    >>> import math
    >>> from streamal import ActivationDetector
    >>> model = Lagged(ActivationDetector(seed=0), LagWindow(size=4, diff=True))
    >>> for t in range(500):
    ...     x = {"v": math.sin(t / 5)}
    ...     _ = model.score_one(x)
    ...     model.learn_one(x)
    >>> normal = model.score_one({"v": math.sin(500 / 5)})
    >>> jump = model.score_one({"v": 3.0})
    >>> normal < jump
    True
    """

    def __init__(self, detector: base.Estimator, window: LagWindow | None = None):
        self.detector = detector
        self.window = window

    @classmethod
    def _unit_test_params(cls):
        from river import preprocessing

        yield {
            "detector": preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=0),
            "window": LagWindow(size=3, diff=True),
        }

    def _lags(self) -> LagWindow:
        if self.window is None:
            if getattr(self, "_default_window", None) is None:
                self._default_window = LagWindow()
            return self._default_window
        return self.window

    def score_one(self, x: dict) -> float:
        """Score of the window ending with ``x``; changes nothing."""
        return self.detector.score_one(self._lags().transform_one(x))  # type: ignore[attr-defined]

    def learn_one(self, x: dict) -> None:
        """Learn the window ending with ``x``, then move the window on."""
        lags = self._lags()
        self.detector.learn_one(lags.transform_one(x))  # type: ignore[attr-defined]
        lags.learn_one(x)

    def classify(self, score: float) -> bool:
        """The wrapped detector's alert decision, when it has one."""
        return bool(self.detector.classify(score))  # type: ignore[attr-defined]

    # ---- checkpoints (see streamal.piece_state) ------------------------------------
    def _export_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The window's and the detector's state."""
        arrays, window = export_child(self._lags(), "window.")
        more, detector = export_child(self.detector, "detector.")
        return {**arrays, **more}, {"window": window, "detector": detector}

    def _load_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Load what :meth:`_export_state` wrote into this twin (same parameters)."""
        load_child(self._lags(), arrays, meta["window"], "window.")
        self.detector = load_child(self.detector, arrays, meta["detector"], "detector.")
