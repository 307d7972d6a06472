"""Garbage in: random bytes, broken UTF-8 and JSON, wrong shapes, non-finite and huge numbers,
1 MB values, deep nesting, strings where numbers belong, a new feature name in every record.

Pass: every record gets exactly one output, a score or a dead letter with its stage and
reason; no exception escapes; the weights stay finite; memory stays bounded by the caps on
features (``max_features``) and models (``max_models``), records beyond them being
dead-lettered, not learnt; a dead letter stays small however large its record.
Booleans are features (0 and 1) by the decoder's contract, not bad input.
"""

from __future__ import annotations

import json
import math
import random
import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamal import ActivationDetector
from streamal.connectors import MemorySink, MemorySource, Record
from streamal.runtime import Decoded, DecodeError, Pipeline, RecordDecoder
from streamal.runtime.outputs import MAX_RAW_BYTES, MAX_REASON_CHARS

MB = 1 << 20

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-10**400, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, -1e308, 5e-324]),
    st.text(max_size=12), st.sampled_from(["1.5", "NaN", "", "∞"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)
names = st.one_of(st.sampled_from(["a", "b", "c"]), st.text(min_size=1, max_size=10))
objects = st.dictionaries(names, values, max_size=6)
good = st.fixed_dictionaries({"a": st.floats(-100, 100), "b": st.floats(-100, 100)})


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


SPECIAL = [
    b"[" * 100_000 + b"]" * 100_000,  # deep nesting
    b'{"a": ' + b"1" * 5000 + b"}",  # an integer of 5000 digits
    b'{"a": 1e999, "b": -1e999}',  # overflows to infinities
    b'{"a": NaN, "b": Infinity}',
    dumps({"a": "x" * MB}),  # a 1 MB string where a number belongs
    dumps({"a": [0.5] * (MB // 5)}),  # a 1 MB array
    dumps({f"f{i}": 1.0 for i in range(90_000)}),  # a 1 MB object of features
    b"\xff" * MB,  # 1 MB of invalid UTF-8
    dumps({"a": {"b": {"c": 1.0}}}),
    dumps({"a": True, "b": False}),  # booleans: features 0/1
    dumps({"a": "1.5", "b": 2.0}),
    b'{"a": 1.0, "a": "dup"}',
    "{\"a\": 1.0, \"\ud800\": 2.0}".encode("utf-8", "surrogatepass"),
    b"\xef\xbb\xbf{\"a\": 1.0}",  # a UTF-8 byte-order mark
    b"",
    b"null",
]
raw = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=40).map(str.encode),
    objects.map(dumps),
    values.map(dumps),
    good.map(dumps),
    st.sampled_from(SPECIAL),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=raw, features=st.sampled_from([None, ["a", "b"]]))
def test_decode_returns_finite_features_or_a_decode_error_with_a_reason(value: bytes,
                                                                        features: Any) -> None:
    decoder = RecordDecoder(features=features, label_field="y")
    try:
        d = decoder.decode(Record(value, ("t:0", 1)))
    except DecodeError as error:
        assert error.stage in ("decode", "validate") and error.reason
        return
    assert isinstance(d, Decoded) and d.features
    assert all(isinstance(v, float) and math.isfinite(v) for v in d.features.values())


def run(values: list[bytes], max_features: int = 8, **kwargs: Any) -> tuple[Pipeline, dict]:
    sinks = {"scores": MemorySink(), "dead_letter": MemorySink()}
    pipe = Pipeline(MemorySource(values), sinks,
                    lambda: ActivationDetector(batch_size=4, max_features=max_features, seed=0),
                    RecordDecoder(), poll_records=16, **kwargs)
    pipe.run()
    return pipe, sinks


def assert_one_output_each(values: list[bytes], sinks: dict) -> None:
    ids = [r["id"] for r in sinks["scores"].records] + \
        [r["id"] for r in sinks["dead_letter"].records]
    assert sorted(ids) == sorted(f"memory@{i}" for i in range(len(values)))
    for dead in sinks["dead_letter"].records:
        assert dead["stage"] in ("decode", "validate", "score", "learn") and dead["reason"]
        assert len(dead["raw"]) <= MAX_RAW_BYTES and len(dead["reason"]) <= MAX_REASON_CHARS + 40
        json.dumps(dead, allow_nan=False)  # a sink can always write it


def assert_finite(pipe: Pipeline) -> None:
    for model in pipe.models.values():
        arrays, _ = model._export_state()
        for name, array in arrays.items():  # pending rows hold NaN for missing features
            if array.dtype.kind == "f" and not name.startswith("pending."):
                assert np.isfinite(array).all(), name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(raw, good.map(dumps), good.map(dumps)), min_size=1, max_size=40))
