"""File formats: lazy row readers, batch writers and event-time parsing.

Readers yield ``(row, value, raw_time)`` from a start row on, reading the file in
chunks: ``row`` is the row index within the file (the record offset; for JSONL
the line index), ``value``
a dict (CSV, Parquet) or the raw line (JSONL), ``raw_time`` the unparsed value
of the time field (``None`` when absent or unreadable). Writers know the format
only; where the bytes go is the sink's business.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timezone
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "EXTENSIONS",
    "format_of",
    "parse_time",
    "read_rows",
    "write_jsonl",
    "write_parquet",
]

logger = logging.getLogger(__name__)

EXTENSIONS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
"""File extension → format name."""

Row = tuple[int, Any, Any]


def format_of(path: str) -> str | None:
    """Format of ``path`` from its extension, or None when unknown.

    >>> format_of("data/machine-1.CSV"), format_of("x.ndjson"), format_of("notes.txt")
    ('csv', 'jsonl', None)
    """
    return EXTENSIONS.get(os.path.splitext(path)[1].lower())


def parse_time(value: Any, time_format: str | None = None) -> float | None:
    """Event time as epoch seconds, or None when ``value`` is not a time.

    Numbers are epoch seconds; strings are parsed with ``time_format``
    (``strptime``) when given, else as ISO 8601 (which covers NAB's
    ``"YYYY-MM-DD HH:MM:SS"``), else as a number. Times without a zone are UTC.

    >>> parse_time("2014-04-01 00:05:00"), parse_time(1396310700), parse_time("soon")
    (1396310700.0, 1396310700.0, None)
    >>> parse_time("01/04/2014 00:05", "%d/%m/%Y %H:%M")
    1396310700.0
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    if isinstance(value, datetime):
        return _epoch(value)
    if isinstance(value, date):
        return _epoch(datetime(value.year, value.month, value.day))
    if isinstance(value, str):
        text = value.strip()
        try:
            if time_format is not None:
                return _epoch(datetime.strptime(text, time_format))
            if text.endswith(("Z", "z")):  # Python 3.10's fromisoformat rejects "Z"
                text = text[:-1] + "+00:00"
            return _epoch(datetime.fromisoformat(text))
        except ValueError:
            pass
        try:
            return parse_time(float(text))
        except ValueError:
            return None
    return None


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def read_rows(
    path: str,
    fmt: str,
    start: int = 0,
    batch_rows: int = 10_000,
    time_field: str | None = None,
    delimiter: str | None = None,
) -> Iterator[Row]:
    """Lazily yield ``(row, value, raw_time)`` of ``path`` from row ``start`` on."""
    if fmt == "csv":
        return _read_csv(path, start, batch_rows, time_field, delimiter)
    if fmt == "jsonl":
        return _read_jsonl(path, start, time_field)
    if fmt == "parquet":
        return _read_parquet(path, start, batch_rows, time_field)
    raise ValueError(f"unknown file format {fmt!r}; expected one of csv, jsonl, parquet")


