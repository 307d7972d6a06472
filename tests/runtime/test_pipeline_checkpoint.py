"""Checkpoints: content, commit order, and exact resume after a stop, a signal or a crash."""

from __future__ import annotations

import collections
import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from conftest import SINKS, classifier, detector, labelled_rows, max_weight_diff, sensor_rows

from streamal.checkpoint import CheckpointError, CheckpointStore
from streamal.connectors import DeliveryError, MemorySink, MemorySource
from streamal.drift import DriftMonitor
from streamal.runtime import Pipeline, QuantileThreshold, RecordDecoder


class ScriptedSource(MemorySource):
    """A MemorySource that records commits and can act (or crash) before a poll."""

    def __init__(self, values, events=None, before_poll=None, crash_at=None):
        super().__init__(values)
        self.events = events if events is not None else []
        self.before_poll = before_poll
        self.crash_at = crash_at
        self.offset = 0
        self.commits: list[dict[str, int]] = []

    def poll(self, max_records, timeout):
        if self.crash_at is not None and self.offset >= self.crash_at:
            raise RuntimeError("the process died")
        if self.before_poll is not None:
            self.before_poll(self.offset)
        batch = super().poll(max_records, timeout)
        if batch:
            self.offset = batch[-1].position[1] + 1
        return batch

    def seek(self, positions):
        super().seek(positions)
        self.offset = positions.get(self.stream, 0)

    def commit(self, positions):
        self.commits.append(dict(positions))
        self.events.append(("commit", dict(positions)))


class EagerSink(MemorySink):
    """Delivers on ``add`` already, like a producer that sent before the crash."""

    def add(self, record, key=None):
        super().add(record, key)
        super().flush()


def anomaly_kwargs(**extra):
    return {"alerts": QuantileThreshold(q=0.98, warmup=100, window=200, learn_alerts=False),
            "drift": DriftMonitor("ADWIN"), "poll_records": 50, **extra}


def uninterrupted(build, values, **kwargs):
    pipe, out = build(values, **kwargs)
    summary = pipe.run()
    return pipe, out, summary


def ids(sink) -> list[str]:
    return [r["id"] for r in sink.records]


def offset(record_id: str) -> int:
    return int(record_id.split("@")[1])


def test_checkpoint_content_and_commit_order(build, tmp_path):
    events: list = []
    store = CheckpointStore(tmp_path)

    class OrderedSink(MemorySink):
        def flush(self):
            events.append(("flush", store.latest_sequence))
            super().flush()

    values = sensor_rows(500)
    source = ScriptedSource(values, events)
    pipe = Pipeline(source, {"scores": OrderedSink()}, detector, RecordDecoder(exclude=["sensor"]),
                    checkpoint_dir=tmp_path, checkpoint_every_records=200, **anomaly_kwargs())
    summary = pipe.run()
    assert summary.checkpoints == 3 and source.commits == [
        {"memory": 200}, {"memory": 400}, {"memory": 500}]
    for k, (flush, commit) in enumerate(zip(events[::2], events[1::2], strict=True)):
        assert flush == ("flush", k or None) and commit[0] == "commit"
    arrays, meta, path = store.load_latest()
    assert path.name.endswith("0000000003.parquet") and meta["positions"] == {"memory": 500}
    assert meta["counters"]["records_in"] == 500 and meta["counters"]["checkpoints"] == 3
    assert meta["fingerprint"].startswith("sha256:") and meta["spec"]["task"] == "anomaly"
    (entry,) = meta["models"]
    assert entry["prefix"] == "model/__all__/" and entry["key"] is None
    assert entry["alerts"]["n"] == 500 and len(entry["alerts"]["recent"]) == 200
    assert entry["drift"]["streams"]["score"]["n"] == 500
    own = {k[len("model/__all__/"):]: v for k, v in arrays.items()}
    restored = type(pipe.models[None]).from_state(own, entry["meta"])
    assert max_weight_diff(restored, pipe.models[None]) == 0.0


