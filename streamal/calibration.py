"""Per-series score calibration: one alert threshold for detectors on any scale.

A raw anomaly score means little on its own: 0.3 may be routine for a noisy
sensor and alarming for a quiet one. NAB applies one threshold to every series
and SKAB one to every file, so raw scores on different scales lose.
:class:`RankCalibrator` wraps one detector per series and turns its raw score
into the score's *rank* among the recent raw scores of records it learnt, in
``[0, 1]``: ``0.99`` means "higher than 99 % of what normal looked like
lately", whatever the detector and whatever the series. The same wrapper

- **gates learning**: a record whose calibrated score reaches ``gate`` is not
  learnt by the detector and does not join the reference, so a long anomaly
  never becomes the new normal (after ``max_gated`` gated records in a row one
  is let through, so a lasting change of regime is accepted slowly);
- **holds alerts off**: after a score reaches ``alert``, the next ``holdoff``
  scores are capped at ``cap`` (one alert per incident, as event-scored
  benchmarks such as NAB expect), and those records are learnt whatever their
  score: the incident has been reported, the model adapts to it.

It follows river's wrapper convention (``anomaly.QuantileFilter``): it is an
anomaly detector itself, ``score_one`` changes nothing and ``learn_one``
updates the wrapper and, unless gated, the wrapped detector. river's
``QuantileFilter`` gates learning too, but it classifies against one running
quantile and returns the raw score, so it cannot put different series on one
scale; ``GaussianScorer`` models a univariate target, not another detector's
scores.

Examples
--------
Two series whose raw scores differ by a factor of 1000 end up on one scale:

>>> import random
>>> from river import anomaly
>>> rng = random.Random(0)
>>> quiet = RankCalibrator(anomaly.GaussianScorer(grace_period=1), window=200, grace=50)
>>> loud = RankCalibrator(anomaly.GaussianScorer(grace_period=1), window=200, grace=50)
>>> for _ in range(300):
...     quiet.learn_one(None, rng.gauss(0, 0.001))
...     loud.learn_one(None, rng.gauss(0, 1.0))
>>> round(quiet.score_one(None, 0.002), 2), round(loud.score_one(None, 2.0), 2)
(0.97, 0.97)
"""

from __future__ import annotations

import bisect
import collections
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from river import anomaly, base

from streamal.piece_state import export_child, floats, load_child


def _is_supervised(detector: Any) -> bool:
    """Whether ``detector`` scores and learns ``(x, y)`` (e.g. ``GaussianScorer``)."""
    return isinstance(detector, base.SupervisedAnomalyDetector) or bool(
        getattr(detector, "_supervised", False)
    )


def _call(detector: Any, method: str, x: Any, y: Any) -> Any:
    """``detector.method(x, y)`` for a supervised detector, ``detector.method(x)`` otherwise."""
    if _is_supervised(detector):
        return getattr(detector, method)(x, y)
    return getattr(detector, method)(x)


def _record_key(x: Any, y: Any) -> Any:
    """An identity for a record, to reuse the raw score computed by ``score_one``."""
    if isinstance(x, dict):
        return (tuple(x.items()), y)
    return (x, y)


