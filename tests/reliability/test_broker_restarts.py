"""The broker is killed and restarted mid-stream; ``streamal run`` carries on by itself.

tansu runs on its s3 engine (a local moto server), so the topics survive a ``kill -9`` of the
broker. The stream arrives in six parts (so the run cannot end before the faults); the
broker is killed halfway through each of the first five. While it is away the pipeline's
consumer gets nothing, its sinks cannot deliver, and checkpoints wait with backoff; when it
is back the pipeline reconnects (a new producer where needed) without a restart. Pass: it ends by
itself with exit 0, every input has an output, the model equals that of an uninterrupted
run, and each outage is logged once (one line when it starts, one when it ends), not once
per record or per client retry.
``bench/crash_loop.py --broker-restarts 5`` is the same with 40 000 records.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from harness import (
    KINDS,
    BrokerProcess,
    bad_values,
    cli_command,
    create_topics,
    free_port,
    max_weight_diff,
    mix,
    model_arrays,
    outputs,
    produce,
    scrape,
    sensor_overrides,
    sensor_records,
    wait_for,
)

from streamal.checkpoint import CheckpointStore, read_state
from streamal.observability import ClientOutages
from streamal.pipelines import build_pipeline, load_spec

pytestmark = pytest.mark.kafka

N_GOOD, N_BAD, RESTARTS = 9000, 90, 5
OUTAGE_SECONDS = 1.5


def test_broker_restarts_mid_stream_lose_nothing_and_are_logged_once(
        s3_broker: BrokerProcess, tmp_path: Path) -> None:
    bootstrap = s3_broker.bootstrap
    assert bootstrap is not None
    items = mix(sensor_records(N_GOOD, seed=11), bad_values(N_BAD, seed=12), seed=13)
    part = len(items) // (RESTARTS + 1)
    parts = [items[k * part:(k + 1) * part] for k in range(RESTARTS)] + \
        [items[RESTARTS * part:]]
    ids = produce(bootstrap, "sensors", parts[0], partitions=1)
    create_topics(bootstrap, *[f"run-{kind}" for kind in KINDS])
    port = free_port()
    overrides = sensor_overrides(bootstrap, "sensors", "run", tmp_path / "ck", **{
        "checkpoint.every_records": 500, "run.max_records": len(items),
        "observability.metrics_port": port})
    log = tmp_path / "run.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(cli_command(overrides), stdout=subprocess.DEVNULL,
                                   stderr=stderr)
    try:
        lags: list[float] = []

        def progressed(target: int) -> bool:
            metrics = scrape(port)
            lags.extend(v for k, v in metrics.items() if k.startswith("streamal_consumer_lag"))
            return metrics.get("streamal_records_in_total", 0) >= target

        for k in range(RESTARTS):  # kill the broker halfway through parts 1 to 5
            wait_for(lambda k=k: progressed(k * part + part // 2), 120,
                     f"progress to restart {k + 1}", process)
            s3_broker.kill()
            time.sleep(OUTAGE_SECONDS)
            s3_broker.start()  # same port, same data
            ids.update(produce(bootstrap, "sensors", parts[k + 1], partitions=1))
            # the next outage once this one is over: two at once would be logged as one
            wait_for(lambda k=k: log.read_text().count("kafka client works again") > k, 120,
                     f"the end of outage {k + 1} in the log", process)
            # and after the settle period, whose complaints count for the outage just closed
            time.sleep(ClientOutages().settle + 0.5)
        process.wait(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert process.returncode == 0, text[-4000:]
    assert max(lags, default=0) > 0, "the consumer lag is reported while the backlog drains"

    # each outage logged once when it starts and once when it ends; no flood
    trouble = re.findall(r"kafka client trouble", text)
    recovered = re.findall(r"kafka client works again after", text)
    assert len(trouble) == RESTARTS and len(recovered) == RESTARTS, _lines(text, "kafka client")
    assert len(text.splitlines()) < 250, "no line per record or per retry"
    assert not re.search(r"^\S+ \S+ (WARNING|ERROR) kafka\.", text, re.M), \
        "the client's own errors are counted, not logged"

    # nothing lost: every input has an output ...
    out = outputs(bootstrap, "run")
    seen = {r["id"] for r in out["scores"] + out["dead_letter"]}
    assert seen == set(ids), f"{len(set(ids) - seen)} inputs without an output"
    scores: dict[str, float] = {}
    for r in out["scores"]:  # a re-sent output is the same output
        assert scores.setdefault(r["id"], r["score"]) == r["score"], r["id"]

    # ... and nothing learnt twice or skipped: the model of an uninterrupted run
    reference = tmp_path / "reference"
    spec = load_spec("sensor_anomaly_kafka", sensor_overrides(
        bootstrap, "sensors", "reference", reference, **{"checkpoint.every_records": 500,
                                                         "run.max_records": len(items)}))
    build_pipeline(spec, sinks={}).run(max_records=len(items))  # its outputs are not needed
    assert max_weight_diff(model_arrays(tmp_path / "ck"), model_arrays(reference)) <= 1e-6
    _, meta = read_state(CheckpointStore(tmp_path / "ck").list()[-1])
    _, ref_meta = read_state(CheckpointStore(reference).list()[-1])
    assert meta["positions"] == ref_meta["positions"] == {"sensors:0": len(items)}
    drop = {"checkpoints"}
    assert {k: v for k, v in meta["counters"].items() if k not in drop} == \
        {k: v for k, v in ref_meta["counters"].items() if k not in drop}


def _lines(text: str, word: str) -> str:
    return "\n".join(line for line in text.splitlines() if word in line)