def test_resume_after_a_clean_stop_equals_an_uninterrupted_run(build, tmp_path):
    values = sensor_rows(1000, shift_at=600)
    whole, out_whole, s_whole = uninterrupted(build, values, **anomaly_kwargs())
    first, out1 = build(values, checkpoint_dir=tmp_path, **anomaly_kwargs())
    s1 = first.run(max_records=430)
    assert s1.stopped_by == "max_records" and s1.positions == {"memory": 430}
    second, out2 = build(values, checkpoint_dir=tmp_path, **anomaly_kwargs())
    s2 = second.run()
    assert s2.resumed_from is not None and s2.records_this_run == 570
    assert max_weight_diff(second.models[None], whole.models[None]) <= 1e-6
    assert ids(out1["scores"]) + ids(out2["scores"]) == ids(out_whole["scores"])
    joined = out1["scores"].records + out2["scores"].records
    np.testing.assert_allclose([r["score"] for r in joined],
                               [r["score"] for r in out_whole["scores"].records], atol=1e-5)
    assert [r["alert"] for r in joined] == [r["alert"] for r in out_whole["scores"].records]
    assert ids(out1["drift"]) + ids(out2["drift"]) == ids(out_whole["drift"])
    assert s_whole.skipped_learning > 0 and s_whole.drift_events > 0
    for name in ("records_in", "scored", "alerted", "learnt", "skipped_learning", "drift_events"):
        assert getattr(s2, name) == getattr(s_whole, name), name


def test_resume_after_a_crash_repeats_only_outputs_after_the_checkpoint(build, tmp_path):
    values = sensor_rows(1000, shift_at=600)
    whole, out_whole, _ = uninterrupted(build, values, **anomaly_kwargs())
    eager = {name: EagerSink() for name in SINKS}
    crashing = Pipeline(ScriptedSource(values, crash_at=650), eager, detector,
                        RecordDecoder(exclude=["sensor"]), checkpoint_dir=tmp_path,
                        checkpoint_every_records=200, **anomaly_kwargs())
    with pytest.raises(RuntimeError, match="died"):
        crashing.run()
    assert CheckpointStore(tmp_path).load_latest()[1]["positions"] == {"memory": 600}
    resumed, out = build(values, checkpoint_dir=tmp_path, **anomaly_kwargs())
    resumed.run()
    assert max_weight_diff(resumed.models[None], whole.models[None]) <= 1e-6
    seen = collections.Counter(ids(eager["scores"]) + ids(out["scores"]))
    assert set(seen) == set(ids(out_whole["scores"]))
    assert {offset(i) for i, n in seen.items() if n > 1} == set(range(600, 650))
    assert ids(out["scores"])[0] == "memory@600"


def test_a_signal_finishes_the_batch_then_checkpoints(build, tmp_path):
    values = sensor_rows(600)
    whole, _, _ = uninterrupted(build, values, **anomaly_kwargs())
    before = signal.getsignal(signal.SIGTERM)

    def kill(at):
        if at == 300:
            os.kill(os.getpid(), signal.SIGTERM)

    source = ScriptedSource(values, before_poll=kill)
    pipe = Pipeline(source, {}, detector, RecordDecoder(exclude=["sensor"]),
                    checkpoint_dir=tmp_path, **anomaly_kwargs())
    summary = pipe.run()
    assert summary.stopped_by == "signal" and summary.positions == {"memory": 350}
    assert source.commits == [{"memory": 350}] and signal.getsignal(signal.SIGTERM) is before
    resumed, _ = build(values, checkpoint_dir=tmp_path, **anomaly_kwargs())
    assert resumed.run().records_this_run == 250
    assert max_weight_diff(resumed.models[None], whole.models[None]) <= 1e-6


def test_stop_event_and_request_stop(build):
    stop = threading.Event()
    source = ScriptedSource(sensor_rows(300), before_poll=lambda at: at == 100 and stop.set())
    pipe, sinks = build([], source=source, poll_records=50)
    summary = pipe.run(stop=stop)
    assert summary.stopped_by == "stop" and summary.positions == {"memory": 150}
    assert source.commits == [{"memory": 150}] and len(sinks["scores"].records) == 150

    class Idle(MemorySource):
        exhausted = False

        def poll(self, max_records, timeout):
            time.sleep(timeout)
            return []

    idle, _ = build([], source=Idle([]), poll_timeout=0.02)
    result = {}
    worker = threading.Thread(target=lambda: result.update(s=idle.run()))
    worker.start()
    time.sleep(0.1)
    idle.request_stop()
    worker.join(timeout=5)
    assert result["s"].stopped_by == "stop" and result["s"].records_this_run == 0


def test_resume_refuses_a_checkpoint_of_another_spec(build, tmp_path):
    values = sensor_rows(100)
    build(values, checkpoint_dir=tmp_path)[0].run()
    other, _ = build(values, checkpoint_dir=tmp_path,
                     model_factory=lambda: type(detector())(batch_size=8, seed=0, lr=0.123))
    with pytest.raises(CheckpointError, match="differs in: model"):
        other.run()


