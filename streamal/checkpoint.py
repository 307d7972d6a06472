"""Parquet state files: the one place streamal persists state.

A state is a dict of named NumPy arrays plus a JSON-serialisable ``meta`` dict.
It is stored as one Parquet file with one row per array and the columns
``name: string``, ``dtype: string`` (NumPy dtype string, little-endian),
``shape: list<int64>`` and ``data: binary`` (the array's C-order bytes). The
schema metadata key ``streamal`` holds ``{"format_version", "meta", "checksum"}``
where the checksum is a SHA-256 over every row and the canonical JSON of meta.

Nothing is ever unpickled: only an allow-list of numeric and bool dtypes is
accepted, arrays are rebuilt with ``numpy.frombuffer`` and meta with ``json``,
so a state file from an untrusted place is safe to read (pyarrow >= 14.0.1,
which no longer auto-loads pickled extension types, is assumed).

Errors: every problem with a file (unreadable, truncated, garbled, not ours,
unknown version, checksum mismatch) and every disk error while writing
(``EACCES``, ``ENOSPC``, ...) is raised as :class:`CheckpointError`, whose
message names the file; the ``OSError`` is chained as ``__cause__``. A failed
write never leaves a file that :class:`CheckpointStore` would trust: writes go
to a dot-named temp file in the same directory, which is fsynced, renamed with
``os.replace`` and then the directory is fsynced. One writer per
(directory, prefix) is assumed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["FORMAT_VERSION", "CheckpointError", "CheckpointStore", "describe", "read_state",
           "write_state"]

FORMAT_VERSION: int = 1
SUPPORTED_VERSIONS: frozenset[int] = frozenset({1})
_KEY = b"streamal"
_ALLOWED_DTYPES = frozenset(
    np.dtype(c).newbyteorder("<").str
    for c in ("?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16")
)
_SEQ_IN_NAME = re.compile(r"-(\d+)\.parquet$")
logger = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


class CheckpointError(Exception):
    """A state file cannot be written, or is not a valid streamal state file."""


def _canonical_meta(meta: Any) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _checksum(rows: list[tuple[str, str, list[int], bytes]], meta_json: bytes, version: int) -> str:
    h = hashlib.sha256(b"streamal-state\0" + version.to_bytes(8, "little"))
    for name, dtype, shape, data in sorted(rows, key=lambda r: r[0]):
        shape_b = b"".join(int(n).to_bytes(8, "little", signed=True) for n in shape)
        for field in (name.encode(), dtype.encode(), shape_b, data):
            h.update(len(field).to_bytes(8, "little") + field)
    h.update(len(meta_json).to_bytes(8, "little") + meta_json)
    return "sha256:" + h.hexdigest()


def _encode(path: Path, arrays: Mapping[str, Any], meta: dict[str, Any]) -> pa.Table:
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: meta must be a dict, not {type(meta).__name__}")
    rows = []
    for name, value in arrays.items():
        if not isinstance(name, str) or not name or not name.isprintable():
            raise CheckpointError(f"{path}: array names must be printable str, got {name!r}")
        arr = np.asarray(value)
        dtype = arr.dtype.newbyteorder("<")
        if dtype.str not in _ALLOWED_DTYPES:
            raise CheckpointError(f"{path}: array {name!r} has dtype {arr.dtype} (not allowed)")
        rows.append((name, dtype.str, list(arr.shape), arr.astype(dtype, copy=False).tobytes()))
    rows.sort(key=lambda r: r[0])
    try:
        meta_json = _canonical_meta(meta)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: meta is not JSON-serialisable: {exc}") from exc
    doc = {"format_version": FORMAT_VERSION, "meta": json.loads(meta_json),
           "checksum": _checksum(rows, meta_json, FORMAT_VERSION)}
    big = sum(len(r[3]) for r in rows) >= 2**31 - 1
    table = pa.table({
        "name": pa.array([r[0] for r in rows], pa.string()),
        "dtype": pa.array([r[1] for r in rows], pa.string()),
        "shape": pa.array([r[2] for r in rows], pa.list_(pa.int64())),
        "data": pa.array([r[3] for r in rows], pa.large_binary() if big else pa.binary()),
    })
    return table.replace_schema_metadata({_KEY: json.dumps(doc, ensure_ascii=True).encode()})


def _fsync_dir(directory: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_state(path: PathLike, arrays: Mapping[str, Any], meta: dict[str, Any]) -> None:
    """Write arrays and meta to ``path`` atomically.

    Parameters
    ----------
    path
        Destination file; it is replaced only once the new content is durable.
    arrays
        Name to array; any shape, dtype bool, (u)int8-64, float16-64 or complex.
    meta
        JSON-serialisable dict (it comes back as JSON: tuples become lists).

    Raises
    ------
    CheckpointError
        On a disallowed dtype, non-JSON meta, or any ``OSError`` while writing
        (chained as ``__cause__``). The temp file is removed; ``path`` is untouched.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> tmp = tempfile.TemporaryDirectory()
    >>> write_state(f"{tmp.name}/s.parquet", {"w": np.eye(2, dtype="float32")}, {"step": 3})
    >>> arrays, meta = read_state(f"{tmp.name}/s.parquet")
    >>> arrays["w"].dtype, arrays["w"].shape, meta
    (dtype('float32'), (2, 2), {'step': 3})
    >>> tmp.cleanup()
    """
    path = Path(path)
    table = _encode(path, arrays, meta)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f, write_statistics=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise CheckpointError(f"{path}: cannot write state file: {exc}") from exc
        raise


def _decode(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any], int, bool]:
    """Parse and check a state file; return arrays, meta, version and checksum_ok."""
    try:
        with pq.ParquetFile(path) as parquet_file:
            table = parquet_file.read()
    except Exception as exc:  # untrusted bytes: any parser failure means "not readable"
        raise CheckpointError(f"{path}: not a readable Parquet file: {exc}") from exc
    raw = (table.schema.metadata or {}).get(_KEY)
    if raw is None:
        raise CheckpointError(f"{path}: not a streamal state file (no 'streamal' metadata key)")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise CheckpointError(f"{path}: garbled 'streamal' metadata: {exc}") from exc
    version = doc.get("format_version") if isinstance(doc, dict) else None
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        is_newer = type(version) is int and version > FORMAT_VERSION
        newer = " (newer than this streamal)" if is_newer else ""
        raise CheckpointError(f"{path}: unsupported format version {version!r}{newer}; "
                              f"supported: {sorted(SUPPORTED_VERSIONS)}")
    meta, checksum = doc.get("meta"), doc.get("checksum")
    if not isinstance(meta, dict) or not isinstance(checksum, str):
        raise CheckpointError(f"{path}: 'streamal' metadata lacks a meta dict or a checksum")
    want = {"name": [pa.string()], "dtype": [pa.string()], "shape": [pa.list_(pa.int64())],
            "data": [pa.binary(), pa.large_binary()]}
    got = {f.name: f.type for f in table.schema}
    if set(got) != set(want) or any(got[c] not in want[c] for c in want):
        raise CheckpointError(f"{path}: unexpected columns {got}")
    cols = [table.column(c).to_pylist() for c in ("name", "dtype", "shape", "data")]
    rows = list(zip(*cols, strict=True))
    arrays: dict[str, np.ndarray] = {}
    for name, dtype, shape, data in rows:
        if name is None or dtype is None or shape is None or data is None:
            raise CheckpointError(f"{path}: null cell in array row {name!r}")
        if name in arrays:
            raise CheckpointError(f"{path}: duplicate array name {name!r}")
        if dtype not in _ALLOWED_DTYPES:
            raise CheckpointError(f"{path}: array {name!r} has disallowed dtype {dtype!r}")
        dt = np.dtype(dtype)
        if any(n is None or n < 0 for n in shape) or math.prod(shape) * dt.itemsize != len(data):
            raise CheckpointError(f"{path}: array {name!r}: shape {shape} x {dt.itemsize} bytes "
                                  f"!= {len(data)} data bytes")
        if dt.kind == "b" and data and np.frombuffer(data, np.uint8).max() > 1:
            raise CheckpointError(f"{path}: array {name!r}: bool bytes other than 0/1")
        arrays[name] = np.frombuffer(data, dtype=dt).reshape(shape).astype(dt.newbyteorder("="))
    ok = _checksum(rows, _canonical_meta(meta), version) == checksum
    return arrays, meta, version, ok


def read_state(path: PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and verify a state file written by :func:`write_state`.

    Returns
    -------
    arrays, meta
        Fresh writable native-endian arrays, and the meta dict.

    Raises
    ------
    CheckpointError
        If the file is missing, truncated, garbled, not a streamal file, of an
        unsupported format version, has a disallowed dtype or a checksum mismatch.
    """
    path = Path(path)
    arrays, meta, _, ok = _decode(path)
    if not ok:
        raise CheckpointError(f"{path}: checksum mismatch: the content was altered")
    return arrays, meta