class RankCalibrator(base.AnomalyDetector):
    """Score = rank of the (smoothed) raw score among recent normal ones; gated learning.

    Parameters
    ----------
    detector
        Any river anomaly detector (or pipeline ending in one), higher raw
        score = more anomalous. Supervised ones (``score_one(x, y)``, such as
        ``GaussianScorer``) work too.
    window
        Number of recent reference scores the rank is taken against.
    grace
        Reference scores needed before calibrated scores are given; until
        then the score is 0 (no alert while nothing is known).
    smooth
        The raw score is first averaged over the last ``smooth`` records
        (``1`` = no smoothing).
    alert
        Calibrated score at which a record is an alert (:meth:`classify`) and
        starts a hold-off.
    gate
        Records whose calibrated score is at least ``gate`` are neither learnt
        by the detector nor added to the reference. ``None`` learns everything.
    max_gated
        After this many gated records in a row, the next one is learnt
        anyway; ``None`` never lets one through.
    holdoff
        Records after an alert whose scores are capped at ``cap`` and which
        are learnt whatever their score (``0``: no hold-off).
    cap
        The cap during a hold-off; below ``alert``.
    learn_first
        The first ``learn_first`` records are always learnt: a warm-up on data
        known to be normal, such as SKAB's training part.
    skip
        The scores of the first ``skip`` records stay out of the reference: a
        fresh detector finds everything anomalous at first.

    The calibrated score is ``#{reference < s} / #reference`` for the smoothed
    raw score ``s``. Ties count as "not above", so a constant stream scores 0,
    and only a score above every reference one scores exactly 1.

    Examples
    --------
    >>> import random
    >>> from streamal.calibration import RankCalibrator
    >>> from streamal.estimators.detector import ActivationDetector
    >>> rng = random.Random(1)
    >>> model = RankCalibrator(ActivationDetector(seed=0), window=300, grace=100)
    >>> for _ in range(600):
    ...     v = rng.gauss(0, 1)
    ...     x = {"a": v, "b": 2 * v + rng.gauss(0, 0.1)}
    ...     _ = model.score_one(x)
    ...     model.learn_one(x)
    >>> model.score_one({"a": 0.5, "b": 1.0}) < 0.9, model.score_one({"a": 1.0, "b": -2.0})
    (True, 1.0)
    """

    def __init__(
        self,
        detector: base.Estimator,
        window: int = 750,
        grace: int = 100,
        smooth: int = 1,
        alert: float = 0.99,
        gate: float | None = 0.99,
        max_gated: int | None = 100,
        holdoff: int = 0,
        cap: float = 0.5,
        learn_first: int = 0,
        skip: int = 0,
    ):
        self.detector = detector
        self.window = window
        self.grace = grace
        self.smooth = smooth
        self.alert = alert
        self.gate = gate
        self.max_gated = max_gated
        self.holdoff = holdoff
        self.cap = cap
        self.learn_first = learn_first
        self.skip = skip

    @classmethod
    def _unit_test_params(cls):
        from river import preprocessing

        yield {
            "detector": preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=0),
            "window": 50,
            "grace": 5,
            "smooth": 2,
            "holdoff": 3,
        }

    def _ensure_state(self) -> None:
        if getattr(self, "_reference", None) is not None:
            return
        if self.window < 1 or self.grace < 1 or self.smooth < 1:
            raise ValueError("window, grace and smooth must be at least 1")
        if self.holdoff < 0:
            raise ValueError(f"holdoff must be >= 0, got {self.holdoff}")
        self._reference: collections.deque[float] = collections.deque()
        self._sorted: list[float] = []
        self._recent: collections.deque[float] = collections.deque(maxlen=self.smooth - 1)
        self._seen = 0
        self._gated_run = 0
        self._held = 0
        self._cache: tuple[Any, float] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # the one-record score cache is a shortcut, not state: leave it out
        return {k: v for k, v in self.__dict__.items() if k != "_cache"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "_reference" in state:
            self._cache = None

    # ---- the wrapped detector -------------------------------------------------
    @property
    def _supervised(self) -> bool:
        return _is_supervised(self.detector)

    def _raw(self, x: Any, y: Any) -> float:
        """The detector's raw score of ``x``, reusing the one of the last ``score_one``."""
        key = _record_key(x, y)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        raw = float(_call(self.detector, "score_one", x, y))
        self._cache = (key, raw)
        return raw

    # ---- scoring ----------------------------------------------------------------
    def _smoothed(self, raw: float) -> float:
        return (sum(self._recent) + raw) / (len(self._recent) + 1)

    def _rank(self, smoothed: float) -> float:
        n = len(self._sorted)
        if n < self.grace or math.isnan(smoothed):
            return 0.0
        return bisect.bisect_left(self._sorted, smoothed) / n

    def score_one(self, x: Any, y: Any = None) -> float:
        """Calibrated score of ``x`` in ``[0, 1]`` (capped during a hold-off); changes nothing."""
        self._ensure_state()
        score = self._rank(self._smoothed(self._raw(x, y)))
        return min(score, self.cap) if self._held > 0 else score

    def classify(self, score: float) -> bool:
        """Whether a calibrated score is an alert."""
        return score >= self.alert

    # ---- learning ---------------------------------------------------------------
    def learn_one(self, x: Any, y: Any = None) -> None:
        """Update the reference and the hold-off and, unless gated, the detector."""
        self._ensure_state()
        raw = self._raw(x, y)
        smoothed = self._smoothed(raw)
        score = self._rank(smoothed)
        self._seen += 1
        learn = (
            self.gate is None
            or self._held > 0
            or self._seen <= self.learn_first
            or score < self.gate
            or (self.max_gated is not None and self._gated_run >= self.max_gated)
        )
        self._gated_run = 0 if learn else self._gated_run + 1
        if self.smooth > 1:
            self._recent.append(raw)
        if learn and self._seen > self.skip and not math.isnan(smoothed):
            self._remember(smoothed)
        if self._held > 0:
            self._held -= 1
        elif self.holdoff and score >= self.alert:
            self._held = self.holdoff
        if learn:
            _call(self.detector, "learn_one", x, y)
        self._cache = None

    def _remember(self, smoothed: float) -> None:
        self._reference.append(smoothed)
        bisect.insort(self._sorted, smoothed)
        if len(self._reference) > self.window:
            old = self._reference.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

    @property
    def n_reference(self) -> int:
        """Number of reference scores held."""
        self._ensure_state()
        return len(self._reference)

    # ---- checkpoints (see streamal.piece_state) ------------------------------------
    def _export_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reference, recent raw scores, counters and the wrapped detector's state."""
        self._ensure_state()
        arrays, detector = export_child(self.detector, "detector.")
        arrays["reference"] = floats(self._reference)
        arrays["recent"] = floats(self._recent)
        meta = {"seen": self._seen, "gated_run": self._gated_run, "held": self._held,
                "detector": detector}
        return arrays, meta

    def _load_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Load what :meth:`_export_state` wrote into this twin (same parameters)."""
        self._ensure_state()
        self.detector = load_child(self.detector, arrays, meta["detector"], "detector.")
        self._reference = collections.deque(float(v) for v in arrays["reference"])
        self._sorted = sorted(self._reference)
        self._recent = collections.deque((float(v) for v in arrays["recent"]),
                                         maxlen=self.smooth - 1)
        self._seen = int(meta["seen"])
        self._gated_run = int(meta["gated_run"])
        self._held = int(meta["held"])
        self._cache = None


class Strongest(base.AnomalyDetector):
    """The highest calibrated score of several detectors that watch the same records.

    Calibrated scores share one scale (a rank among what was normal lately),
    so detectors that look for different things, such as a window of recent
    differences and a :class:`~streamal.seasonal.SeasonalCheck`, can be put
    side by side: ``score_one`` is the largest of their scores, ``learn_one``
    passes the record to each (each keeps its own gating), and a score is an
    alert when any of them would call it one. An alert holds the *combined*
    score off for ``holdoff`` records (capped at ``cap``), so one incident
    seen by two detectors a few records apart is still one alert.

    Parameters
    ----------
    detectors
        The calibrated detectors (at least one).
    holdoff
        Records after an alert whose combined score is capped at ``cap``.
    cap
        The cap during a hold-off.

    Examples
    --------
    Two detectors, each watching one sensor's size:

    >>> import random
    >>> from river import compose
    >>> from streamal.seasonal import Magnitude
    >>> rng = random.Random(2)
    >>> a = RankCalibrator(compose.Select("a") | Magnitude(), window=200, grace=20)
    >>> b = RankCalibrator(compose.Select("b") | Magnitude(), window=200, grace=20)
    >>> both = Strongest([a, b], holdoff=10)
    >>> for _ in range(300):
    ...     both.learn_one({"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)})
    >>> x = {"a": 0.1, "b": 5.0}
    >>> a.score_one(x), b.score_one(x), both.score_one(x), both.classify(both.score_one(x))
    (0.075, 1.0, 1.0, True)
    >>> both.learn_one(x)
    >>> both.score_one({"a": 6.0, "b": 0.0})  # the next alert falls in the hold-off
    0.5
    """

    def __init__(self, detectors: list[base.Estimator], holdoff: int = 0, cap: float = 0.5):
        self.detectors = detectors
        self.holdoff = holdoff
        self.cap = cap

    @classmethod
    def _unit_test_params(cls):
        from river import preprocessing

        yield {
            "detectors": [
                RankCalibrator(
                    preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=0),
                    window=30,
                    grace=5,
                ),
                RankCalibrator(anomaly.HalfSpaceTrees(seed=1), window=20, grace=5, holdoff=3),
            ],
            "holdoff": 4,
        }

    def _members(self) -> list[base.Estimator]:
        if not self.detectors:
            raise ValueError("Strongest needs at least one detector")
        if self.holdoff < 0:
            raise ValueError(f"holdoff must be >= 0, got {self.holdoff}")
        return self.detectors

    def _strongest(self, x: Any, y: Any) -> float:
        return max(_call(d, "score_one", x, y) for d in self._members())

    def score_one(self, x: Any, y: Any = None) -> float:
        """The highest of the detectors' scores of ``x`` (capped in a hold-off); changes nothing."""
        score = self._strongest(x, y)
        return min(score, self.cap) if getattr(self, "_held", 0) > 0 else score

    def learn_one(self, x: Any, y: Any = None) -> None:
        """Every detector learns ``x``; an alert starts the hold-off."""
        held = getattr(self, "_held", 0)
        if held > 0:
            self._held = held - 1
        elif self.holdoff and self.classify(self._strongest(x, y)):
            self._held = self.holdoff
        for d in self._members():
            _call(d, "learn_one", x, y)

    def classify(self, score: float) -> bool:
        """Whether any detector would call ``score`` an alert."""
        return any(bool(d.classify(score)) for d in self._members())  # type: ignore[attr-defined]

    # ---- checkpoints (see streamal.piece_state) ------------------------------------
    def _export_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The hold-off and every detector's state."""
        arrays: dict[str, np.ndarray] = {}
        members = []
        for i, detector in enumerate(self._members()):
            own, meta = export_child(detector, f"detectors.{i}.")
            arrays.update(own)
            members.append(meta)
        return arrays, {"held": getattr(self, "_held", 0), "detectors": members}

    def _load_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Load what :meth:`_export_state` wrote into this twin (same detectors)."""
        members = self._members()
        if len(meta["detectors"]) != len(members):
            raise ValueError(f"state of {len(meta['detectors'])} detectors for a Strongest "
                             f"of {len(members)}")
        self.detectors = [load_child(d, arrays, m, f"detectors.{i}.")
                          for i, (d, m) in enumerate(zip(members, meta["detectors"],
                                                         strict=True))]
        self._held = int(meta["held"])
