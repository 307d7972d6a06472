"""The connector contract: records, positions, JSON encoding, context managers."""

import math

import pytest

from streamal.connectors import MemorySink, MemorySource, Record, encode_json, next_positions


def test_record_id_is_stream_at_offset():
    assert Record({"x": 1}, ("data/a.csv", 0)).id == "data/a.csv@0"
    assert Record(b"", ("orders:3", 1234)).id == "orders:3@1234"


def test_record_is_frozen():
    record = Record(b"v", ("t:0", 0))
    with pytest.raises(AttributeError):
        record.key = "k"  # type: ignore[misc]


def test_next_positions_takes_the_highest_offset_per_stream():
    batch = [Record(b"", (s, o)) for s, o in [("a", 3), ("b", 0), ("a", 1), ("a", 7)]]
    assert next_positions(batch) == {"a": 8, "b": 1}
    assert next_positions([]) == {}


def test_encode_json_is_strict_and_compact():
    encoded = encode_json({"a": 1, "b": [1.5, None], "c": "é"})
    assert encoded == '{"a":1,"b":[1.5,null],"c":"é"}'.encode()
    with pytest.raises(ValueError):
        encode_json({"score": math.nan})
    with pytest.raises(TypeError):
        encode_json({"raw": b"bytes"})
    with pytest.raises(TypeError, match="mapping"):
        encode_json([1, 2])  # type: ignore[arg-type]


def test_context_managers_close_and_flush():
    with MemorySink() as sink:
        sink.add({"a": 1})
    assert sink.records == [{"a": 1}]
    with MemorySource([b"x"]) as source:
        assert source.poll(1, 0)[0].value == b"x"
