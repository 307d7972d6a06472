"""Alert policies: when is an anomaly score high enough to raise an alert?

A policy sees the scores of one model in stream order. For each score it
decides, *before* taking the score into account, whether it is an alert (the
threshold is prequential too), then updates itself. ``learn_alerts=False``
keeps alerted records away from the model, like river's
``QuantileFilter(protect_anomaly_detector=True)``.

Persistence is JSON only (:meth:`export_state` / :meth:`load_state`).
:class:`QuantileThreshold` keeps its own bounded deque of the last ``window``
scores beside river's ``stats.RollingQuantile``; the checkpoint stores that
deque and a restore *replays* it into a fresh ``RollingQuantile``. A rolling
quantile is a function of the window's content only, so the rebuilt threshold
equals the uninterrupted one exactly (floats go through JSON with ``repr``
precision, which round-trips).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from river import stats

__all__ = ["AlertPolicy", "Decision", "FixedThreshold", "QuantileThreshold"]


class Decision(NamedTuple):
    """Outcome of one score: alert or not, and the threshold it was compared with."""

    alert: bool
    threshold: float | None


class AlertPolicy:
    """Base of the alert policies: ``update(score) -> Decision`` plus JSON state."""

    learn_alerts: bool

    def update(self, score: float) -> Decision:
        raise NotImplementedError

    def update_many(self, scores: Sequence[float]) -> tuple[list[bool], list[float | None]]:
        """``(alerts, thresholds)`` of ``scores`` in order: what :meth:`update` gives one by one.

        Examples
        --------
        >>> FixedThreshold(0.5).update_many([0.2, 0.7])
        ([False, True], [0.5, 0.5])
        """
        decisions = [self.update(score) for score in scores]
        return [d.alert for d in decisions], [d.threshold for d in decisions]

    def export_state(self) -> dict[str, Any]:
        """JSON-serialisable state (see :meth:`load_state`)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`export_state` returned."""

    def params(self) -> dict[str, Any]:
        """Constructor arguments, as given."""
        raise NotImplementedError

    def clone(self) -> AlertPolicy:
        """A fresh policy with the same parameters and no state."""
        return type(self)(**self.params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class FixedThreshold(AlertPolicy):
    """Alert when ``score >= value`` (river's ``ThresholdFilter`` convention).

    Parameters
    ----------
    value
        The threshold.
    warmup
        Scores to see before any alert. A fresh model scores every record
        1.0, so with ``learn_alerts=False`` and no warm-up it would never learn.
    learn_alerts
        Whether records that raised an alert are learnt by the model.

    Examples
    --------
    >>> policy = FixedThreshold(0.9, warmup=1)
    >>> [policy.update(s).alert for s in (1.0, 0.2, 0.9, 0.95)]
    [False, False, True, True]
    """

    def __init__(self, value: float, warmup: int = 0, learn_alerts: bool = True):
        self.value = value
        self.warmup = warmup
        self.learn_alerts = learn_alerts

    def params(self) -> dict[str, Any]:
        return {"value": self.value, "warmup": self.warmup, "learn_alerts": self.learn_alerts}

    def update(self, score: float) -> Decision:
        n = getattr(self, "_n", 0)
        self._n = n + 1
        if n < self.warmup:
            return Decision(False, None)
        return Decision(bool(score >= self.value), float(self.value))

    def export_state(self) -> dict[str, Any]:
        return {"n": getattr(self, "_n", 0)}

    def load_state(self, state: dict[str, Any]) -> None:
        self._n = int(state["n"])


class QuantileThreshold(AlertPolicy):
    """Alert when a score reaches the ``q``-quantile of the last ``window`` scores.

    The first ``warmup`` scores judge a model that is still learning, so they
    raise no alert and are left out of the quantile. After them, the quantile
    is river's ``stats.RollingQuantile``, fed with every score (alerted or not,
    as river's ``QuantileFilter`` does) after the score has been judged; the
    first alert can come once it holds ``ceil(1 / (1 − q))`` scores, enough
    for the quantile to mean something.

    Parameters
    ----------
    q
        The quantile, in ``(0, 1)``.
    warmup
        Scores to see before any alert.
    window
        Number of recent scores the quantile is taken over (at least 1). The
        checkpoint holds these scores, so memory and checkpoint size grow with it.
    learn_alerts
        Whether records that raised an alert are learnt by the model.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> policy = QuantileThreshold(q=0.99, warmup=100, window=1000)
    >>> alerts = [policy.update(rng.random()).alert for _ in range(2000)]
    >>> sum(alerts[:200]), 5 <= sum(alerts) <= 40, policy.update(5.0).alert
    (0, True, True)
    >>> twin = policy.clone()
    >>> twin.load_state(policy.export_state())
    >>> twin.update(0.995) == policy.update(0.995)
    True
    """

    def __init__(
        self, q: float = 0.995, warmup: int = 500, window: int = 10_000, learn_alerts: bool = True
    ):
        self.q = q
        self.warmup = warmup
        self.window = window
        self.learn_alerts = learn_alerts

    def params(self) -> dict[str, Any]:
        return {"q": self.q, "warmup": self.warmup, "window": self.window,
                "learn_alerts": self.learn_alerts}

    def _ensure(self) -> None:
        if getattr(self, "_quantile", None) is not None:
            return
        if not 0.0 < self.q < 1.0:
            raise ValueError(f"q must be in (0, 1), got {self.q}")
        if int(self.window) < 1 or int(self.warmup) < 0:
            raise ValueError(f"window must be >= 1 and warmup >= 0, got {self.window}, "
                             f"{self.warmup}")
        self._quantile = stats.RollingQuantile(self.q, window_size=int(self.window))
        self._recent: collections.deque[float] = collections.deque(maxlen=int(self.window))
        self._n = 0
        self._needed = min(int(self.window), math.ceil(1.0 / (1.0 - self.q)))

    @property
    def n(self) -> int:
        """Scores seen so far."""
        self._ensure()
        return self._n

    @property
    def threshold(self) -> float | None:
        """The threshold the next score will be compared with (None during warm-up)."""
        self._ensure()
        return self._current()

    def _current(self) -> float | None:
        if len(self._recent) < self._needed:
            return None
        value = self._quantile.get()
        return None if value is None else float(value)

    def update(self, score: float) -> Decision:
        alerts, thresholds = self.update_many((score,))
        return Decision(alerts[0], thresholds[0])

    def update_many(self, scores: Sequence[float]) -> tuple[list[bool], list[float | None]]:
        """``(alerts, thresholds)`` of ``scores``, each judged before it joins the window."""
        self._ensure()
        quantile, recent, needed = self._quantile, self._recent, self._needed
        n, warmup = self._n, self.warmup
        alerts: list[bool] = []
        thresholds: list[float | None] = []
        for score in scores:
            threshold = None
            if len(recent) >= needed:
                value = quantile.get()
                if value is not None:
                    threshold = float(value)
            alerts.append(threshold is not None and bool(score >= threshold))
            thresholds.append(threshold)
            score = float(score)
            if n >= warmup and math.isfinite(score):
                quantile.update(score)
                recent.append(score)
            n += 1
            self._n = n  # kept current: a failing score leaves the state of a loop of update
        return alerts, thresholds

    def export_state(self) -> dict[str, Any]:
        self._ensure()
        return {"n": self._n, "recent": list(self._recent)}

    def load_state(self, state: dict[str, Any]) -> None:
        self._quantile = None  # type: ignore[assignment]
        self._ensure()
        for score in state["recent"]:
            self._quantile.update(float(score))
            self._recent.append(float(score))
        self._n = int(state["n"])
