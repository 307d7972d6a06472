"""MemorySource and MemorySink."""

import pytest

from streamal.connectors import MemorySink, MemorySource, next_positions


def test_round_trip_in_batches_then_exhausted():
    values = [{"x": float(i)} for i in range(7)]
    source = MemorySource(values, stream="s")
    seen = []
    while not source.exhausted:
        batch = source.poll(max_records=3, timeout=0)
        assert len(batch) <= 3
        seen.extend(batch)
    assert [r.value for r in seen] == values
    assert [r.position for r in seen] == [("s", i) for i in range(7)]
    assert source.poll(3, 0) == []


def test_bytes_and_str_values_are_bytes():
    source = MemorySource([b'{"a": 1}', '{"a": 2}'])
    assert [r.value for r in source.poll(5, 0)] == [b'{"a": 1}', b'{"a": 2}']


def test_rejects_other_values():
    with pytest.raises(TypeError, match="item 0"):
        MemorySource([42]).poll(1, 0)  # type: ignore[list-item]


def test_seek_resumes_exactly_after_the_last_processed_record():
    source = MemorySource([{"i": i} for i in range(10)])
    first = source.poll(4, 0)
    resumed = MemorySource([{"i": i} for i in range(10)])
    resumed.seek(next_positions(first))
    assert [r.value["i"] for r in resumed.poll(100, 0)] == list(range(4, 10))
    resumed.seek({})  # streams not given start afresh
    assert resumed.poll(1, 0)[0].position == ("memory", 0)
    resumed.seek({"other": 3})
    assert resumed.poll(1, 0)[0].position == ("memory", 0)


def test_sink_only_flush_makes_records_visible():
    sink = MemorySink()
    sink.add({"id": "s@0", "score": 0.5}, key="s@0")
    sink.add({"id": "s@1", "labels": ("a", "b")})
    assert sink.records == [] and len(sink.pending) == 2
    sink.flush()
    assert sink.records == [{"id": "s@0", "score": 0.5}, {"id": "s@1", "labels": ["a", "b"]}]
    assert sink.keys == ["s@0", None]
    assert sink.pending == []


def test_sink_copies_records_and_rejects_non_json():
    sink = MemorySink()
    record = {"x": [1]}
    sink.add(record)
    record["x"].append(2)
    sink.flush()
    assert sink.records == [{"x": [1]}]
    with pytest.raises(ValueError):
        sink.add({"score": float("inf")})
    with pytest.raises(TypeError):
        sink.add({"raw": b"\x00"})
