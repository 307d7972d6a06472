"""Pipeline outputs: nothing lost, prequential order, alerts, drift, per-key models."""

from __future__ import annotations

import collections
import json

import numpy as np
from conftest import classifier, detector, labelled_rows, max_weight_diff, sensor_rows

from streamal import ActivationDetector
from streamal.connectors import MemorySink, MemorySource
from streamal.drift import DriftMonitor
from streamal.runtime import FixedThreshold, Pipeline, QuantileThreshold, RecordDecoder

BAD_VALUES = [b"\xff", b"{oops", b"[1]", b'{"a": "hot"}', b'{"a": NaN}', b'{"a": {"b": 1}}',
              b'{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}', b"{}"]


def mixed_stream() -> list:
    rows: list = list(sensor_rows(300))
    for i, bad in enumerate(BAD_VALUES):
        rows.insert(20 + 31 * i, bad)
    return rows


def test_every_record_gets_exactly_one_score_or_dead_letter(build):
    values = mixed_stream()

    def capped():
        return ActivationDetector(batch_size=8, seed=0, max_features=3)

    pipe, out = build(values, model_factory=capped, poll_records=37)
    summary = pipe.run()
    ids = [r["id"] for r in out["scores"].records] + [r["id"] for r in out["dead_letter"].records]
    assert sorted(ids) == sorted(f"memory@{i}" for i in range(len(values)))
    dead = {r["id"]: r for r in out["dead_letter"].records}
    assert len(dead) == len(BAD_VALUES)
    stages = collections.Counter(r["stage"] for r in dead.values())
    assert stages == {"decode": 3, "validate": 5}
    cap = next(r for r in dead.values() if "max_features" in r["reason"])
    assert cap["stage"] == "validate" and json.loads(cap["raw"])["e"] == 5
    utf8 = next(r for r in dead.values() if r["raw_encoding"] == "base64")
    assert utf8["raw"] == "/w==" and utf8["position"][0] == "memory"
    assert all(r["reason"] for r in dead.values())
    assert summary.records_in == len(values) == summary.scored + summary.dead_lettered_total
    assert summary.learnt == summary.scored == 300
    assert summary.stopped_by == "exhausted" and summary.positions == {"memory": len(values)}


def test_scores_are_prequential_and_independent_of_poll_size(build):
    values = sensor_rows(200)
    runs = []
    for poll in (500, 7, 1):
        pipe, out = build(values, sinks=("scores",), poll_records=poll)
        pipe.run()
        runs.append((pipe, [r["score"] for r in out["scores"].records]))
    model, expected = detector(), []
    for value in values:
        x = {k: v for k, v in json.loads(value).items() if k != "sensor"}
        expected.append(model.score_one(x))
        model.learn_one(x)
    assert runs[0][1][0] == 1.0
    for pipe, got in runs:
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert max_weight_diff(pipe.models[None], model) <= 1e-6


def test_alerted_records_are_not_learnt_when_learn_alerts_is_false(build):
    values = sensor_rows(400, shift_at=300)
    alerts = FixedThreshold(0.5, warmup=100, learn_alerts=False)
    pipe, out = build(values, alerts=alerts, poll_records=64)
    summary = pipe.run()
    flags = [r["alert"] for r in out["scores"].records]
    assert 0 < sum(flags) == summary.alerted == summary.skipped_learning
    assert summary.alerted == len(out["alerts"].records)
    assert summary.learnt == 400 - sum(flags)
    model = detector()
    for value, alert in zip(values, flags, strict=True):
        if not alert:
            model.learn_one({k: v for k, v in json.loads(value).items() if k != "sensor"})
    assert max_weight_diff(pipe.models[None], model) <= 1e-6
    first = out["alerts"].records[0]
    assert first["kind"] == "alert" and first["threshold"] == 0.5 and first["score"] >= 0.5


def test_drift_is_detected_after_an_injected_shift(build):
    values = sensor_rows(1200, shift_at=600)
    pipe, out = build(values, alerts=QuantileThreshold(q=0.99, warmup=100, window=300),
                      drift=DriftMonitor("ADWIN"))
    summary = pipe.run()
    events = out["drift"].records
    assert summary.drift_events == len(events) >= 1
    offsets = [int(e["id"].split("@")[1]) for e in events]
    assert any(600 <= o < 800 for o in offsets), offsets
    assert all(e["stream"] == "score" and e["detector"] == "ADWIN" for e in events)
    assert events[0]["position"] == ["memory", offsets[0]]
    assert sum(r["alert"] for r in out["scores"].records[600:610]) >= 5


def test_one_model_per_key_and_the_model_cap(build):
    values = sensor_rows(300)
    pipe, out = build(values, per_key="sensor", poll_records=50)
    pipe.run()
    assert sorted(pipe.models) == ["s0", "s1", "s2"]
    for key, model in pipe.models.items():
        own = detector()
        for value in values:
            x = json.loads(value)
            if x.pop("sensor") == key:
                own.learn_one(x)
        assert max_weight_diff(model, own) <= 1e-6
    assert {r["model"] for r in out["scores"].records} == {"s0", "s1", "s2"}

    capped, out = build(values, per_key="sensor", max_models=2)
    summary = capped.run()
    assert sorted(capped.models) == ["s0", "s1"]
    assert summary.dead_lettered["validate"] == 100
    assert "max_models=2" in out["dead_letter"].records[0]["reason"]