def test_time_based_checkpoints(build, tmp_path):
    pipe, _ = build(sensor_rows(200), checkpoint_dir=tmp_path, poll_records=50,
                    checkpoint_every_records=None, checkpoint_every_seconds=0.0)
    assert pipe.run().checkpoints == 4 and len(CheckpointStore(tmp_path).list()) == 3


def test_per_key_models_resume_exactly_with_awkward_keys(build, tmp_path):
    keys = ["line/1", "a", "ä x", "100%"]
    values = [json.dumps({**json.loads(v), "sensor": keys[i % 4]}).encode()
              for i, v in enumerate(sensor_rows(400))]
    whole, _, _ = uninterrupted(build, values, per_key="sensor", **anomaly_kwargs())
    build(values, per_key="sensor", checkpoint_dir=tmp_path,
          **anomaly_kwargs())[0].run(max_records=170)
    resumed, _ = build(values, per_key="sensor", checkpoint_dir=tmp_path, **anomaly_kwargs())
    resumed.run()
    assert sorted(resumed.models) == sorted(keys)
    for key in keys:
        assert max_weight_diff(resumed.models[key], whole.models[key]) <= 1e-6


def test_classification_resumes_exactly(build, tmp_path):
    values = labelled_rows(500)
    kwargs = {"model_factory": classifier, "decoder": RecordDecoder(label_field="y"),
              "task": "classification", "drift": DriftMonitor("DDM"), "poll_records": 40,
              "sinks": ("predictions", "drift")}
    whole, out_whole, _ = uninterrupted(build, values, **kwargs)
    first, out1 = build(values, checkpoint_dir=tmp_path, **kwargs)
    first.run(max_records=230)
    second, out2 = build(values, checkpoint_dir=tmp_path, **kwargs)
    second.run()
    assert max_weight_diff(second.models[None], whole.models[None]) <= 1e-6
    joined = out1["predictions"].records + out2["predictions"].records
    assert [r["prediction"] for r in joined] == [
        r["prediction"] for r in out_whole["predictions"].records]


def test_a_failed_delivery_blocks_new_records_and_is_retried_until_it_works(build, tmp_path):
    class Flaky(MemorySink):
        def __init__(self, failures):
            super().__init__()
            self.failures = failures

        def flush(self):
            if self.failures > 0:
                self.failures -= 1
                raise DeliveryError("broker unreachable")
            super().flush()

    source = ScriptedSource(sensor_rows(300))
    sink = Flaky(failures=3)
    pipe = Pipeline(source, {"scores": sink}, detector, RecordDecoder(exclude=["sensor"]),
                    checkpoint_dir=tmp_path, checkpoint_every_records=100, poll_records=50)
    pipe._ensure()
    pipe._checkpointer.retry_backoff = 0.01
    summary = pipe.run()
    assert sink.failures == 0 and summary.stopped_by == "exhausted"
    assert source.commits[0] == {"memory": 100}, "no records taken while delivery failed"
    assert source.commits[-1] == {"memory": 300} and summary.checkpoints == len(source.commits)
    assert [r["id"] for r in sink.records] == [f"memory@{i}" for i in range(300)]


def test_a_delivery_failure_at_a_stop_ends_the_run_without_checkpoint_or_commit(build,
                                                                                tmp_path):
    class Broken(MemorySink):
        def flush(self):
            raise DeliveryError("broker unreachable")

    source = ScriptedSource(sensor_rows(300))
    pipe = Pipeline(source, {"scores": Broken()}, detector, RecordDecoder(exclude=["sensor"]),
                    checkpoint_dir=tmp_path, checkpoint_every_records=100, poll_records=50)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()  # while the pipeline waits for the sink
    started = time.monotonic()
    with pytest.raises(DeliveryError):
        pipe.run(stop=stop)
    assert time.monotonic() - started < 5
    assert source.commits == [] and CheckpointStore(tmp_path).list() == []
    assert source.offset == 100, "no records taken after the first failed delivery"


def test_bad_configurations_are_refused(build):
    with pytest.raises(ValueError, match="unknown sink"):
        build([], sinks=("scores", "score"))[0].run()
    with pytest.raises(ValueError, match="alerts apply"):
        build([], task="classification", alerts=QuantileThreshold())[0].run()
    with pytest.raises(ValueError, match="task must be"):
        build([], task="regression")[0].run()
