"""What both scale-out workers share: stop handling and summaries."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable
from typing import Any

from streamal.runtime.outputs import COUNTERS, STAGES, RunSummary

__all__ = ["StopSignals", "merge_summaries"]


class StopSignals:
    """While active in the main thread, SIGTERM and SIGINT set ``event`` (and ``why``)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event
        self.why: str | None = None
        self._previous: dict[Any, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.why = "signal"
        self.event.set()

    def __exit__(self, *exc_info: object) -> None:
        for signum, old in self._previous.items():
            signal.signal(signum, old)
        self._previous.clear()


def merge_summaries(parts: Iterable[RunSummary]) -> RunSummary:
    """Counters summed over ``parts`` (for instance the partitions a worker held)."""
    total = RunSummary()
    for part in parts:
        for name in COUNTERS:
            setattr(total, name, getattr(total, name) + getattr(part, name))
        for stage in STAGES:
            total.dead_lettered[stage] += part.dead_lettered.get(stage, 0)
        total.models += part.models
    return total
