"""What the pipeline tells an observer: loop beats, batches, timings, checkpoints, lag.

:class:`Observer` is the contract between :class:`~streamal.runtime.Pipeline`
and whatever watches it (Prometheus metrics and the health endpoint live in
:mod:`streamal.observability`; the runtime never imports them). Every hook is a
no-op here, is called from the pipeline's own thread, and must be cheap: hooks
run once per loop turn, micro-batch or model call, never once per record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Observer", "Observers"]


class Observer:
    """Pipeline hooks; subclass and override the ones you need.

    Examples
    --------
    >>> from streamal.connectors import MemorySource
    >>> from streamal.runtime import Pipeline, RecordDecoder
    >>> from streamal import ActivationDetector
    >>> class Count(Observer):
    ...     records = 0
    ...     def batch(self, records, seconds):
    ...         self.records += records
    >>> watch = Count()
    >>> pipe = Pipeline(MemorySource([{"a": float(i)} for i in range(50)]), {},
    ...                 lambda: ActivationDetector(seed=0), RecordDecoder(), observer=watch)
    >>> _ = pipe.run()
    >>> watch.records
    50
    """

    def started(self, summary: Any, resumed_at: float | None) -> None:
        """The run begins; ``summary`` is the live :class:`~streamal.runtime.RunSummary`.

        ``resumed_at`` is the wall-clock time the checkpoint resumed from was
        written (``None`` on a fresh start).
        """

    def beat(self) -> None:
        """One turn of the loop (at least once per poll timeout while the loop is alive)."""

    def batch(self, records: int, seconds: float) -> None:
        """A micro-batch of ``records`` was decoded, judged, emitted and learnt."""

    def timed(self, stage: str, seconds: float, records: int) -> None:
        """One model call of ``stage`` (``"score"`` or ``"learn"``) over ``records`` rows."""

    def lag(self, lags: Mapping[str, int]) -> None:
        """Records behind the end of each stream, where the source knows it."""

    def checkpoint(self, seconds: float, error: BaseException | None) -> None:
        """A checkpoint commit ended: ``error`` is ``None`` when it succeeded."""

    def stopped(self, summary: Any) -> None:
        """The run ended (normally or not)."""


class Observers(Observer):
    """Several observers as one: every hook is passed to each, in order.

    Examples
    --------
    >>> class Say(Observer):
    ...     def __init__(self, name):
    ...         self.name = name
    ...     def beat(self):
    ...         print(self.name)
    >>> Observers(Say("a"), Say("b")).beat()
    a
    b
    """

    def __init__(self, *observers: Observer):
        self.observers = observers

    def started(self, summary: Any, resumed_at: float | None) -> None:
        for o in self.observers:
            o.started(summary, resumed_at)

    def beat(self) -> None:
        for o in self.observers:
            o.beat()

    def batch(self, records: int, seconds: float) -> None:
        for o in self.observers:
            o.batch(records, seconds)

    def timed(self, stage: str, seconds: float, records: int) -> None:
        for o in self.observers:
            o.timed(stage, seconds, records)

    def lag(self, lags: Mapping[str, int]) -> None:
        for o in self.observers:
            o.lag(lags)

    def checkpoint(self, seconds: float, error: BaseException | None) -> None:
        for o in self.observers:
            o.checkpoint(seconds, error)

    def stopped(self, summary: Any) -> None:
        for o in self.observers:
            o.stopped(summary)
