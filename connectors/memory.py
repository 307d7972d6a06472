"""In-memory source and sink, for tests, notebooks and doctests."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .base import Record, Sink, Source, encode_json

__all__ = ["MemorySink", "MemorySource"]


class MemorySource(Source):
    """Replay a list of values as records of one stream, at offsets ``0..n-1``.

    Parameters
    ----------
    records_or_values
        Dicts (parsed rows), ``bytes`` (raw values) or ``str`` (encoded to UTF-8).
    stream
        Stream name used in every record's position.

    Examples
    --------
    >>> from streamal.connectors import MemorySource, next_positions
    >>> source = MemorySource([{"x": 1.0}, {"x": 2.0}, b'{"x": 3.0}'])
    >>> batch = source.poll(max_records=2, timeout=0)
    >>> [r.id for r in batch], next_positions(batch)
    (['memory@0', 'memory@1'], {'memory': 2})
    >>> source.poll(10, 0)[0].value, source.exhausted
    (b'{"x": 3.0}', True)
    >>> source.seek({"memory": 1})
    >>> [r.value for r in source.poll(10, 0)]
    [{'x': 2.0}, b'{"x": 3.0}']

    """

    def __init__(
        self, records_or_values: Sequence[Mapping[str, Any] | bytes | str], stream: str = "memory"
    ) -> None:
        self.records_or_values = records_or_values
        self.stream = stream
        self._next = 0

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        stop = min(self._next + max_records, len(self.records_or_values))
        batch = [self._record(i) for i in range(self._next, stop)]
        self._next = stop
        return batch

    def _record(self, offset: int) -> Record:
        value = self.records_or_values[offset]
        if isinstance(value, str):
            value = value.encode()
        elif not isinstance(value, (bytes, Mapping)):
            raise TypeError(
                f"MemorySource item {offset} must be a dict, bytes or str, "
                f"got {type(value).__name__}"
            )
        return Record(value, (self.stream, offset))

    @property
    def exhausted(self) -> bool:
        return self._next >= len(self.records_or_values)

    def seek(self, positions: Mapping[str, int]) -> None:
        self._next = positions.get(self.stream, 0)


class MemorySink(Sink):
    """Keep output records in lists; only :meth:`flush` makes them visible.

    Records are JSON round-tripped on :meth:`add`, exactly as a Kafka or file
    sink would write them, so a value JSON cannot hold fails here too.

    Attributes
    ----------
    records
        Flushed records, in the order they were added.
    keys
        The key of each flushed record (same order as ``records``).
    pending
        ``(record, key)`` pairs added since the last flush.

    Examples
    --------
    >>> from streamal.connectors import MemorySink
    >>> sink = MemorySink()
    >>> sink.add({"id": "memory@0", "score": 0.25}, key="memory@0")
    >>> sink.records, len(sink.pending)
    ([], 1)
    >>> sink.flush()
    >>> sink.records, sink.keys, sink.pending
    ([{'id': 'memory@0', 'score': 0.25}], ['memory@0'], [])

    """

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.keys: list[str | None] = []
        self.pending: list[tuple[dict[str, Any], str | None]] = []

    def add(self, record: Mapping[str, Any], key: str | None = None) -> None:
        self.pending.append((json.loads(encode_json(record)), key))

    def flush(self) -> None:
        for record, key in self.pending:
            self.records.append(record)
            self.keys.append(key)
        self.pending = []