def test_any_stream_gets_one_output_per_record_and_finite_weights(values: list[bytes]) -> None:
    pipe, sinks = run(values)
    assert_one_output_each(values, sinks)
    assert_finite(pipe)
    for model in pipe.models.values():
        assert len(getattr(model, "_schema", None) or ()) <= 8


def test_the_special_values_alone_and_among_good_records() -> None:
    rng = random.Random(0)
    stream = [dumps({"a": rng.gauss(0, 1), "b": rng.gauss(5, 1)}) for _ in range(200)]
    for value in SPECIAL:
        stream.insert(rng.randrange(len(stream)), value)
    pipe, sinks = run(stream)
    assert_one_output_each(stream, sinks)
    assert_finite(pipe)
    dead = {r["id"]: r for r in sinks["dead_letter"].records}
    big = [r for r in dead.values() if r["raw_size"] >= MB]
    assert len(big) == 4 and all(r["raw_truncated"] for r in big)


class Tally(MemorySink):
    """Keeps only ids and reasons, so that memory measures the pipeline, not the sink."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.reasons: list[str] = []

    def add(self, record: Any, key: str | None = None) -> None:
        self.ids.append(record["id"])
        if "reason" in record:
            self.reasons.append(record["reason"][:100])


def test_a_new_feature_in_every_record_stays_within_the_caps() -> None:
    rng = random.Random(1)
    stream = [dumps({"a": rng.gauss(0, 1), f"new_{i}": rng.gauss(0, 1), "key": f"k{i % 50}"})
              for i in range(3000)]
    scores, dead = Tally(), Tally()
    pipe = Pipeline(MemorySource(stream), {"scores": scores, "dead_letter": dead},
                    lambda: ActivationDetector(batch_size=8, max_features=16, seed=0),
                    RecordDecoder(exclude=["key"]), per_key="key", max_models=10,
                    poll_records=100)
    tracemalloc.start()
    try:
        pipe.run(max_records=1000)
        settled, _ = tracemalloc.get_traced_memory()
        pipe.run()
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sorted(scores.ids + dead.ids) == sorted(f"memory@{i}" for i in range(3000))
    assert len(pipe.models) == 10
    for model in pipe.models.values():
        assert len(model._schema) <= 16
    # 10 of 50 keys get a model; each learns 15 new features, then refuses the rest
    assert sum("max_models=10" in r for r in dead.reasons) == 2400
    assert sum("max_features=16" in r for r in dead.reasons) == 600 - 10 * 15
    assert end - settled < MB // 2, f"memory grew by {(end - settled) / MB:.2f} MB"
    assert_finite(pipe)


@pytest.mark.parametrize("field", ["y"])
def test_labels_of_every_kind_are_checked(field: str) -> None:
    decoder = RecordDecoder(features=["a"], label_field=field)

    def label(y: Any) -> Any:
        return decoder.decode(Record(dumps({"a": 1.0, field: y}), ("t:0", 0))).label

    assert label("ok") == "ok" and label(3) == 3 and label(True) is True and label(None) is None
    for bad in ("x" * 257, 2**70, -(2**64), 3.5, [1], {"k": 1}):
        with pytest.raises(DecodeError, match="label"):
            label(bad)
