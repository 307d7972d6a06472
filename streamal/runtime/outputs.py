"""What the pipeline emits and counts: output records, dead letters, :class:`RunSummary`.

Every output carries ``id`` (the input's :attr:`~streamal.connectors.Record.id`,
``"stream@offset"``), ``key`` and ``event_time``, so a consumer can drop the
duplicates a resumed run may send again (outputs are at-least-once).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["COUNTERS", "STAGES", "Emitter", "RunSummary", "dead_letter", "raw_text"]

STAGES = ("decode", "validate", "score", "learn")
"""Dead-letter stages, in the order a record meets them."""

COUNTERS = ("records_in", "scored", "predicted", "alerted", "learnt", "skipped_learning",
            "drift_events", "checkpoints")

OUTPUTS = ("scores", "predictions", "alerts", "drift", "dead_letter")
"""The sink names the pipeline knows; an absent one means that output is not produced."""


@dataclass
class RunSummary:
    """Counters of every outcome since the pipeline's first record (restored on resume).

    ``records_in`` = ``scored`` + ``predicted`` + dead letters of the stages
    ``decode``, ``validate`` and ``score``; a ``learn`` dead letter comes on top
    of the record's score or prediction. ``skipped_learning`` counts alerted
    records kept from the model (``learn_alerts=False``).

    Examples
    --------
    >>> s = RunSummary(records_in=3, scored=2)
    >>> s.dead_lettered["decode"] += 1
    >>> s.as_dict()["dead_lettered"], s.dead_lettered_total
    ({'decode': 1, 'validate': 0, 'score': 0, 'learn': 0}, 1)
    """

    records_in: int = 0
    scored: int = 0
    predicted: int = 0
    alerted: int = 0
    learnt: int = 0
    skipped_learning: int = 0
    drift_events: int = 0
    checkpoints: int = 0
    dead_lettered: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    models: int = 0
    records_this_run: int = 0
    positions: dict[str, int] = field(default_factory=dict)
    stopped_by: str | None = None
    resumed_from: str | None = None
    seconds: float = 0.0

    @property
    def dead_lettered_total(self) -> int:
        return sum(self.dead_lettered.values())

    def as_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-serialisable data."""
        return asdict(self)

    def counters(self) -> dict[str, Any]:
        """The persistent counters (what a checkpoint stores)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in COUNTERS}
        out["dead_lettered"] = dict(self.dead_lettered)
        return out

    def load_counters(self, counters: Mapping[str, Any]) -> None:
        for name in COUNTERS:
            setattr(self, name, int(counters.get(name, 0)))
        self.dead_lettered = dict.fromkeys(STAGES, 0)
        self.dead_lettered.update({k: int(v) for k, v in counters.get("dead_lettered", {}).items()})


def raw_text(value: Any) -> tuple[str, str]:
    """``(text, encoding)`` of a raw record value for a dead letter.

    Examples
    --------
    >>> raw_text(b'{"a": 1}'), raw_text(b"\\xff"), raw_text({"a": 1})
    (('{"a": 1}', 'utf-8'), ('/w==', 'base64'), ('{"a": 1}', 'json'))
    """
    if value is None:
        return "", "none"
    if isinstance(value, Mapping):
        return json.dumps(dict(value), default=str, ensure_ascii=False), "json"
    if isinstance(value, str):
        return value, "utf-8"
    raw = bytes(value)
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def dead_letter(record: Any, stage: str, reason: str, key: str | None,
                event_time: float | None) -> dict[str, Any]:
    """The dead-letter output of ``record``, failed at ``stage`` for ``reason``."""
    raw, encoding = raw_text(record.value)
    return {"id": record.id, "key": key, "event_time": event_time, "stage": stage,
            "reason": reason, "raw": raw, "raw_encoding": encoding,
            "position": list(record.position)}


class Emitter:
    """Routes outputs to the sinks by name; an absent sink drops that kind of output."""

    def __init__(self, sinks: Mapping[str, Any]):
        unknown = set(sinks) - set(OUTPUTS)
        if unknown:
            raise ValueError(f"unknown sink name(s) {sorted(unknown)}; use {list(OUTPUTS)}")
        self.sinks = sinks

    def wants(self, output: str) -> bool:
        return output in self.sinks

    def emit(self, output: str, record: Mapping[str, Any], key: str | None) -> None:
        sink = self.sinks.get(output)
        if sink is not None:
            sink.add(record, key=key)

    def flush(self) -> None:
        """Flush every sink: on return, everything emitted so far is durable."""
        for sink in self.sinks.values():
            sink.flush()
