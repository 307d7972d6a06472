"""Replay CSV, JSONL and Parquet files as a source; write JSONL or Parquet as a sink."""

from __future__ import annotations

import glob
import heapq
import itertools
import json
import logging
import os
import re
import time
from collections.abc import Generator, Iterator, Mapping
from typing import Any, BinaryIO

from . import formats
from .base import Record, Sink, Source, encode_json

__all__ = ["FileSink", "FileSource", "resolve_files"]

logger = logging.getLogger(__name__)

_Item = tuple[tuple[float, int, int], Record]


def resolve_files(path: str | os.PathLike[str], format: str | None = None) -> list[str]:
    """Files named by ``path``: one file, a glob pattern, or a directory.

    A directory gives its files whose extension names a known format (only
    ``format``'s when given); hidden files are left out. Paths are returned
    sorted, as written (relative stays relative).

    Raises
    ------
    FileNotFoundError
        If the file does not exist, or the glob or directory names no file.
    ValueError
        If ``format`` is unknown.

    """
    path = os.fspath(path)
    if format is not None and format not in set(formats.EXTENSIONS.values()):
        raise ValueError(f"unknown file format {format!r}; expected csv, jsonl or parquet")
    if os.path.isdir(path):
        files = [
            os.path.join(path, name)
            for name in sorted(os.listdir(path))
            if not name.startswith((".", "_"))
            and formats.format_of(name) is not None
            and format in (None, formats.format_of(name))
        ]
        if not files:
            kind = format or "csv, jsonl or parquet"
            raise FileNotFoundError(f"no {kind} files in directory {path!r}")
        return files
    if any(ch in path for ch in "*?["):
        files = sorted(f for f in glob.glob(path) if os.path.isfile(f))
        if not files:
            raise FileNotFoundError(f"no file matches the pattern {path!r}")
        return files
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    return [path]


