"""Tests for streamal.checkpoint: round trips, atomicity, corruption, safety, pruning."""

from __future__ import annotations

import errno
import json
import logging
import os
import pathlib
import pickle
import re
import shutil
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from streamal import checkpoint as ck
from streamal.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointStore,
    describe,
    read_state,
    write_state,
)

DTYPES = ["?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"]


def assert_same(a: dict[str, np.ndarray], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        want = np.asarray(b[k])
        assert a[k].dtype == want.dtype.newbyteorder("="), k
        assert a[k].shape == want.shape, k
        np.testing.assert_array_equal(a[k], want)


def rewrite(path: Path, doc_edit: Callable[[dict], None] | None = None,
            rows_edit: Callable[[dict], None] | None = None, fix_checksum: bool = False) -> None:
    """Rewrite a state file with edited metadata/rows, optionally with a valid checksum."""
    table = pq.read_table(path)
    doc = json.loads(table.schema.metadata[b"streamal"])
    cols = {c: table.column(c).to_pylist() for c in table.column_names}
    if rows_edit:
        rows_edit(cols)
    if doc_edit:
        doc_edit(doc)
    if fix_checksum:
        rows = list(zip(cols["name"], cols["dtype"], cols["shape"], cols["data"], strict=True))
        doc["checksum"] = ck._checksum(rows, ck._canonical_meta(doc["meta"]), 1)
    new = pa.table({"name": pa.array(cols["name"], pa.string()),
                    "dtype": pa.array(cols["dtype"], pa.string()),
                    "shape": pa.array(cols["shape"], pa.list_(pa.int64())),
                    "data": pa.array(cols["data"], pa.binary())})
    pq.write_table(new.replace_schema_metadata({"streamal": json.dumps(doc)}), path)


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    path = tmp_path / "s.parquet"
    rng = np.random.default_rng(0)
    write_state(path, {"w": rng.normal(size=(64, 64)), "n": np.int64(5)}, {"step": 1})
    return path


# --- round trips -------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
array_strategy = st.sampled_from(DTYPES).flatmap(
    lambda d: hnp.arrays(d, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
)


@settings(max_examples=60, deadline=None)
@given(arrays=st.dictionaries(st.text(min_size=1).filter(str.isprintable), array_strategy,
                              max_size=5),
       meta=st.dictionaries(st.text(), json_values, max_size=5))
def test_round_trip_any_dtype_shape_and_meta(arrays: dict, meta: dict) -> None:
    with tempfile.TemporaryDirectory() as d:
        write_state(Path(d) / "s.parquet", arrays, meta)
        got, got_meta = read_state(Path(d) / "s.parquet")
    assert_same(got, arrays)
    assert got_meta == meta


def test_round_trip_awkward_layouts(tmp_path: Path) -> None:
    base = np.arange(24, dtype="f8").reshape(4, 6)
    arrays = {
        "model/0/layer0.weight": base.astype(">f4"),  # big-endian input
        "fortran": np.asfortranarray(base),
        "strided": base[::2, ::3],
        "scalar": np.float32(1.5),
        "zero_d": np.array(7, dtype="u2"),
        "empty": np.empty((0, 3), dtype="i4"),
        "flags": np.array([True, False, True]),
        "nonfinite": np.array([np.nan, np.inf, -np.inf, -0.0]),
    }
    write_state(tmp_path / "s.parquet", arrays, {"tuple": (1, 2), "nested": {"a": [None]}})
    got, meta = read_state(tmp_path / "s.parquet")
    assert_same(got, arrays)
    assert meta == {"tuple": [1, 2], "nested": {"a": [None]}}  # JSON: tuples come back as lists
    assert all(a.flags.writeable and a.flags.c_contiguous for a in got.values())


@pytest.mark.parametrize("arrays, meta, match", [
    ({"x": np.array([object()], dtype=object)}, {}, "not allowed"),
    ({"x": np.array(["a"])}, {}, "not allowed"),
    ({"x": np.zeros(2, dtype="M8[ns]")}, {}, "not allowed"),
    ({"": np.zeros(1)}, {}, "printable str"),
    ({"a\nb": np.zeros(1)}, {}, "printable str"),
    ({"\ud800": np.zeros(1)}, {}, "printable str"),
    ({"x": np.zeros(1)}, {"bad": object()}, "JSON"),
    ({"x": np.zeros(1)}, [1], "must be a dict"),
])
def test_write_rejects_bad_input(tmp_path: Path, arrays: dict, meta: Any, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        write_state(tmp_path / "s.parquet", arrays, meta)
    assert list(tmp_path.iterdir()) == []


# --- atomicity and disk errors ------------------------------------------------------------

def test_crash_before_rename_keeps_old_file(state_file: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    before = state_file.read_bytes()

    def boom(*args: Any) -> None:
        raise OSError(errno.EIO, "simulated crash")

    monkeypatch.setattr(ck.os, "replace", boom)
    with pytest.raises(CheckpointError, match="simulated crash") as info:
        write_state(state_file, {"w": np.ones(3)}, {"step": 2})
    assert isinstance(info.value.__cause__, OSError)
    assert state_file.read_bytes() == before
    assert [p.name for p in state_file.parent.iterdir()] == [state_file.name]  # temp removed
    assert read_state(state_file)[1] == {"step": 1}


def test_store_crash_leaves_no_trusted_file(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    store = CheckpointStore(tmp_path)
    first = store.save({"w": np.zeros(2)}, {"step": 1})
    monkeypatch.setattr(ck.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("crash")))
    with pytest.raises(CheckpointError):
        store.save({"w": np.ones(2)}, {"step": 2})
    assert store.list() == [first]
    assert store.load_latest()[1] == {"step": 1}


@pytest.mark.parametrize("target", ["fsync", "write_table"])
def test_enospc_raises_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          target: str) -> None:
    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ck.os if target == "fsync" else ck.pq, target, full)
    store = CheckpointStore(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="ckpt") as info:
        store.save({"w": np.zeros(2)}, {})
    assert info.value.__cause__.errno == errno.ENOSPC
    assert list((tmp_path / "ckpt").iterdir()) == []
    assert store.load_latest() is None


def _unprivileged(fn: Callable[[], None]) -> None:
    """Run fn as-is, or, under root (which ignores permissions), in a child as nobody."""
    if os.geteuid() != 0:
        fn()
        return
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            fn()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "check failed in the unprivileged child"


def test_read_only_directory() -> None:
    d = Path(tempfile.mkdtemp())
    try:
        store = CheckpointStore(d)
        old = store.save({"w": np.zeros(2)}, {"step": 1})
        d.chmod(0o555)

        def attempt() -> None:
            with pytest.raises(CheckpointError, match=str(d)) as info:
                store.save({"w": np.ones(2)}, {"step": 2})
            assert isinstance(info.value.__cause__, PermissionError)

        _unprivileged(attempt)
        assert store.list() == [old] and sorted(d.iterdir()) == [old]
        assert store.load_latest()[1] == {"step": 1}
    finally:
        d.chmod(0o755)
        shutil.rmtree(d)


# --- corrupt, foreign and hostile files -----------------------------------------------------

def test_truncated_file(state_file: Path) -> None:
    data = state_file.read_bytes()
    for size in (0, 10, len(data) // 2, len(data) - 5):
        state_file.write_bytes(data[:size])
        with pytest.raises(CheckpointError, match=str(state_file)):
            read_state(state_file)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nope.parquet"):
        read_state(tmp_path / "nope.parquet")


def test_garbled_middle(state_file: Path) -> None:
    data = bytearray(state_file.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(255 - b for b in data[mid:mid + 64])
    state_file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=str(state_file)):
        read_state(state_file)


@pytest.mark.parametrize("version, match", [
    (FORMAT_VERSION + 1, r"newer than this streamal.*supported: \[1\]"),
    (0, "unsupported format version 0"),
    ("1", "unsupported format version '1'"),
    (None, "unsupported format version None"),
])
def test_wrong_version(state_file: Path, version: Any, match: str) -> None:
    rewrite(state_file, doc_edit=lambda doc: doc.update(format_version=version))
    with pytest.raises(CheckpointError, match=match):
        read_state(state_file)


def test_checksum_mismatch_on_edited_meta(state_file: Path) -> None:
    rewrite(state_file, doc_edit=lambda doc: doc["meta"].update(step=999))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        read_state(state_file)
    assert describe(state_file)["checksum_ok"] is False


def test_checksum_mismatch_on_edited_data(state_file: Path) -> None:
    def flip(cols: dict) -> None:
        i = cols["name"].index("w")
        cols["data"][i] = bytes(len(cols["data"][i]))  # same length, other values

    rewrite(state_file, rows_edit=flip)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        read_state(state_file)


def test_plain_parquet_is_not_ours(tmp_path: Path) -> None:
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), path)
    with pytest.raises(CheckpointError, match="not a streamal state file"):
        read_state(path)
    pq.write_table(pa.table({"a": [1]}).replace_schema_metadata({"streamal": "{oops"}), path)
    with pytest.raises(CheckpointError, match="garbled"):
        read_state(path)
    doc = {"format_version": 1, "meta": {}, "checksum": "x"}
    pq.write_table(pa.table({"a": [1]}).replace_schema_metadata({"streamal": json.dumps(doc)}),
                   path)
    with pytest.raises(CheckpointError, match="unexpected columns"):
        read_state(path)


@pytest.mark.parametrize("edit, match", [
    ({"dtype": "<M8[ns]"}, "disallowed dtype"),
    ({"shape": [5]}, "data bytes"),
    ({"shape": [-1]}, "data bytes"),
    ({"dtype": "|b1", "shape": [8], "data": bytes([0, 1, 2, 0, 0, 0, 0, 0])}, "bool bytes"),
])
def test_bad_rows_with_valid_checksum(state_file: Path, edit: dict, match: str) -> None:
    def change(cols: dict) -> None:
        i = cols["name"].index("n")
        for k, v in edit.items():
            cols[k][i] = v

    rewrite(state_file, rows_edit=change, fix_checksum=True)
    with pytest.raises(CheckpointError, match=match):
        read_state(state_file)


class Evil:
    """Unpickling this touches a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (pathlib.Path.touch, (self.marker,))


def test_pickle_is_never_loaded(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Evil(probe)))  # the payload really does run code ...
    assert probe.exists()
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Evil(marker))
    path = tmp_path / "s.parquet"
    write_state(path, {"x": np.zeros(1)}, {})

    def smuggle(cols: dict) -> None:  # object dtype row holding a pickle, checksum made valid
        cols["dtype"][0], cols["shape"][0], cols["data"][0] = "|O", [1], payload

    rewrite(path, rows_edit=smuggle, fix_checksum=True)
    with pytest.raises(CheckpointError, match=re.escape("disallowed dtype '|O'")):
        read_state(path)
    with pytest.raises(CheckpointError):
        describe(path)
    (tmp_path / "raw.parquet").write_bytes(payload)  # a bare pickle posing as a state file
    with pytest.raises(CheckpointError, match="not a readable Parquet file"):
        read_state(tmp_path / "raw.parquet")
    assert not marker.exists()  # ... but read_state never ran it


# --- store ---------------------------------------------------------------------------------

def test_store_sequence_and_pruning(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    assert store.list() == [] and store.latest_sequence is None and store.load_latest() is None
    paths = [store.save({"w": np.full(3, i)}, {"i": i}) for i in range(5)]
    assert paths[0].name == "checkpoint-0000000001.parquet"
    assert store.list() == paths[-2:] and store.latest_sequence == 5
    again = CheckpointStore(tmp_path, keep=2)  # a new process continues the numbering
    assert again.save({"w": np.zeros(1)}, {"i": 5}).name == "checkpoint-0000000006.parquet"
    arrays, meta, path = again.load_latest()
    assert meta == {"i": 5} and path.name.endswith("06.parquet")


def test_store_falls_back_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    a, b = (store.save({"w": np.full(2, i)}, {"i": i}) for i in range(2))
    b.write_bytes(b.read_bytes()[:50])
    with caplog.at_level(logging.WARNING, logger="streamal.checkpoint"):
        arrays, meta, path = store.load_latest()
    assert path == a and meta == {"i": 0}
    assert any(r.levelno == logging.WARNING and b.name in r.getMessage()
               and "not a readable Parquet" in r.getMessage() for r in caplog.records)
    c = store.save({"w": np.zeros(2)}, {"i": 2})  # keeps 2 valid (a, c) and the corrupt b
    assert store.list() == [a, b, c]
    d = store.save({"w": np.zeros(2)}, {"i": 3})
    assert store.list() == [c, d]
    for p in (c, d):
        p.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="none of 2 checkpoints is valid"):
        store.load_latest()


def test_store_ignores_and_cleans_stale_temp_files(tmp_path: Path) -> None:
    stale = tmp_path / ".checkpoint-0000000002.parquet.123.abcd.tmp"
    stale.write_bytes(b"half a file")
    other = [tmp_path / "notes.txt", tmp_path / "other-0000000009.parquet"]
    for p in other:
        p.write_bytes(b"x")
    store = CheckpointStore(tmp_path)
    assert store.list() == [] and store.load_latest() is None
    saved = store.save({"w": np.zeros(1)}, {})
    assert saved.name == "checkpoint-0000000001.parquet"
    assert sorted(tmp_path.iterdir()) == sorted([saved, *other])


def test_store_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep"):
        CheckpointStore(tmp_path, keep=0)
    for prefix in ("", ".hidden", "a/b"):
        with pytest.raises(ValueError, match="prefix"):
            CheckpointStore(tmp_path, prefix=prefix)


def test_describe(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, prefix="model")
    meta = {"params": {"lr": 0.1}, "n": 3, "s": "x" * 100}
    path = store.save({"w": np.zeros((2, 3), "f4")}, meta)
    info = describe(path)
    json.dumps(info)
    assert info["format_version"] == FORMAT_VERSION and info["sequence"] == 1
    assert info["checksum_ok"] is True and info["size_bytes"] == path.stat().st_size
    assert info["arrays"] == {"w": {"dtype": "<f4", "shape": [2, 3]}}
    assert info["meta"] == {"params": "<dict of length 1>", "n": 3, "s": "<str of length 100>"}
