"""DriftMonitor: detections, and resume from JSON state giving identical detections."""

from __future__ import annotations

import json
import logging
import random

import pytest

from streamal.drift import DETECTORS, DriftMonitor, decode


def stream(binary: bool, n: int = 3000, shift: int = 1500, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    if binary:
        return [float(rng.random() < (0.1 if i < shift else 0.5)) for i in range(n)]
    return [rng.gauss(0.0 if i < shift else 1.5, 1.0) for i in range(n)]


def detections(monitor: DriftMonitor, values, stream_name: str, offset: int = 0) -> list[int]:
    return [offset + i for i, v in enumerate(values) if monitor.update(v, stream=stream_name)]


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_resume_from_json_state_gives_the_same_detections(name):
    binary = DETECTORS[name][1]
    params = {"seed": 3} if name == "KSWIN" else {}
    n = 800 if name == "KSWIN" else 3000  # KSWIN runs a KS test per value: slow
    values = stream(binary, n=n, shift=n // 2)
    stream_name = "error" if binary else "score"
    whole = DriftMonitor(name, **params)
    expected = detections(whole, values, stream_name)
    if name not in ("NoDrift", "FHDDM"):
        assert any(n // 2 <= i < n // 2 + 300 for i in expected), expected
    for cut in (1, n // 2 + 1, n - 400):
        first = DriftMonitor(name, **params)
        got = detections(first, values[:cut], stream_name)
        second = first.clone()
        second.load_state(json.loads(json.dumps(first.export_state())))
        got += detections(second, values[cut:], stream_name, offset=cut)
        assert got == expected, (cut, got, expected)
        assert json.dumps(second.export_state()) == json.dumps(whole.export_state())


def test_event_fields_and_streams():
    monitor = DriftMonitor("adwin")
    events = [monitor.update(v, id=f"t@{i}", position=["t", i]) for i, v in
              enumerate(stream(False))]
    event = next(e for e in events if e)
    assert event["kind"] == "drift" and event["stream"] == "score"
    assert event["detector"] == "ADWIN" and event["id"] == f"t@{event['n'] - 1}"
    ddm = DriftMonitor("DDM")
    assert ddm.streams == ("error",) and ddm.update(0.9, stream="score") is None
    with pytest.raises(ValueError, match="unknown drift detector"):
        DriftMonitor("nope").update(1.0)


def test_state_from_another_river_version_restarts_the_detectors(caplog):
    monitor = DriftMonitor()
    for v in stream(False, n=100):
        monitor.update(v)
    state = monitor.export_state()
    state["river"] = "0.0.1"
    fresh = monitor.clone()
    with caplog.at_level(logging.WARNING):
        fresh.load_state(state)
    assert fresh.counts() == {} and "start afresh" in caplog.text


def test_state_cannot_name_classes_outside_river():
    with pytest.raises(ValueError, match="outside river"):
        decode({"$t": "obj", "cls": "os:system", "v": {}})
    with pytest.raises(ValueError, match="outside river"):
        decode({"$t": "rust", "cls": "subprocess:Popen", "args": ["ls"], "v": ""})


@pytest.mark.parametrize(("name", "binary"), [("ADWIN", False), ("PageHinkley", False),
                                              ("DDM", True)])
def test_update_many_equals_a_loop_of_update(name, binary):
    values = stream(binary)
    stream_name = "error" if binary else "score"
    one, many = DriftMonitor(name), DriftMonitor(name)
    expected = [(i, event) for i, v in enumerate(values)
                if (event := one.update(v, stream=stream_name))]
    got = []
    for start in range(0, len(values), 8):
        got += [(start + i, event) for i, event
                in many.update_many(values[start:start + 8], stream_name)]
    assert expected and got == expected
    assert json.dumps(many.export_state()) == json.dumps(one.export_state())
    assert many.update_many([1.0, 0.0], "score" if binary else "error") == []