class Fussy(ActivationDetector):
    """Fails to score records with a > 100 and to learn batches holding b > 100."""

    def score_many(self, X):
        if (X["a"] > 100).any():
            raise ValueError("too hot")
        return super().score_many(X)

    def score_one(self, x):
        if x["a"] > 100:
            raise ValueError("too hot")
        return super().score_one(x)

    def learn_many(self, X):
        if "b" in X and (X["b"] > 100).any():
            raise RuntimeError("cannot learn")
        return super().learn_many(X)


def test_score_and_learn_failures_go_to_the_dead_letter_and_the_loop_goes_on(build):
    values = list(sensor_rows(100))
    values[10] = b'{"a": 500, "b": 1, "c": 1}'
    values[50] = b'{"a": 1, "b": 500, "c": 1}'
    pipe, out = build(values, model_factory=lambda: Fussy(batch_size=8, seed=0))
    summary = pipe.run()
    dead = out["dead_letter"].records
    assert [r["id"] for r in dead if r["stage"] == "score"] == ["memory@10"]
    assert "too hot" in dead[0]["reason"]
    learn = [r for r in dead if r["stage"] == "learn"]
    assert "memory@50" in {r["id"] for r in learn}
    assert summary.scored == 99 and summary.learnt == 99 - len(learn)


def test_classification_predicts_before_learning_and_watches_errors():
    values = labelled_rows(600)
    out = {name: MemorySink() for name in ("predictions", "drift", "dead_letter")}
    pipe = Pipeline(MemorySource(values), out, classifier, RecordDecoder(label_field="y"),
                    task="classification", drift=DriftMonitor("DDM"), poll_records=45)
    summary = pipe.run()
    preds = out["predictions"].records
    assert summary.predicted == len(preds) == 600 and summary.learnt == 600
    assert preds[0]["prediction"] is None and preds[0]["proba"] == {}
    assert preds[0]["label"] in ("low", "high") and preds[1]["label"] is None
    later = [p for p in preds[300:] if p["label"] is not None]
    accuracy = np.mean([p["prediction"] == p["label"] for p in later])
    assert accuracy > 0.8
    assert set(preds[-1]["proba"]) == {"low", "high"}
    model = classifier()
    for value, pred in zip(values, preds, strict=True):
        row = json.loads(value)
        y = row.pop("y", None)
        assert model.predict_one(row) == pred["prediction"]
        model.learn_one(row, y)
    assert max_weight_diff(pipe.models[None], model) <= 1e-6
    assert pipe.models[None].classes == model.classes
    assert all(e["stream"] == "error" for e in out["drift"].records)


def test_a_plain_river_model_is_judged_record_by_record(build):
    from river import anomaly, preprocessing

    def river_model():
        return preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(n_trees=5, seed=1)

    values = sensor_rows(150)
    pipe, out = build(values, sinks=("scores",), model_factory=river_model, poll_records=40)
    assert pipe.run().learnt == 150
    model, expected = river_model(), []
    for value in values:
        x = {k: v for k, v in json.loads(value).items() if k != "sensor"}
        expected.append(model.score_one(x))
        model.learn_one(x)
    assert [r["score"] for r in out["scores"].records] == expected


def test_per_key_scores_alerts_and_drift_equal_a_record_by_record_loop(build):
    values = sensor_rows(900, shift_at=600)
    policy = QuantileThreshold(q=0.95, warmup=40, window=150, learn_alerts=False)
    monitor = DriftMonitor("PageHinkley", threshold=2.0)
    pipe, out = build(values, per_key="sensor", alerts=policy, drift=monitor, poll_records=37)
    summary = pipe.run()
    models, policies, monitors = {}, {}, {}
    scores, alerts, drift = [], [], []
    for i, value in enumerate(values):
        x = json.loads(value)
        key = x.pop("sensor")
        if key not in models:
            models[key], policies[key], monitors[key] = detector(), policy.clone(), monitor.clone()
        score = models[key].score_one(x)
        alert, threshold = policies[key].update(score)
        base = {"id": f"memory@{i}", "key": None, "event_time": None, "model": key}
        scores.append({**base, "score": score, "alert": alert})
        if alert:
            alerts.append({**base, "kind": "alert", "score": score, "threshold": threshold})
        else:
            models[key].learn_one(x)
        if monitors[key].update(score):
            drift.append(f"memory@{i}")
    assert alerts and drift and summary.alerted == summary.skipped_learning == len(alerts)
    def offset(r):
        return int(r["id"].split("@")[1])

    for got, want in ((out["scores"].records, scores), (out["alerts"].records, alerts)):
        got = sorted(got, key=offset)  # a poll's records go lane by lane
        assert [list(r) for r in got] == [list(r) for r in want]  # the fields, in order
        assert [{k: v for k, v in r.items() if k not in ("score", "threshold")} for r in got] \
            == [{k: v for k, v in r.items() if k not in ("score", "threshold")} for r in want]
        np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in want],
                                   atol=1e-6)
        np.testing.assert_allclose([r.get("threshold", 0.0) for r in got],
                                   [r.get("threshold", 0.0) for r in want], atol=1e-6)
    assert [r["id"] for r in sorted(out["drift"].records, key=offset)] == drift
    for key, model in pipe.models.items():
        assert max_weight_diff(model, models[key]) <= 1e-6


def test_a_sink_with_add_only_gets_every_output():
    class AddOnly:  # duck-typed: no add_many
        def __init__(self):
            self.records = []

        def add(self, record, key=None):
            self.records.append((record["id"], key))

        def flush(self):
            pass

    sink = AddOnly()
    pipe = Pipeline(MemorySource(sensor_rows(50)), {"scores": sink}, detector,
                    RecordDecoder(key_field="sensor"), poll_records=16)
    pipe.run()
    assert sink.records == [(f"memory@{i}", f"s{i % 3}") for i in range(50)]
