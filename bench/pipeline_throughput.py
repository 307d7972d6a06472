"""End-to-end pipeline throughput through a Kafka broker, next to raw kafka-python.

Produces N synthetic sensor records (JSON, ~150 bytes) into a fresh topic, then measures
on the same data in the same run:

* ``raw``: kafka-python consume (assigned partitions, from the start) + produce every value
  to another topic, delivery confirmed: the ceiling for a Python pipeline on this machine;
* ``raw+json``: the same with ``json.loads`` / ``json.dumps`` of each record;
* ``pipeline``: ``build_pipeline`` on the ``sensor_anomaly_kafka`` spec (consume, decode,
  score, learn, alerts, drift, produce scores/alerts/drift/dead letters, checkpoints to a
  temporary folder), until the end of the topic.

It prints records/s of each and the ratio pipeline / raw. The broker is
``$STREAMAL_KAFKA_BOOTSTRAP`` if set, else one started with ``tools/kafka-broker`` in a
temporary folder (and stopped at the end).

Usage (from the repository root)::

    python bench/pipeline_throughput.py [--records 20000] [--partitions 1]
        [--set model.hidden=[16,16] ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamal.connectors import create_topic
from streamal.connectors.kafka_sink import PRODUCER_DEFAULTS
from streamal.connectors.kafka_source import CONSUMER_DEFAULTS
from streamal.pipelines import build_pipeline, load_spec

REPO_ROOT = Path(__file__).resolve().parents[1]
BROKER_TOOL = REPO_ROOT / "tools" / "kafka-broker"
KINDS = ("scores", "alerts", "drift", "dead_letter")


@contextmanager
def broker() -> Iterator[str]:
    """Bootstrap address: ``$STREAMAL_KAFKA_BOOTSTRAP``, or a tansu broker started here."""
    external = os.environ.get("STREAMAL_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as folder:
        tool = [sys.executable, str(BROKER_TOOL)]
        started = subprocess.run([*tool, "start", "--dir", folder], capture_output=True,
                                 text=True, timeout=120)
        if started.returncode != 0:
            sys.exit(f"the Kafka broker did not start:\n{started.stderr}")
        try:
            yield started.stdout.strip()
        finally:
            subprocess.run([*tool, "stop", "--dir", folder], capture_output=True, timeout=60)


def sensor_values(n: int, seed: int = 0) -> list[tuple[bytes, bytes]]:
    """``(key, JSON value)`` of ``n`` readings of 8 machines."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        load = math.sin(i / 50.0 + i % 8) + rng.gauss(0, 0.1)
        row = {"seq": i, "sensor": f"s{i % 8}", "time": 1_700_000_000 + i,
               "temp": round(60 + 3 * load + rng.gauss(0, 0.2), 4),
               "vib": round(0.5 + 0.2 * load + rng.gauss(0, 0.02), 5),
               "pressure": round(100 - 2 * load + rng.gauss(0, 0.3), 4)}
        out.append((row["sensor"].encode(), json.dumps(row).encode()))
    return out


def produce(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]], partitions: int) -> float:
    create_topic(bootstrap, topic, partitions=partitions)
    producer = KafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_DEFAULTS)
    started = time.perf_counter()
    for key, value in items:
        producer.send(topic, key=key, value=value)
    producer.flush()
    elapsed = time.perf_counter() - started
    producer.close()
    return len(items) / elapsed


def raw_copy(bootstrap: str, source: str, target: str, n: int, partitions: int,
             transcode: bool) -> float:
    """Records/s of consume + produce (+ JSON decode/encode) of ``n`` records."""
    create_topic(bootstrap, target, partitions=1)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **CONSUMER_DEFAULTS)
    producer = KafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_DEFAULTS)
    tps = [TopicPartition(source, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    done = 0
    started = time.perf_counter()
    while done < n:
        for messages in consumer.poll(timeout_ms=1000, max_records=500).values():
            for m in messages:
                value = json.dumps(json.loads(m.value)).encode() if transcode else m.value
                producer.send(target, key=m.key, value=value)
            done += len(messages)
    producer.flush()
    elapsed = time.perf_counter() - started
    consumer.close(autocommit=False)
    producer.close()
    return n / elapsed


def pipeline_rate(bootstrap: str, source: str, n: int, partitions: int,
                  overrides: list[str]) -> tuple[float, Any]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    for kind in KINDS:
        create_topic(bootstrap, f"{name}-{kind}", partitions=1)
    with tempfile.TemporaryDirectory(prefix="bench-ck-") as checkpoints:
        spec = load_spec("sensor_anomaly_kafka", [
            f"source.bootstrap_servers={bootstrap}", f"source.topics={source}",
            f"source.group_id={name}", f"source.partitions={list(range(partitions))}",
            "source.stop_at_end=true", f"checkpoint.directory={json.dumps(checkpoints)}",
            *[f"outputs.{kind}.topic={name}-{kind}" for kind in KINDS], *overrides])
        pipeline = build_pipeline(spec)
        started = time.perf_counter()
        summary = pipeline.run()
        elapsed = time.perf_counter() - started
    if summary.records_in != n:
        sys.exit(f"the pipeline read {summary.records_in} records, expected {n}")
    return n / elapsed, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="TABLE.KEY=VALUE", help="override a key of the sensor spec")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)

    items = sensor_values(args.records)
    with broker() as bootstrap:
        topic = f"bench-in-{uuid.uuid4().hex[:8]}"
        produced = produce(bootstrap, topic, items, args.partitions)
        raw = raw_copy(bootstrap, topic, topic + "-raw", args.records, args.partitions, False)
        raw_json = raw_copy(bootstrap, topic, topic + "-json", args.records, args.partitions,
                            True)
        rate, summary = pipeline_rate(bootstrap, topic, args.records, args.partitions,
                                      args.overrides)
    results = {
        "records": args.records, "partitions": args.partitions,
        "produce_per_s": round(produced), "raw_per_s": round(raw),
        "raw_json_per_s": round(raw_json), "pipeline_per_s": round(rate),
        "ratio": round(rate / raw, 4),
        "alerts": summary.alerted, "drift_events": summary.drift_events,
        "checkpoints": summary.checkpoints, "overrides": args.overrides,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                   f"{platform.python_version()}",
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{args.records} sensor records, {args.partitions} partition(s); {results['machine']}")
    print(f"  produce (setup)                 {produced:>10,.0f} records/s")
    print(f"  raw consume+produce             {raw:>10,.0f} records/s")
    print(f"  raw consume+json+produce        {raw_json:>10,.0f} records/s")
    print(f"  pipeline (decode, score, learn) {rate:>10,.0f} records/s")
    print(f"  pipeline / raw                  {rate / raw:>10.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
