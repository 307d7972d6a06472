"""What a backtest gathers while the pipeline runs: outputs, progress, the truth column.

The pipeline runs unchanged; the backtest hands it :class:`ColumnSink` objects as its
sinks (one per output kind, keeping the fields the evaluation needs, column by column)
and a :class:`Progress` observer (a tqdm bar on stderr). The truth column, a field the
model never sees, is read afterwards by a second pass over the same files
(:func:`read_field`), keyed by record id.

Examples
--------
>>> sink = ColumnSink(("id", "score"))
>>> sink.add({"id": "f.csv@0", "score": 0.25, "alert": False})
>>> sink.frame()
        id  score
0  f.csv@0   0.25
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO

import pandas as pd

from streamal.connectors.base import Sink
from streamal.runtime.observer import Observer

__all__ = [
    "FIELDS", "ColumnSink", "Progress", "collectors", "count_rows", "file_of", "read_field",
]

FIELDS: dict[str, tuple[str, ...]] = {
    "scores": ("id", "key", "event_time", "model", "score", "alert"),
    "predictions": ("id", "key", "event_time", "model", "prediction", "label"),
    "alerts": ("id", "threshold"),
    "drift": ("id", "key", "event_time", "model", "stream", "detector", "n"),
    "dead_letter": ("id", "key", "event_time", "stage", "reason"),
}
"""Fields kept of each output kind (a field the record lacks is kept as null)."""


class ColumnSink(Sink):
    """An in-memory sink that keeps some fields of each record, as columns."""

    def __init__(self, fields: tuple[str, ...]) -> None:
        self.fields = fields
        self._columns: dict[str, list[Any]] = {name: [] for name in fields}

    def add(self, record: Mapping[str, Any], key: str | None = None) -> None:
        for name, column in self._columns.items():
            column.append(record.get(name))

    def flush(self) -> None:
        """Nothing to do: the records are kept in memory."""

    def frame(self) -> pd.DataFrame:
        """The kept records, in the order they were added."""
        return pd.DataFrame(self._columns, columns=list(self.fields))


def collectors() -> dict[str, ColumnSink]:
    """One :class:`ColumnSink` per output kind, with the fields of :data:`FIELDS`."""
    return {kind: ColumnSink(fields) for kind, fields in FIELDS.items()}


class Progress(Observer):
    """A progress bar of the records processed, on ``stream`` (stderr), updated per batch.

    Off unless ``enabled`` and ``stream`` is a terminal; ``total`` may be an estimate.
    """

    def __init__(self, total: int | None, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        from tqdm import tqdm

        out = sys.stderr if stream is None else stream
        self._bar = tqdm(total=total, unit=" records", file=out, dynamic_ncols=True,
                         disable=not (enabled and out.isatty()), desc="backtest")

    def batch(self, records: int, seconds: float) -> None:
        self._bar.update(records)

    def stopped(self, summary: Any) -> None:
        self._bar.close()


def count_rows(path: str, format: str | None) -> int:
    """Rows of the files a file source reads (text files: non-blank lines, CSV less its header).

    Cheap (no parsing), for the progress bar: a CSV cell that spans lines makes it an
    over-estimate.
    """
    from streamal.connectors import formats
    from streamal.connectors.files import resolve_files

    total = 0
    for name in resolve_files(path, format):
        fmt = format or formats.format_of(name)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            total += pq.ParquetFile(name).metadata.num_rows
            continue
        with open(name, "rb") as fh:
            lines = sum(1 for line in fh if line.strip())
        total += max(0, lines - 1) if fmt == "csv" else lines
    return total


def read_field(spec: Any, field: str, poll_records: int = 10_000) -> dict[str, Any]:
    """Record id → value of ``field`` for every record of the spec's source that has it.

    A second, plain pass over the source (no model): records that cannot be parsed
    are left out (the run dead-letters them).
    """
    from streamal.pipelines import build_source
    from streamal.runtime.decode import DecodeError, parse_value

    values: dict[str, Any] = {}
    with build_source(spec) as source:
        while not source.exhausted:
            for record in source.poll(poll_records, 0.0):
                try:
                    obj = parse_value(record.value)
                except DecodeError:
                    continue
                if field in obj:
                    values[record.id] = obj[field]
    return values


def file_of(record_id: str) -> str:
    """The stream (a file path, for files) of a record id ``"stream@offset"``.

    >>> file_of("data/a@b.csv@12")
    'data/a@b.csv'
    """
    return record_id.rsplit("@", 1)[0]