def _sniff_delimiter(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    counts = {sep: header.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def _read_csv(
    path: str, start: int, batch_rows: int, time_field: str | None, delimiter: str | None
) -> Iterator[Row]:
    # Row indices count data rows; blank lines are skipped and not counted. pandas can
    # only skip physical lines, so resuming parses (and drops) the rows before ``start``.
    sep = delimiter or _sniff_delimiter(path)
    try:
        columns = list(pd.read_csv(path, sep=sep, nrows=0).columns)
    except pd.errors.EmptyDataError:  # an empty file has no rows
        return
    _check_field(path, time_field, columns)
    row = 0
    # nullable dtypes: an integer column with gaps stays integer (a label 3, not 3.0)
    with pd.read_csv(path, sep=sep, chunksize=batch_rows, dtype_backend="numpy_nullable") as chunks:
        for chunk in chunks:
            first, row = row, row + len(chunk)
            if row <= start:
                continue
            chunk = chunk.iloc[max(0, start - first):]
            values = _cells(chunk).to_dict("records")
            for offset, value in enumerate(values, start=max(first, start)):
                yield offset, value, value.get(time_field) if time_field else None


def _cells(chunk: pd.DataFrame) -> pd.DataFrame:
    """``chunk`` as Python values, ``None`` where a cell is empty.

    One cell that is not a number turns a whole column into text; its other cells are
    numbers again here, so that only the record with the bad cell is dead-lettered.

    >>> import io
    >>> text = io.StringIO("v,n\\n1.5,3\\nbroken,\\n7,4")
    >>> chunk = pd.read_csv(text, dtype_backend="numpy_nullable")
    >>> _cells(chunk).to_dict("records")
    [{'v': 1.5, 'n': 3}, {'v': 'broken', 'n': None}, {'v': 7, 'n': 4}]
    """
    cells = chunk.astype(object).where(chunk.notna(), None)
    for name, dtype in chunk.dtypes.items():
        if isinstance(dtype, pd.StringDtype):
            cells[name] = pd.Series([_number_or_text(cell) for cell in cells[name]],
                                    index=cells.index, dtype=object)
    return cells


def _number_or_text(cell: Any) -> Any:
    if cell is None or "_" in cell:  # Python's int("1_000") is 1000; a CSV's is text
        return cell
    for parse in (int, float):
        try:
            return parse(cell)
        except ValueError:
            pass
    return cell


def _read_jsonl(path: str, start: int, time_field: str | None) -> Iterator[Row]:
    needle = json.dumps(time_field).encode() if time_field else None
    with open(path, "rb") as fh:
        for row, line in enumerate(fh):
            if row < start:
                continue
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            yield row, line, _jsonl_time(line, time_field, needle)


def _jsonl_time(line: bytes, time_field: str | None, needle: bytes | None) -> Any:
    if needle is None or needle not in line:
        return None
    try:
        parsed = json.loads(line)
    except ValueError:
        return None
    return parsed.get(time_field) if isinstance(parsed, dict) else None


def _read_parquet(
    path: str, start: int, batch_rows: int, time_field: str | None
) -> Iterator[Row]:
    with pq.ParquetFile(path) as pf:
        _check_field(path, time_field, pf.schema_arrow.names)
        first, skip = 0, start
        while first < pf.num_row_groups and skip >= pf.metadata.row_group(first).num_rows:
            skip -= pf.metadata.row_group(first).num_rows
            first += 1
        row = start - skip
        groups = range(first, pf.num_row_groups)
        for batch in pf.iter_batches(batch_size=batch_rows, row_groups=groups):
            for value in batch.to_pylist():
                if row >= start:
                    yield row, value, value.get(time_field) if time_field else None
                row += 1


def _check_field(path: str, time_field: str | None, columns: list[str]) -> None:
    if time_field is not None and time_field not in columns:
        raise ValueError(f"{path}: no column {time_field!r} for the event time; columns: {columns}")


def write_jsonl(fh: Any, lines: list[bytes]) -> None:
    """Append JSON lines to the binary file ``fh`` and make them durable (fsync)."""
    fh.write(b"".join(line + b"\n" for line in lines))
    fh.flush()
    os.fsync(fh.fileno())


def write_parquet(path: str, rows: list[Mapping[str, Any]]) -> None:
    """Write ``rows`` as one Parquet file (one row group), atomically.

    Columns are the union of the rows' keys; a column whose values Arrow cannot
    hold in one type (say ints and strings) is written as JSON text instead.
    """
    names = list(dict.fromkeys(name for row in rows for name in row))
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            logger.warning("%s: column %r has mixed types; written as JSON text", path, name)
            columns[name] = pa.array([None if v is None else json.dumps(v) for v in values])
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with pq.ParquetWriter(tmp, pa.schema([(n, c.type) for n, c in columns.items()])) as writer:
        writer.write_table(pa.table(columns))
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(os.path.dirname(path) or ".")


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