class FileSource(Source):
    """Replay rows of one or several files, merged in event-time order.

    Each file is a stream named by its path; a record's offset is its row index
    in that file (CSV: data rows, blank lines not counted; JSONL: line index,
    blank lines counted but not delivered). CSV and Parquet rows become dicts
    (missing cells are ``None``); JSONL lines stay raw bytes so that the runtime
    can dead-letter an invalid line with its exact bytes. Files are read lazily,
    ``batch_rows`` rows at a time; resuming a CSV re-parses the rows before the
    position (pandas can only skip physical lines), Parquet skips whole row groups.

    Parameters
    ----------
    path
        A file, a glob pattern (``"data/*.csv"``) or a directory.
    format
        ``"csv"``, ``"jsonl"`` or ``"parquet"``; by default from each file's
        extension (``.csv``, ``.jsonl``/``.ndjson``, ``.parquet``/``.pq``).
    time_field
        Column (or top-level JSON field) holding the event time. With it, rows
        of all files are merged by event time (ties: file, then row); a row whose
        time cannot be read keeps its place in its file and gets
        ``event_time=None``. Without it, files are read one after another.
    time_format
        ``strptime`` format for string times; by default ISO 8601, and numbers
        are epoch seconds.
    speed
        None replays as fast as possible; ``N`` replays at N times real time by
        event time.
    batch_rows
        Rows read from a CSV or Parquet file at once.
    delimiter
        CSV delimiter; by default guessed from the header among ``, ; tab |``.
    file_field
        Name of a field added to every record (replacing one of that name),
        holding the path of its file: a per-key field for one model per file.
        A JSONL line then becomes a dict; one that is not a JSON object stays
        raw bytes (for the dead letter).

    Examples
    --------
    >>> import os, tempfile
    >>> from streamal.connectors import FileSource
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "a.csv"), "w") as f:
    ...     _ = f.write("timestamp,value\\n2014-04-01 00:00:00,1.0\\n2014-04-01 00:10:00,3.0\\n")
    >>> with open(os.path.join(folder, "b.jsonl"), "w") as f:
    ...     _ = f.write('{"timestamp": "2014-04-01 00:05:00", "value": 2.0}\\n')
    >>> with FileSource(folder, time_field="timestamp") as source:
    ...     for record in source.poll(max_records=10, timeout=0):
    ...         print(os.path.basename(record.position[0]), record.position[1], record.value)
    a.csv 0 {'timestamp': '2014-04-01 00:00:00', 'value': 1.0}
    b.jsonl 0 b'{"timestamp": "2014-04-01 00:05:00", "value": 2.0}'
    a.csv 1 {'timestamp': '2014-04-01 00:10:00', 'value': 3.0}

    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        format: str | None = None,
        time_field: str | None = None,
        time_format: str | None = None,
        speed: float | None = None,
        batch_rows: int = 10_000,
        delimiter: str | None = None,
        file_field: str | None = None,
    ) -> None:
        self.path = path
        self.format = format
        self.time_field = time_field
        self.time_format = time_format
        self.speed = speed
        self.batch_rows = batch_rows
        self.delimiter = delimiter
        self.file_field = file_field
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be a positive number or None, got {speed!r}")
        self._files: list[tuple[str, str]] = []
        for name in resolve_files(path, format):
            fmt = format or formats.format_of(name)
            if fmt is None:
                raise ValueError(f"cannot tell the format of {name!r} from its extension; "
                                 "pass format='csv', 'jsonl' or 'parquet'")
            self._files.append((name, fmt))
        self._readers: list[Generator[_Item, None, None]] = []
        self._start({})

    @property
    def streams(self) -> list[str]:
        """The files read, in order; each is the stream of its records."""
        return [name for name, _ in self._files]

    def _start(self, positions: Mapping[str, int]) -> None:
        self._close_readers()
        self._readers = [
            self._file_items(index, name, fmt, positions.get(name, 0))
            for index, (name, fmt) in enumerate(self._files)
        ]
        merged = heapq.merge(*self._readers) if self.time_field else itertools.chain(*self._readers)
        self._items: Iterator[_Item] = merged
        self._next: Record | None = None
        self._clock: tuple[float, float] | None = None  # (wall, event time) of the first record

    def _file_items(
        self, index: int, name: str, fmt: str, start: int
    ) -> Generator[_Item, None, None]:
        last = float("-inf")  # a row without a readable time sorts right after its predecessor
        warned = False
        rows = formats.read_rows(name, fmt, start, self.batch_rows, self.time_field, self.delimiter)
        for row, value, raw_time in rows:
            event_time = formats.parse_time(raw_time, self.time_format)
            if event_time is not None:
                last = event_time
            elif raw_time is not None and not warned:
                warned = True
                logger.warning("%s row %d: cannot read event time %r; such rows keep their "
                               "place in the file and get no event time", name, row, raw_time)
            if self.file_field is not None:
                value = self._with_file(value, name)
            yield (last, index, row), Record(value, (name, row), event_time=event_time)

    def _with_file(self, value: Any, name: str) -> Any:
        """``value`` with :attr:`file_field` set to ``name`` (raw bytes left as they are
        when they are not a JSON object)."""
        if isinstance(value, (bytes, str)):
            try:
                parsed = json.loads(value)
            except (ValueError, RecursionError):
                return value
            if not isinstance(parsed, dict):
                return value
            value = parsed
        return {**value, self.file_field: name}

    def _peek(self) -> Record | None:
        if self._next is None:
            item = next(self._items, None)
            self._next = None if item is None else item[1]
        return self._next

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        deadline = time.monotonic() + timeout
        batch: list[Record] = []
        while len(batch) < max_records:
            record = self._peek()
            if record is None:
                break
            wait = self._due(record) - time.monotonic()
            if wait > 0:
                if batch:
                    break
                time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
                if self._due(record) > time.monotonic():
                    break
            batch.append(record)
            self._next = None
        return batch

    def _due(self, record: Record) -> float:
        """Wall-clock (monotonic) time at which ``record`` may be delivered."""
        if self.speed is None or record.event_time is None:
            return float("-inf")
        if self._clock is None:
            self._clock = (time.monotonic(), record.event_time)
        wall, event = self._clock
        return wall + (record.event_time - event) / self.speed

    @property
    def exhausted(self) -> bool:
        return self._peek() is None

    def seek(self, positions: Mapping[str, int]) -> None:
        unknown = set(positions) - set(self.streams)
        if unknown:
            logger.warning("seek: ignoring positions of streams this source does not read: %s",
                           sorted(unknown))
        self._start(positions)

    def _close_readers(self) -> None:
        for reader in self._readers:
            reader.close()

    def close(self) -> None:
        self._close_readers()
        self._items = iter(())
        self._next = None


class FileSink(Sink):
    """Write records as JSON lines to a file, or as Parquet part files to a directory.

    ``"jsonl"``: ``path`` is a file; each :meth:`flush` appends the pending lines,
    then flushes and fsyncs. ``"parquet"``: ``path`` is a directory; each
    :meth:`flush` writes one new ``part-NNNNN.parquet`` (one row group, written
    atomically), numbered after the parts already there, so a crash never loses
    or corrupts a flushed part. Keys are not written: put what a reader needs
    in the record.

    Parameters
    ----------
    path
        Destination file (jsonl) or directory (parquet); parents are created.
    format
        ``"jsonl"`` or ``"parquet"``.

    Examples
    --------
    >>> import os, tempfile
    >>> from streamal.connectors import FileSink
    >>> out = os.path.join(tempfile.mkdtemp(), "scores.jsonl")
    >>> with FileSink(out) as sink:
    ...     sink.add({"id": "memory@0", "score": 0.5})
    >>> print(open(out).read(), end="")
    {"id":"memory@0","score":0.5}

    """

    def __init__(self, path: str | os.PathLike[str], format: str = "jsonl") -> None:
        self.path = path
        self.format = format
        if format not in ("jsonl", "parquet"):
            raise ValueError(f"FileSink format must be 'jsonl' or 'parquet', got {format!r}")
        self._lines: list[bytes] = []
        self._fh: BinaryIO | None = None
        self._part: int | None = None

    def add(self, record: Mapping[str, Any], key: str | None = None) -> None:
        self._lines.append(encode_json(record))

    def flush(self) -> None:
        if not self._lines:
            return
        if self.format == "jsonl":
            formats.write_jsonl(self._open_jsonl(), self._lines)
        else:
            part = self._next_part()
            rows = [json.loads(line) for line in self._lines]
            formats.write_parquet(os.path.join(os.fspath(self.path), f"part-{part:05d}.parquet"),
                                  rows)
            self._part = part + 1
        self._lines = []

    def _open_jsonl(self) -> BinaryIO:
        if self._fh is None:
            path = os.fspath(self.path)
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            self._fh = open(path, "ab+")  # noqa: SIM115 - kept open until close()
            self._fh.seek(0, os.SEEK_END)
            if self._fh.tell() > 0:  # after a crash mid-line, start a fresh line
                self._fh.seek(-1, os.SEEK_END)
                if self._fh.read(1) != b"\n":
                    self._fh.write(b"\n")
        return self._fh

    def _next_part(self) -> int:
        if self._part is None:
            folder = os.fspath(self.path)
            os.makedirs(folder, exist_ok=True)
            numbers = [int(m.group(1)) for name in os.listdir(folder)
                       if (m := re.fullmatch(r"part-(\d+)\.parquet", name))]
            self._part = max(numbers, default=-1) + 1
        return self._part

    def close(self) -> None:
        self.flush()
        if self._fh is not None:
            self._fh.close()
            self._fh = None
