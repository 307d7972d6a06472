"""FileSink: JSON lines and Parquet part files."""

import json

import pyarrow.parquet as pq
import pytest

from streamal.connectors import FileSink, FileSource


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_appends_only_on_flush(tmp_path):
    path = tmp_path / "out" / "scores.jsonl"
    sink = FileSink(path)
    sink.add({"id": "a@0", "score": 0.1}, key="a@0")
    assert not path.exists()
    sink.flush()
    sink.add({"id": "a@1", "score": 0.2})
    assert read_lines(path) == [{"id": "a@0", "score": 0.1}]
    sink.flush()
    sink.flush()  # nothing pending: nothing written
    sink.close()
    assert read_lines(path) == [{"id": "a@0", "score": 0.1}, {"id": "a@1", "score": 0.2}]


def test_jsonl_resumes_after_a_torn_last_line(tmp_path):
    path = tmp_path / "alerts.jsonl"
    path.write_bytes(b'{"id": "a@0"}\n{"id": "a@1", "sco')  # a crash mid-write
    with FileSink(path) as sink:
        sink.add({"id": "a@1"})
    lines = path.read_text().splitlines()
    assert lines[0] == '{"id": "a@0"}' and lines[-1] == '{"id":"a@1"}'
    assert len(lines) == 3


def test_parquet_writes_one_part_per_flush_readable_at_once(tmp_path):
    folder = tmp_path / "predictions"
    sink = FileSink(folder, format="parquet")
    for i in range(3):
        sink.add({"id": f"s@{i}", "score": i / 10})
    sink.flush()
    sink.add({"id": "s@3", "score": 0.3, "label": "cat"})
    sink.flush()
    sink.flush()
    # readable before close: every flush leaves a complete file
    assert sorted(p.name for p in folder.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert pq.read_table(folder / "part-00001.parquet").to_pylist() == [
        {"id": "s@3", "score": 0.3, "label": "cat"}]
    sink.close()

    again = FileSink(folder, format="parquet")  # a restarted run continues the numbering
    again.add({"id": "s@4", "score": 0.4})
    again.close()
    assert (folder / "part-00002.parquet").exists()
    rows = [r.value for r in FileSource(folder).poll(100, 0)]
    assert [r["id"] for r in rows] == [f"s@{i}" for i in range(5)]


def test_parquet_columns_are_the_union_and_mixed_types_become_json_text(tmp_path):
    with FileSink(tmp_path, format="parquet") as sink:
        sink.add({"id": "s@0", "prediction": 1})
        sink.add({"id": "s@1", "prediction": "cat", "extra": [1, 2]})
    rows = pq.read_table(tmp_path / "part-00000.parquet").to_pylist()
    assert rows == [
        {"id": "s@0", "prediction": "1", "extra": None},
        {"id": "s@1", "prediction": '"cat"', "extra": [1, 2]},
    ]


def test_bad_format_and_records(tmp_path):
    with pytest.raises(ValueError, match="'jsonl' or 'parquet'"):
        FileSink(tmp_path / "x.csv", format="csv")
    sink = FileSink(tmp_path / "x.jsonl")
    with pytest.raises(ValueError):
        sink.add({"score": float("nan")})
