"""End-to-end pipeline throughput through a Kafka broker, next to raw kafka-python.

Produces N synthetic sensor records (JSON, ~150 bytes) into a fresh topic, then measures
on the same data in the same run:

* ``raw``: kafka-python consume (assigned partitions, from the start) + produce every value
  to another topic, delivery confirmed: the ceiling for a Python pipeline on this machine;
* ``raw+json``: the same with ``json.loads`` / ``json.dumps`` of each record;
* ``raw+placed``: ``raw`` with each key's partition computed once and passed to ``send``
  (the pipeline's Kafka sink does this; plain ``send`` with a key runs kafka-python's
  partitioner, murmur2 in pure Python, on every record): the ceiling for a pipeline that
  does the same;
* ``pipeline``: ``build_pipeline`` on the ``sensor_anomaly_kafka`` spec (consume, decode,
  score, learn, alerts, drift, produce scores/alerts/drift/dead letters, checkpoints to a
  temporary folder), until the end of the topic.

Each is timed two ways, the same way for raw and pipeline:

* *streaming*: from the moment the first poll hands over records to the moment every output
  is acknowledged (raw: its producer's flush; the pipeline: the end of ``Pipeline.run``,
  whose final checkpoint flushes every sink). Producers are made on the first record
  (raw's, like the pipeline's sinks, lazily); the consumer's connection is left out. This
  is the steady-state rate, the one the target is about;
* *whole run*: the same, plus the client start-up before the first record: raw's clock
  starts before it makes its consumer, the pipeline's when ``Pipeline.run`` is called.

Next to the rates, the CPU time of this process per record (all its threads: the
clients' network threads too; the broker is another process), over the whole run: on a
shared machine it moves less with the load than wall-clock rates do.

The four are measured ``--repeat`` times in turn (fresh output topics each time); it
prints the median records/s of each and the median of the per-round ratios pipeline / raw
(and pipeline / raw+placed),
so that a load change on a shared machine hits both sides of a ratio alike. Before the
first round, an untimed pipeline run over the first 1 000 records (in a topic of their
own) does what a process does once: imports, loading the model's compiled kernels. The
broker is ``$STREAMAL_KAFKA_BOOTSTRAP`` if set, else one started with
``tools/kafka-broker`` in a temporary folder (and stopped at the end).

Usage (from the repository root)::

    python bench/pipeline_throughput.py [--records 100000] [--partitions 1] [--repeat 3]
        [--set model.batch_size=128 ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamal.connectors import create_topic
from streamal.connectors.kafka_partitions import default_partition
from streamal.connectors.kafka_sink import PRODUCER_DEFAULTS
from streamal.connectors.kafka_source import CONSUMER_DEFAULTS
from streamal.pipelines import build_pipeline, load_spec
from streamal.runtime.observer import Observer

REPO_ROOT = Path(__file__).resolve().parents[1]
BROKER_TOOL = REPO_ROOT / "tools" / "kafka-broker"
KINDS = ("scores", "alerts", "drift", "dead_letter")
WARM_UP = 1000
"""Records of the untimed pipeline run before the rounds (imports, compiled kernels)."""


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
        sensor = f"s{i % 8}"
        row = {"seq": i, "sensor": sensor, "time": 1_700_000_000 + i,
               "temp": round(60 + 3 * load + rng.gauss(0, 0.2), 4),
               "vib": round(0.5 + 0.2 * load + rng.gauss(0, 0.02), 5),
               "pressure": round(100 - 2 * load + rng.gauss(0, 0.3), 4)}
        out.append((sensor.encode(), json.dumps(row).encode()))
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


class Timing(NamedTuple):
    """Records/s streaming and over the whole run, and CPU µs per record of this process
    (all its threads) over the whole run."""

    streaming: float
    whole: float
    cpu_us: float


def raw_copy(bootstrap: str, source: str, target: str, n: int, partitions: int,
             transcode: bool = False, placed: bool = False) -> Timing:
    """Consume + produce (+ JSON decode/encode, or with each key's partition computed once)
    of ``n`` records; see the module docstring for what each timing covers."""
    create_topic(bootstrap, target, partitions=1)
    started, cpu = time.perf_counter(), time.process_time()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **CONSUMER_DEFAULTS)
    tps = [TopicPartition(source, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    producer: KafkaProducer | None = None
    first = math.nan
    done = 0
    where: dict[bytes, int] = {}  # key -> partition (placed)
    while done < n:
        for messages in consumer.poll(timeout_ms=1000, max_records=500).values():
            if producer is None:
                first = time.perf_counter()
                producer = KafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_DEFAULTS)
                target_partitions = producer.partitions_for(target)
            for m in messages:
                value = json.dumps(json.loads(m.value)).encode() if transcode else m.value
                if placed:
                    partition = where.get(m.key)
                    if partition is None:
                        partition = where[m.key] = default_partition(m.key, target_partitions)
                    producer.send(target, key=m.key, value=value, partition=partition)
                else:
                    producer.send(target, key=m.key, value=value)
            done += len(messages)
    assert producer is not None
    producer.flush()
    ended, cpu = time.perf_counter(), time.process_time() - cpu
    consumer.close(autocommit=False)
    producer.close()
    return Timing(n / (ended - first), n / (ended - started), cpu / n * 1e6)


class FirstBatch(Observer):
    """Notes when the pipeline's first poll handed over records."""

    first = math.nan

    def batch(self, records: int, seconds: float) -> None:
        if math.isnan(self.first):  # the batch hook comes after processing it
            self.first = time.perf_counter() - seconds


def sensor_spec(bootstrap: str, source: str, name: str, partitions: int, checkpoints: str,
                overrides: list[str]) -> Any:
    """The ``sensor_anomaly_kafka`` spec reading ``source``, writing topics ``name-KIND``."""
    return load_spec("sensor_anomaly_kafka", [
        f"source.bootstrap_servers={bootstrap}", f"source.topics={source}",
        f"source.group_id={name}", f"source.partitions={list(range(partitions))}",
        "source.stop_at_end=true", f"checkpoint.directory={json.dumps(checkpoints)}",
        *[f"outputs.{kind}.topic={name}-{kind}" for kind in KINDS], *overrides])


def pipeline_rate(bootstrap: str, source: str, n: int, partitions: int,
                  overrides: list[str]) -> tuple[Timing, Any]:
    """The pipeline's timing over ``n`` records, and its summary."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    for kind in KINDS:
        create_topic(bootstrap, f"{name}-{kind}", partitions=1)
    with tempfile.TemporaryDirectory(prefix="bench-ck-") as checkpoints:
        observer = FirstBatch()
        pipeline = build_pipeline(sensor_spec(bootstrap, source, name, partitions, checkpoints,
                                              overrides), observer=observer)
        started, cpu = time.perf_counter(), time.process_time()
        summary = pipeline.run()
        ended, cpu = time.perf_counter(), time.process_time() - cpu
    if summary.records_in != n:
        sys.exit(f"the pipeline read {summary.records_in} records, expected {n}")
    return Timing(n / (ended - observer.first), n / (ended - started), cpu / n * 1e6), summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the three measurements")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="TABLE.KEY=VALUE", help="override a key of the sensor spec")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    items = sensor_values(args.records)
    rounds: list[dict[str, float]] = []
    with broker() as bootstrap:
        topic = f"bench-in-{uuid.uuid4().hex[:8]}"
        produced = produce(bootstrap, topic, items, args.partitions)
        warm_up = f"{topic}-warm-up"
        produce(bootstrap, warm_up, items[:WARM_UP], args.partitions)
        pipeline_rate(bootstrap, warm_up, WARM_UP, args.partitions, args.overrides)
        for r in range(args.repeat):
            raw = raw_copy(bootstrap, topic, f"{topic}-raw{r}", args.records, args.partitions)
            raw_json = raw_copy(bootstrap, topic, f"{topic}-json{r}", args.records,
                                args.partitions, transcode=True)
            placed = raw_copy(bootstrap, topic, f"{topic}-placed{r}", args.records,
                              args.partitions, placed=True)
            pipe, summary = pipeline_rate(bootstrap, topic, args.records, args.partitions,
                                          args.overrides)
            rounds.append({
                "raw": raw.streaming, "raw_json": raw_json.streaming,
                "raw_placed": placed.streaming, "pipeline": pipe.streaming,
                "ratio": pipe.streaming / raw.streaming,
                "ratio_placed": pipe.streaming / placed.streaming,
                "raw_whole": raw.whole, "pipeline_whole": pipe.whole,
                "ratio_whole": pipe.whole / raw.whole,
                "raw_cpu_us": raw.cpu_us, "raw_placed_cpu_us": placed.cpu_us,
                "pipeline_cpu_us": pipe.cpu_us, "cpu_ratio": raw.cpu_us / pipe.cpu_us,
                "cpu_ratio_placed": placed.cpu_us / pipe.cpu_us})
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    results = {
        "records": args.records, "partitions": args.partitions, "repeat": args.repeat,
        "produce_per_s": round(produced), "raw_per_s": round(median["raw"]),
        "raw_json_per_s": round(median["raw_json"]),
        "raw_placed_per_s": round(median["raw_placed"]),
        "pipeline_per_s": round(median["pipeline"]),
        "ratio": round(median["ratio"], 4),
        "ratios": [round(r["ratio"], 4) for r in rounds],
        "ratio_placed": round(median["ratio_placed"], 4),
        "ratios_placed": [round(r["ratio_placed"], 4) for r in rounds],
        "raw_whole_run_per_s": round(median["raw_whole"]),
        "pipeline_whole_run_per_s": round(median["pipeline_whole"]),
        "ratio_whole_run": round(median["ratio_whole"], 4),
        "ratios_whole_run": [round(r["ratio_whole"], 4) for r in rounds],
        "cpu_us_per_record": {k: round(median[f"{k}_cpu_us"], 1)
                              for k in ("raw", "raw_placed", "pipeline")},
        "cpu_ratio": round(median["cpu_ratio"], 4),
        "cpu_ratio_placed": round(median["cpu_ratio_placed"], 4),
        "alerts": summary.alerted, "drift_events": summary.drift_events,
        "checkpoints": summary.checkpoints, "overrides": args.overrides,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                   f"{platform.python_version()}",
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{args.records} sensor records, {args.partitions} partition(s), median of "
          f"{args.repeat} round(s); {results['machine']}")
    print(f"  produce (setup)                 {produced:>10,.0f} records/s")
    print("  streaming (first record consumed to last output acknowledged):")
    print(f"  raw consume+produce             {median['raw']:>10,.0f} records/s")
    print(f"  raw consume+json+produce        {median['raw_json']:>10,.0f} records/s")
    print(f"  raw, partition per key          {median['raw_placed']:>10,.0f} records/s")
    print(f"  pipeline (decode, score, learn) {median['pipeline']:>10,.0f} records/s")
    print(f"  pipeline / raw                  {median['ratio']:>10.1%}   (rounds: "
          + ", ".join(f"{r['ratio']:.1%}" for r in rounds) + ")")
    print(f"  pipeline / raw, partition/key   {median['ratio_placed']:>10.1%}   (rounds: "
          + ", ".join(f"{r['ratio_placed']:.1%}" for r in rounds) + ")")
    print("  whole run (client start-up included):")
    print(f"  raw consume+produce             {median['raw_whole']:>10,.0f} records/s")
    print(f"  pipeline                        {median['pipeline_whole']:>10,.0f} records/s")
    print(f"  pipeline / raw                  {median['ratio_whole']:>10.1%}   (rounds: "
          + ", ".join(f"{r['ratio_whole']:.1%}" for r in rounds) + ")")
    print("  CPU per record (this process, all threads, whole run; the broker is not counted):")
    print(f"  raw / raw, partition per key    {median['raw_cpu_us']:>7.1f} / "
          f"{median['raw_placed_cpu_us']:.1f} µs")
    print(f"  pipeline                        {median['pipeline_cpu_us']:>7.1f} µs")
    print(f"  raw / pipeline, CPU             {median['cpu_ratio']:>10.1%}   (partition per key: "
          f"{median['cpu_ratio_placed']:.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