def describe(path: PathLike) -> dict[str, Any]:
    """Summarise a state file for humans (``streamal checkpoint show PATH``).

    A checksum mismatch is reported as ``checksum_ok: False``; any other
    problem raises :class:`CheckpointError`. The result is JSON-serialisable.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> tmp = tempfile.TemporaryDirectory()
    >>> p = f"{tmp.name}/checkpoint-0000000007.parquet"
    >>> write_state(p, {"w": np.zeros((3, 2))}, {"n_seen": 10})
    >>> info = describe(p)
    >>> info["sequence"], info["checksum_ok"], info["arrays"], info["meta"]
    (7, True, {'w': {'dtype': '<f8', 'shape': [3, 2]}}, {'n_seen': 10})
    >>> tmp.cleanup()
    """
    path = Path(path)
    arrays, meta, version, ok = _decode(path)
    m = _SEQ_IN_NAME.search(path.name)

    def short(v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 80):
            return v
        return f"<{type(v).__name__} of length {len(v)}>"

    return {
        "path": str(path),
        "format_version": version,
        "sequence": int(m[1]) if m else None,
        "size_bytes": path.stat().st_size,
        "checksum_ok": ok,
        "meta": {k: short(v) for k, v in meta.items()},
        "arrays": {k: {"dtype": a.dtype.str, "shape": list(a.shape)} for k, a in arrays.items()},
    }


