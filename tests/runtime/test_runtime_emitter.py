"""The emitter: outputs held back per micro-batch reach each sink in order, in one call."""

from __future__ import annotations

import pytest

from streamal.connectors import MemorySink
from streamal.runtime.outputs import Emitter


class Calls(MemorySink):
    """A memory sink that notes how its records came: ``("add", n)`` or ``("add_many", n)``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []

    def add(self, record, key=None):
        self.calls.append(("add", 1))
        self.records.append(record)

    def add_many(self, records, keys):
        self.calls.append(("add_many", len(records)))
        self.records.extend(records)


def ids(sink: MemorySink) -> list[int]:
    return [r["i"] for r in sink.records]


def test_held_outputs_go_in_one_call_per_sink_at_release():
    scores, alerts = Calls(), Calls()
    emitter = Emitter({"scores": scores, "alerts": alerts})
    for start in range(0, 24, 8):
        emitter.emit_many("scores", [{"i": i} for i in range(start, start + 8)], ["k"] * 8)
        emitter.emit_many("alerts", [{"i": start}], ["k"])
    emitter.emit_many("drift", [{"i": 0}], ["k"])  # no such sink: dropped
    assert scores.records == [] and alerts.records == []
    emitter.release()
    assert scores.calls == [("add_many", 24)] and alerts.calls == [("add_many", 3)]
    assert ids(scores) == list(range(24)) and ids(alerts) == [0, 8, 16]
    emitter.release()  # nothing held: nothing sent
    assert len(scores.calls) == 1


def test_an_emit_after_held_outputs_keeps_the_order_and_flush_releases():
    sink = Calls()
    emitter = Emitter({"dead_letter": sink})
    emitter.emit_many("dead_letter", [{"i": 0}, {"i": 1}], [None, None])
    emitter.emit("dead_letter", {"i": 2}, None)
    emitter.emit_many("dead_letter", [{"i": 3}], [None])
    assert ids(sink) == [0, 1, 2]
    emitter.flush()
    assert ids(sink) == [0, 1, 2, 3]
    assert sink.calls == [("add_many", 2), ("add", 1), ("add_many", 1)]


def test_keys_must_match_the_records():
    emitter = Emitter({"scores": MemorySink()})
    with pytest.raises(ValueError, match="2 records with 1 keys"):
        emitter.emit_many("scores", [{"i": 0}, {"i": 1}], ["k"])
