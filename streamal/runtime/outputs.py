"""What the pipeline emits and counts: output records, dead letters, :class:`RunSummary`.

Every output carries ``id`` (the input's :attr:`~streamal.connectors.Record.id`,
``"stream@offset"``), ``key`` and ``event_time``, so a consumer can drop the
duplicates a resumed run may send again (outputs are at-least-once).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["COUNTERS", "MAX_RAW_BYTES", "MAX_REASON_CHARS", "STAGES", "Emitter", "RunSummary",
           "dead_letter", "raw_text"]

MAX_RAW_BYTES = 64 * 1024
"""A dead letter keeps at most this many bytes of the raw value (``raw_size`` has all);
a multiple of 4, so that cut base64 text stays valid."""

MAX_REASON_CHARS = 1000
"""A dead letter's reason is cut to this many characters."""

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


def _head(value: Any) -> Any:
    """The first :data:`MAX_RAW_BYTES` of a value, not ending inside a UTF-8 character."""
    if isinstance(value, str):
        return value[:MAX_RAW_BYTES]
    head = bytes(value[:MAX_RAW_BYTES])
    for back in range(4):
        try:
            head[:len(head) - back].decode("utf-8")
            return head[:len(head) - back]
        except UnicodeDecodeError:
            continue
    return head  # not UTF-8 at all: raw_text gives base64


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def dead_letter(record: Any, stage: str, reason: str, key: str | None,
                event_time: float | None) -> dict[str, Any]:
    """The dead-letter output of ``record``, failed at ``stage`` for ``reason``.

    Bounded in size whatever the input: the raw value is cut to
    :data:`MAX_RAW_BYTES` (``raw_truncated`` says so, ``raw_size`` gives the
    original size) and the reason and key to :data:`MAX_REASON_CHARS`, so that a
    huge bad record cannot make its dead letter too large for the sink.

    Examples
    --------
    >>> from streamal.connectors import Record
    >>> d = dead_letter(Record(b"x" * 100_000, ("t:0", 5)), "decode", "bad", None, None)
    >>> len(d["raw"]), d["raw_truncated"], d["raw_size"]
    (65536, True, 100000)
    """
    value = record.value
    size = len(value) if isinstance(value, (bytes, bytearray, memoryview, str)) else None
    if size is not None and size > MAX_RAW_BYTES:
        value = _head(value)
    raw, encoding = raw_text(value)
    truncated = size is not None and size > MAX_RAW_BYTES
    if len(raw) > MAX_RAW_BYTES:  # a parsed row, or base64 text (cut at a 4-character group)
        raw, truncated = raw[:MAX_RAW_BYTES], True
    if key is not None and len(key) > MAX_REASON_CHARS:
        key = _cut(key, MAX_REASON_CHARS)
    return {"id": record.id, "key": key, "event_time": event_time, "stage": stage,
            "reason": _cut(reason, MAX_REASON_CHARS), "raw": raw, "raw_encoding": encoding,
            "raw_truncated": truncated, "raw_size": size if size is not None else len(raw),
            "position": list(record.position)}


class Emitter:
    """Routes outputs to the sinks by name; an absent sink drops that kind of output.

    :meth:`emit_many` holds its records back and hands them over in one
    ``add_many`` call per sink: at :meth:`release` (the end of a micro-batch),
    before a later :meth:`emit` to the same output, and at :meth:`flush`. Each
    sink gets its records in the order they were emitted.

    Examples
    --------
    >>> from streamal.connectors import MemorySink
    >>> sink = MemorySink()
    >>> emitter = Emitter({"scores": sink})
    >>> emitter.emit_many("scores", [{"i": 0}, {"i": 1}], ["a", "b"])
    >>> len(sink.pending)
    0
    >>> emitter.emit("scores", {"i": 2}, "c")
    >>> [(r["i"], key) for r, key in sink.pending]
    [(0, 'a'), (1, 'b'), (2, 'c')]
    """

    def __init__(self, sinks: Mapping[str, Any]):
        unknown = set(sinks) - set(OUTPUTS)
        if unknown:
            raise ValueError(f"unknown sink name(s) {sorted(unknown)}; use {list(OUTPUTS)}")
        self.sinks = sinks
        self._held: dict[str, tuple[list[Mapping[str, Any]], list[str | None]]] = {}

    def wants(self, output: str) -> bool:
        return output in self.sinks

    def emit(self, output: str, record: Mapping[str, Any], key: str | None) -> None:
        sink = self.sinks.get(output)
        if sink is not None:
            if output in self._held:
                self._release(output)
            sink.add(record, key=key)

    def emit_many(self, output: str, records: Sequence[Mapping[str, Any]],
                  keys: Sequence[str | None]) -> None:
        """:meth:`emit` each of ``records`` (``keys[i]`` with ``records[i]``), held back
        until :meth:`release`."""
        if output not in self.sinks or not records:
            return
        if len(records) != len(keys):
            raise ValueError(f"{len(records)} records with {len(keys)} keys")
        held_records, held_keys = self._held.setdefault(output, ([], []))
        held_records.extend(records)
        held_keys.extend(keys)

    def release(self) -> None:
        """Hand every held record to its sink: one ``add_many`` call per sink (a sink
        without one gets ``add`` calls)."""
        for output in list(self._held):
            self._release(output)

    def _release(self, output: str) -> None:
        records, keys = self._held.pop(output)
        sink = self.sinks[output]
        add_many = getattr(sink, "add_many", None)
        if add_many is not None:
            add_many(records, keys)
            return
        for record, key in zip(records, keys, strict=True):
            sink.add(record, key=key)

    def flush(self) -> None:
        """Flush every sink: on return, everything emitted so far is durable."""
        self.release()
        for sink in self.sinks.values():
            sink.flush()
