"""RecordDecoder: good records, and every kind of bad one with its stage and reason."""

from __future__ import annotations

import pytest

from streamal.connectors import Record
from streamal.runtime import DecodeError, RecordDecoder


def rec(value, key=None, event_time=None) -> Record:
    return Record(value, ("t:0", 3), key=key, event_time=event_time)


def test_all_numeric_fields_are_features_by_default():
    d = RecordDecoder(label_field="y", key_field="k", time_field="ts").decode(
        rec(b'{"k": "m1", "ts": 12.5, "y": 1, "a": 1, "b": true, "c": null}'))
    assert d.features == {"a": 1.0, "b": 1.0}
    assert (d.label, d.key, d.event_time) == (1, "m1", 12.5)


def test_parsed_rows_and_record_context_pass_through():
    d = RecordDecoder().decode(rec({"a": 2, "b": 3.5}, key=b"k7", event_time=9.0))
    assert d.features == {"a": 2.0, "b": 3.5}
    assert (d.key, d.event_time, d.label) == ("k7", 9.0, None)


def test_explicit_features_ignore_other_fields_and_null_is_missing():
    decoder = RecordDecoder(features=["a", "b"])
    d = decoder.decode(rec(b'{"a": 1, "b": null, "name": "x", "tags": [1]}'))
    assert d.features == {"a": 1.0}


def test_iso_time_and_group_field():
    d = RecordDecoder(time_field="ts", exclude=["site"]).decode(
        rec(b'{"ts": "1970-01-01T00:01:00", "site": 42, "a": 1}'), group_field="site")
    assert (d.event_time, d.group, d.features) == (60.0, "42", {"a": 1.0})


BAD = [
    (b"\xff\xfe{", "decode", "UTF-8"),
    (b'{"a": 1', "decode", "JSON"),
    (b"", "decode", "empty"),
    (None, "decode", "null"),
    (b"[1, 2]", "decode", "array"),
    (b"3.5", "decode", "number"),
    (b'{"a": "12"}', "validate", "not a number"),
    (b'{"a": {"x": 1}}', "validate", "object"),
    (b'{"a": [1, 2]}', "validate", "array"),
    (b'{"a": NaN}', "validate", "not finite"),
    (b'{"a": -Infinity}', "validate", "not finite"),
    (b'{"a": 1e400}', "validate", "not finite"),
    (b'{"a": 1' + b"0" * 400 + b"}", "validate", "too large"),
    (b'{"a": 1, "y": 2.5}', "validate", "label"),
    (b'{"a": 1, "y": {"k": 1}}', "validate", "label"),
    (b'{"a": 1, "y": "' + b"z" * 300 + b'"}', "validate", "label"),
    (b'{"a": null}', "validate", "no feature"),
    (b"{}", "validate", "no feature"),
    (b'{"a": 1, "ts": "yesterday"}', "validate", "time field"),
    (b'{"a": 1, "ts": true}', "validate", "time field"),
    (b'{"a": 1, "k": [1]}', "validate", "key field"),
]


@pytest.mark.parametrize(("value", "stage", "words"), BAD)
def test_bad_records_raise_with_stage_and_reason(value, stage, words):
    decoder = RecordDecoder(label_field="y", time_field="ts", key_field="k")
    with pytest.raises(DecodeError) as info:
        decoder.decode(rec(value))
    assert info.value.stage == stage
    assert words.lower() in info.value.reason.lower()


def test_missing_required_feature_and_group():
    with pytest.raises(DecodeError, match="missing required feature"):
        RecordDecoder(features=["a", "b"]).decode(rec(b'{"a": 1}'))
    with pytest.raises(DecodeError, match="per-key field 'site' is missing"):
        RecordDecoder().decode(rec(b'{"a": 1}'), group_field="site")
    with pytest.raises(DecodeError, match="per-key field"):
        RecordDecoder().decode(rec(b'{"a": 1, "site": "\\u0000"}'), group_field="site")


QUICK = [b'{"k": "m1", "ts": 12.5, "a": 1.5, "b": -2.0}', b'{"a": 1.5, "k": null}',
         b'{"a": 1e19, "b": 1.0}', b'{"a": 1.0, "note": 1e30}', b'{"a": 1.0, "note": [1]}',
         b'{"a": 1.0, "note": {"x": 1}}', b'{"a": 1.0, "note": "hi", "n": 3}',
         b'{"a": 1.0, "ts": 1e400}', b'{"a": 1.0, "k": "' + b"z" * 300 + b'"}',
         b'{"a": 1.0, "k": "\\u0007"}', b'{"a": 1.0, "k": 7}', b'{"note": 1.0}']


@pytest.mark.parametrize("decoder", [RecordDecoder(time_field="ts", key_field="k",
                                                   exclude=["note"]),
                                     RecordDecoder(label_field="y", time_field="ts",
                                                   key_field="k", exclude=["note"])])
def test_decode_many_equals_decode_one_by_one(decoder):
    records = [rec(v, key=b"rk", event_time=4.0) for v in QUICK + [v for v, _, _ in BAD]]
    records.append(rec({"a": 1.0, "ts": 3.0}))
    expected = []
    for record in records:
        try:
            expected.append(decoder.decode(record))
        except DecodeError as exc:
            expected.append((exc.stage, exc.reason))
    got = [(d.stage, d.reason) if isinstance(d, DecodeError) else d
           for d in decoder.decode_many(records)]
    assert got == expected
    assert sum(isinstance(d, tuple) for d in got) >= len(BAD) - 3
