"""The contract between connectors and the runtime: records, sources and sinks.

A :class:`Source` yields :class:`Record` objects that carry a *position*
``(stream, offset)``. The runtime stores the next position of every stream in
its checkpoint and hands it back to :meth:`Source.seek` on resume. A
:class:`Sink` buffers JSON records with :meth:`Sink.add` and makes them durable
only on :meth:`Sink.flush`, which the checkpoint calls.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "DeliveryError",
    "Position",
    "Record",
    "Sink",
    "Source",
    "SourceError",
    "encode_json",
    "next_positions",
]

Position = tuple[str, int]
"""``(stream, offset)``: ``"topic:partition"`` and partition offset for Kafka, the
file path and row index for files."""


class DeliveryError(RuntimeError):
    """A sink could not make its records durable; raised by :meth:`Sink.flush`."""


class SourceError(RuntimeError):
    """A source cannot read as configured (the broker refuses a setting); the message
    names the setting to change."""


@dataclass(frozen=True, slots=True)
class Record:
    """One record read from a source.

    Parameters
    ----------
    value
        Raw bytes (Kafka values, JSONL lines) or an already parsed row
        (CSV and Parquet rows, as a dict of column to Python scalar).
    position
        ``(stream, offset)`` of the record in its source.
    key
        The record key, decoded to ``str`` when it is UTF-8.
    event_time
        Epoch seconds, when the source knows it.

    Examples
    --------
    >>> from streamal.connectors import Record
    >>> r = Record(b'{"x": 1}', ("sensors:2", 41), key="a", event_time=1.5)
    >>> r.id
    'sensors:2@41'

    """

    value: bytes | Mapping[str, Any]
    position: Position
    key: bytes | str | None = None
    event_time: float | None = None

    @property
    def id(self) -> str:
        """Deterministic id ``"stream@offset"``, used to drop duplicate outputs."""
        stream, offset = self.position
        return f"{stream}@{offset}"


def next_positions(records: Iterable[Record]) -> dict[str, int]:
    """Next offset to read per stream after ``records`` (last offset + 1).

    Examples
    --------
    >>> from streamal.connectors import Record, next_positions
    >>> batch = [Record(b"", ("t:0", 4)), Record(b"", ("t:1", 9)), Record(b"", ("t:0", 5))]
    >>> next_positions(batch)
    {'t:0': 6, 't:1': 10}

    """
    positions: dict[str, int] = {}
    for record in records:
        stream, offset = record.position
        if offset + 1 > positions.get(stream, -1):
            positions[stream] = offset + 1
    return positions


def encode_json(record: Mapping[str, Any]) -> bytes:
    """Encode a sink record as strict, compact JSON (UTF-8).

    orjson writes the common records; anything it would write differently from
    the standard library (NaN and infinities become ``null`` there, NumPy
    scalars and integers past 64 bits are refused) goes through :mod:`json`,
    which decides. Floats are written in their shortest round-trip form.

    Raises
    ------
    TypeError
        If ``record`` is not a mapping or holds a value JSON cannot represent.
    ValueError
        If it holds NaN or an infinity, which strict JSON does not allow.

    Examples
    --------
    >>> encode_json({"id": "t:0@1", "score": 0.25, "alert": False})
    b'{"id":"t:0@1","score":0.25,"alert":false}'
    >>> encode_json({"score": float("nan")})
    Traceback (most recent call last):
    ...
    ValueError: Out of range float values are not JSON compliant
    """
    if type(record) is not dict and not isinstance(record, Mapping):
        raise TypeError(f"a sink record must be a mapping, got {type(record).__name__}")
    try:
        encoded = orjson.dumps(record, option=_ORJSON_STRICT)
    except TypeError:
        encoded = b"null"  # let json decide below
    if b"null" not in encoded:  # a NaN or an infinity would have become null
        return encoded
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


_ORJSON_STRICT = (orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
                  | orjson.OPT_PASSTHROUGH_SUBCLASS)
"""Refuse (and so hand to :mod:`json`) the types orjson alone would write."""


class Source(ABC):
    """Where records come from.

    Positions handed to :meth:`seek` and :meth:`commit` map a stream to the
    *next* offset to read, i.e. the last processed offset + 1 (see
    :func:`next_positions`). A source is a context manager that closes itself.
    """

    @abstractmethod
    def poll(self, max_records: int, timeout: float) -> list[Record]:
        """Return up to ``max_records`` records, waiting at most ``timeout`` seconds.

        Returns ``[]`` when nothing is available now.
        """

    @property
    @abstractmethod
    def exhausted(self) -> bool:
        """True once a finite source has delivered every record."""

    @abstractmethod
    def seek(self, positions: Mapping[str, int]) -> None:
        """Continue each stream at its next offset; streams not given start afresh."""

    def commit(self, positions: Mapping[str, int]) -> None:  # noqa: B027 - optional hook
        """Report checkpointed positions to the source (no-op unless overridden)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the source's resources (no-op unless overridden)."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Sink(ABC):
    """Where output records go.

    :meth:`add` buffers a JSON-serialisable record; only :meth:`flush` makes
    what was added durable (or raises :class:`DeliveryError`). :meth:`close`
    flushes first. A sink is a context manager that closes itself.
    """

    @abstractmethod
    def add(self, record: Mapping[str, Any], key: str | None = None) -> None:
        """Buffer one JSON-serialisable record."""

    def add_many(self, records: Sequence[Mapping[str, Any]],
                 keys: Sequence[str | None]) -> None:
        """Buffer ``records`` in order, ``keys[i]`` with ``records[i]``: :meth:`add` each."""
        for record, key in zip(records, keys, strict=True):
            self.add(record, key)

    @abstractmethod
    def flush(self) -> None:
        """Block until everything added is durable; raise on delivery failure."""

    def close(self) -> None:
        """Flush and release the sink's resources."""
        self.flush()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
