"""SIGTERM mid-stream: finish the micro-batch, flush the sinks, checkpoint, exit 0, quickly.

``streamal run`` reads a Kafka topic that has no end for it (``stop_at_end = false``) and
writes its outputs to Kafka; its only checkpoint is the one its stop writes. A restart then
continues exactly there: every input gets exactly one output (no duplicates, since nothing
was left unflushed), and the model equals an uninterrupted run's.
(``tests/test_cli.py`` does the same for a file pipeline.)
"""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from harness import (
    KINDS,
    cli_command,
    create_topics,
    free_port,
    health,
    max_weight_diff,
    model_arrays,
    outputs,
    produce,
    scrape,
    sensor_overrides,
    sensor_records,
    wait_for,
)

from streamal.checkpoint import CheckpointStore, read_state
from streamal.pipelines import build_pipeline, load_spec

pytestmark = pytest.mark.kafka

N = 4000
SHUTDOWN_LIMIT = 10.0  # seconds from SIGTERM to exit


def test_sigterm_flushes_checkpoints_and_exits_0_then_a_restart_continues_exactly(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    topic, name = f"{unique_name}-in", unique_name
    items = [(r["sensor"], json.dumps(r).encode(), r["seq"]) for r in sensor_records(N, seed=21)]
    ids = produce(kafka_bootstrap, topic, items[:N // 2], partitions=1)  # the rest comes later
    create_topics(kafka_bootstrap, *[f"{name}-{kind}" for kind in KINDS])
    port = free_port()
    overrides = sensor_overrides(kafka_bootstrap, topic, name, tmp_path / "ck", **{
        "checkpoint.every_records": 10**6, "checkpoint.every_seconds": 3600,
        "run.poll_records": 200, "observability.metrics_port": port})
    process = subprocess.Popen(cli_command(overrides), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: scrape(port).get("streamal_records_in_total", 0) >= N // 4, 90,
                 "a quarter of the stream", process)
        status, body = health(port)
        assert status == 200 and body["status"] == "ok", body
        assert CheckpointStore(tmp_path / "ck").list() == [], "no checkpoint before the stop"
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-4000:]
    assert took < SHUTDOWN_LIMIT, f"shutdown took {took:.1f} s"
    assert "stopped (signal)" in stderr
    store = CheckpointStore(tmp_path / "ck")
    _, meta = read_state(store.list()[-1])
    done = meta["positions"][f"{topic}:0"]
    assert N // 4 <= done <= N // 2 and meta["counters"]["records_in"] == done
    first = outputs(kafka_bootstrap, name)["scores"]
    assert sorted(int(r["id"].rsplit("@", 1)[1]) for r in first) == list(range(done)), \
        "the outputs of every record before the stop were flushed, once"

    ids.update(produce(kafka_bootstrap, topic, items[N // 2:], partitions=1))
    restart = subprocess.run(cli_command(overrides + [f"run.max_records={N - done}"]),
                             capture_output=True, text=True, timeout=120)
    assert restart.returncode == 0, restart.stderr[-4000:]
    counts = collections.Counter(r["id"] for r in outputs(kafka_bootstrap, name)["scores"])
    assert set(counts) == set(ids) and max(counts.values()) == 1, "exactly one output each"

    reference = tmp_path / "reference"
    create_topics(kafka_bootstrap, *[f"{name}-ref-{kind}" for kind in KINDS])
    build_pipeline(load_spec("sensor_anomaly_kafka", sensor_overrides(
        kafka_bootstrap, topic, f"{name}-ref", reference))).run(max_records=N)
    assert max_weight_diff(model_arrays(tmp_path / "ck"), model_arrays(reference)) <= 1e-6

