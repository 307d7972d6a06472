"""Metrics, ``/healthz`` and logs tell an operator what the pipeline does, and when it is stuck.

Counts by outcome equal the pipeline's own counters; latency, batch and checkpoint
histograms fill; ``/healthz`` answers 200 while the loop turns and checkpoints keep up, 503
when the loop stalls or records wait too long for a checkpoint, and says why; JSON logs are
one object per line, a traceback included; per-record event lines are rate-limited.
"""

from __future__ import annotations

import io
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamal import ActivationDetector
from streamal.checkpoint import CheckpointError
from streamal.connectors import MemorySink, MemorySource
from streamal.drift import DriftMonitor
from streamal.observability import JsonFormatter, MetricsServer, PipelineMetrics, observe
from streamal.runtime import Pipeline, QuantileThreshold, RecordDecoder


def stream(n: int = 1500, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        level = 8.0 if i > n // 2 else 0.0
        out.append(json.dumps({"a": rng.gauss(level, 1), "b": rng.gauss(5, 1)}).encode())
        if i % 100 == 7:
            out.append(b"not json" if i % 200 == 7 else b'{"a": "x", "b": 1}')
    return out


def samples(metrics: PipelineMetrics) -> dict[str, float]:
    from prometheus_client import generate_latest

    out = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def test_counts_match_the_pipeline_and_the_histograms_fill(tmp_path) -> None:
    metrics = PipelineMetrics()
    sinks = {name: MemorySink() for name in ("scores", "alerts", "drift", "dead_letter")}
    pipe = Pipeline(MemorySource(stream()), sinks, lambda: ActivationDetector(seed=0),
                    RecordDecoder(), alerts=QuantileThreshold(q=0.99, warmup=100, window=500),
                    drift=DriftMonitor("ADWIN"), checkpoint_dir=tmp_path,
                    checkpoint_every_records=400, poll_records=100, observer=metrics)
    summary = pipe.run()
    got = samples(metrics)
    assert got["streamal_records_in_total"] == summary.records_in == 1515
    assert got['streamal_records_out_total{outcome="scored"}'] == summary.scored == 1500
    assert got['streamal_records_out_total{outcome="alerted"}'] == summary.alerted > 0
    assert got['streamal_records_out_total{outcome="dead_lettered"}'] == 15
    assert got['streamal_dead_letters_total{stage="decode"}'] == 8
    assert got['streamal_dead_letters_total{stage="validate"}'] == 7
    assert got["streamal_records_learnt_total"] == summary.learnt
    assert got["streamal_drift_detections_total"] == summary.drift_events > 0
    assert got["streamal_models"] == 1
    assert got["streamal_batch_records_count"] == 16 and got["streamal_batch_records_sum"] == 1515
    assert got["streamal_score_seconds_count"] > 100 and got["streamal_learn_seconds_count"] > 100
    assert got["streamal_checkpoints_total"] == summary.checkpoints == 4
    assert got["streamal_checkpoint_duration_seconds_count"] == 4
    assert 0 <= got["streamal_checkpoint_age_seconds"] < 60
    assert got["streamal_unsaved_records"] == 0
    assert len(sinks["dead_letter"].records) == 15


class Slow(MemorySource):
    """A memory source that sleeps in each poll (``stall`` seconds once, at ``stall_at``)."""

    exhausted = False

    def __init__(self, values: list[bytes], pause: float = 0.01, stall_at: int | None = None,
                 stall: float = 0.0):
        super().__init__(values)
        self.pause, self.stall_at, self.stall, self.offset = pause, stall_at, stall, 0

    def poll(self, max_records: int, timeout: float) -> list[Any]:
        if self.stall_at is not None and self.offset >= self.stall_at:
            self.stall_at = None
            time.sleep(self.stall)
        time.sleep(self.pause)
        batch = super().poll(max_records, timeout)
        self.offset += len(batch)
        return batch


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def healthz(server: MetricsServer) -> tuple[int, dict[str, Any]]:
    status, body = get(server.url("/healthz"))
    return status, json.loads(body)


def watch_until(server: MetricsServer, predicate, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = healthz(server)
        if predicate(status, body):
            return body
        time.sleep(0.02)
    raise AssertionError(f"health never matched; last: {status} {body}")


def test_healthz_follows_the_loop_and_the_checkpoints(tmp_path, monkeypatch) -> None:
    import streamal.checkpoint as ck

    broken = threading.Event()
    save = ck.CheckpointStore.save

    def failing_save(self, arrays, meta):
        if broken.is_set():
            raise CheckpointError(f"{self.directory}: cannot write state file: disk full")
        return save(self, arrays, meta)

    monkeypatch.setattr(ck.CheckpointStore, "save", failing_save)
    metrics = PipelineMetrics(max_loop_seconds=0.5, max_unsaved_seconds=0.5)
    source = Slow(stream(6000), pause=0.005, stall_at=2000, stall=1.5)
    pipe = Pipeline(source, {}, lambda: ActivationDetector(seed=0), RecordDecoder(),
                    checkpoint_dir=tmp_path, checkpoint_every_records=200,
                    checkpoint_every_seconds=0.1, poll_records=50, observer=metrics)
    with MetricsServer(metrics, port=0) as server:
        assert healthz(server)[0] == 503 and healthz(server)[1]["status"] == "starting"
        worker = threading.Thread(target=pipe.run, daemon=True)
        worker.start()
        ok = watch_until(server, lambda s, b: s == 200)
        assert ok["loop_alive"] and ok["checkpoint_recent"]
        stalled = watch_until(server, lambda s, b: s == 503 and not b["loop_alive"])
        assert stalled["status"] == "unhealthy" and stalled["loop_age_seconds"] > 0.5
        watch_until(server, lambda s, b: s == 200)  # the loop turns again
        broken.set()
        late = watch_until(server, lambda s, b: s == 503 and not b["checkpoint_recent"])
        assert late["loop_alive"] and late["checkpoint_failures_in_a_row"] >= 1
        assert late["unsaved_records"] > 0
        text = get(server.url("/metrics"))[1].decode()
        assert 'streamal_checkpoint_failures_total{stage="store"}' in text
        assert "streamal_healthy 0.0" in text
        broken.clear()
        watch_until(server, lambda s, b: s == 200)  # the retry succeeded
        pipe.request_stop()
        worker.join(timeout=20)
        assert healthz(server)[1]["status"] == "stopped"
        assert get(server.url("/nothing"))[0] == 404


def test_json_logs_are_one_object_per_line_even_with_a_traceback() -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("streamal.test.json")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("checkpoint failed: %s", "disk full", extra={"event": "checkpoint_failed"})
        try:
            raise OSError("multi\nline")
        except OSError:
            log.exception("it broke")
    finally:
        log.removeHandler(handler)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    first, second = map(json.loads, lines)
    assert first["event"] == "checkpoint_failed" and first["level"] == "WARNING"
    assert first["message"] == "checkpoint failed: disk full"
    assert "OSError: multi\nline" in second["exc"]


def test_streamal_run_rate_limits_event_lines(tmp_path, caplog) -> None:
    from streamal.cli import main

    data = tmp_path / "in.jsonl"
    lines = [json.dumps({"a": i * 0.1, "b": 1.0}) for i in range(200)] + ["oops"] * 300
    data.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.INFO):
        code = main(["run", "backtest_files", "--set", f"source.path={json.dumps(str(data))}",
                     "--set", "source.time_field=\"t\"", "--set", "decode.time_field=\"t\"",
                     "--set", f"outputs.directory={json.dumps(str(tmp_path / 'out'))}",
                     "--set", f"checkpoint.directory={json.dumps(str(tmp_path / 'ck'))}",
                     "--set", "decode.key_field=\"k\"", "--set", "observability.event_log_burst=5",
                     "--set", "observability.log_format=\"json\""])
    assert code == 0, caplog.text[-2000:]
    events = [r for r in caplog.records if r.name == "streamal.events"]
    dead = [r for r in events if r.getMessage().startswith("dead letter")]
    summaries = [r for r in events if "were counted, not logged" in r.getMessage()]
    assert len(dead) == 5 and len(summaries) == 1 and "295 more" in summaries[0].getMessage()
    dead_file = (tmp_path / "out" / "dead_letter.jsonl").read_text().splitlines()
    assert len(dead_file) == 300, "every dead letter is written; only the log is limited"


@pytest.mark.parametrize("bind", [None, "127.0.0.1"])
def test_observe_serves_metrics_and_health_of_a_run(bind) -> None:
    with observe({"metrics_port": 0, "bind": bind}) as watch:
        assert watch.server is not None and watch.server.bind == "127.0.0.1"
        pipe = Pipeline(MemorySource(stream(300)), {}, lambda: ActivationDetector(seed=0),
                        RecordDecoder(), observer=watch.metrics)
        pipe.run()
        status, body = get(watch.server.url("/metrics"))
        assert status == 200 and b"streamal_records_in_total 303.0" in body