class CheckpointStore:
    """Numbered state files in one directory, keeping the last ``keep`` valid ones.

    Files are named ``{prefix}-{sequence:010d}.parquet``; the sequence only
    grows. Temp files start with a dot and are ignored by :meth:`list`.

    Parameters
    ----------
    directory
        Where the files live; created on the first :meth:`save`.
    keep
        How many valid checkpoints to keep (corrupt ones newer than the oldest
        kept valid one are left for inspection).
    prefix
        File name prefix, so several stores can share a directory.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> tmp = tempfile.TemporaryDirectory()
    >>> store = CheckpointStore(tmp.name, keep=2)
    >>> for step in range(3):
    ...     _ = store.save({"w": np.full(2, step)}, {"step": step})
    >>> [p.name for p in store.list()]
    ['checkpoint-0000000002.parquet', 'checkpoint-0000000003.parquet']
    >>> arrays, meta, path = store.load_latest()
    >>> meta, store.latest_sequence
    ({'step': 2}, 3)
    >>> tmp.cleanup()
    """

    def __init__(self, directory: PathLike, keep: int = 3, prefix: str = "checkpoint"):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        if not prefix or prefix.startswith(".") or "/" in prefix or os.sep in prefix:
            raise ValueError(f"prefix must be a plain file name part, got {prefix!r}")
        self.directory = Path(directory)
        self.keep = keep
        self.prefix = prefix
        self._name = re.compile(rf"{re.escape(prefix)}-(\d+)\.parquet")
        self._tmp = re.compile(rf"\.{re.escape(prefix)}-\d+\.parquet\..*\.tmp")
        self._verified: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns)

    def _numbered(self) -> list[tuple[int, Path]]:
        if not self.directory.is_dir():
            return []
        found = ((self._name.fullmatch(p.name), p) for p in self.directory.iterdir())
        return sorted((int(m[1]), p) for m, p in found if m and p.is_file())

    def list(self) -> list[Path]:
        """Checkpoint files, oldest first (valid or not; temp files excluded)."""
        return [p for _, p in self._numbered()]

    @property
    def latest_sequence(self) -> int | None:
        """Highest sequence number on disk (valid or not), or None if none."""
        numbered = self._numbered()
        return numbered[-1][0] if numbered else None

    def save(self, arrays: Mapping[str, Any], meta: dict[str, Any]) -> Path:
        """Write a new checkpoint durably, then prune; return its path.

        Raises :class:`CheckpointError` on any failure, leaving older files intact.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            stale = [p for p in self.directory.iterdir() if self._tmp.fullmatch(p.name)]
        except OSError as exc:
            raise CheckpointError(f"{self.directory}: cannot use directory: {exc}") from exc
        for p in stale:  # temp files of a crashed save
            try:
                p.unlink()
            except OSError as exc:
                logger.warning("could not remove stale temp file %s: %s", p, exc)
        path = self.directory / f"{self.prefix}-{(self.latest_sequence or 0) + 1:010d}.parquet"
        write_state(path, arrays, meta)
        self._remember(path)
        valid = 0
        for old in reversed(self.list()):
            if valid >= self.keep:
                try:
                    old.unlink()
                except OSError as exc:
                    logger.warning("could not prune checkpoint %s: %s", old, exc)
            elif self._is_valid(old):
                valid += 1
        return path

    def _remember(self, path: Path) -> None:
        st = path.stat()
        self._verified[path.name] = (st.st_size, st.st_mtime_ns)

    def _is_valid(self, path: Path) -> bool:
        st = path.stat()
        if self._verified.get(path.name) == (st.st_size, st.st_mtime_ns):
            return True
        try:
            read_state(path)
        except CheckpointError:
            return False
        self._remember(path)
        return True

    def load_latest(self) -> tuple[dict[str, np.ndarray], dict[str, Any], Path] | None:
        """Newest valid checkpoint as ``(arrays, meta, path)``, or None if there are none.

        A corrupt newer file is skipped with a WARNING naming it and the reason.
        If files exist but none is valid, :class:`CheckpointError` is raised
        rather than silently starting from scratch.
        """
        paths = self.list()
        for path in reversed(paths):
            try:
                arrays, meta = read_state(path)
            except CheckpointError as exc:
                logger.warning("skipping checkpoint %s, falling back: %s", path, exc)
                continue
            return arrays, meta, path
        if paths:
            raise CheckpointError(f"{self.directory}: none of {len(paths)} checkpoints is valid")
        return None
