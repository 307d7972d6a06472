"""Scale-out throughput: records/s of 1 and 2 ``streamal run`` workers on one topic.

Each run has its own 4-partition topic, consumer group and checkpoint folder, and the sensor
spec's outputs (scores, alerts, drift, dead letters to Kafka topics). Runs:

* ``pipeline``: one plain worker (no ``[scaleout]``), the reference;
* ``per_partition`` with 1 and with 2 worker processes;
* ``shared`` (gloo, ``--step-records`` records per worker per sync step) with 1 and 2.

Every worker is a separate ``python -m streamal.cli run`` process. To measure the workers
at work, not their start: ``--warmup`` records are produced first; once the workers have
checkpointed them and every worker holds partitions (group settled), the clock starts and
the other records are produced; it stops at the first checkpoint that includes every record
(checkpoints every ``--every`` records or 0.5 s). Then the workers get SIGTERM. Reported:
records/s in that window, and the CPU seconds per 1000 records the workers (and the broker,
when this script started it) used in it, read from ``/proc``.

The broker is ``$STREAMAL_KAFKA_BOOTSTRAP`` if set, else one started with
``tools/kafka-broker``.

Usage (from the repository root)::

    python bench/scaleout.py [--records 30000] [--warmup 3000] [--step-records 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka.partitioner.default import murmur2
from pipeline_throughput import KINDS, broker

from streamal.checkpoint import CheckpointError, read_state
from streamal.connectors import create_topic
from streamal.connectors.kafka_sink import PRODUCER_DEFAULTS

PARTITIONS = 4


def balanced_sensors(per_partition: int = 8) -> list[str]:
    """Sensor names that Kafka's default partitioner spreads evenly over the partitions."""
    chosen: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    i = 0
    while any(len(v) < per_partition for v in chosen.values()):
        name = f"s{i}"
        p = (murmur2(name.encode()) & 0x7FFFFFFF) % PARTITIONS
        if len(chosen[p]) < per_partition:
            chosen[p].append(name)
        i += 1
    return [name for names in zip(*chosen.values()) for name in names]


def rows_of(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` readings of sensors spread evenly over the partitions."""
    sensors = balanced_sensors()
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        s = i % len(sensors)
        load = math.sin(i / 50.0 + s) + rng.gauss(0, 0.1)
        rows.append({"seq": i, "sensor": sensors[s], "time": 1_700_000_000 + i,
                     "temp": round(60 + s + 3 * load + rng.gauss(0, 0.2), 4),
                     "vib": round(0.5 + 0.2 * load + rng.gauss(0, 0.02), 5),
                     "pressure": round(100 - 2 * load + rng.gauss(0, 0.3), 4)})
    return rows


def send(producer: KafkaProducer, topic: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        producer.send(topic, key=row["sensor"].encode(), value=json.dumps(row).encode())
    producer.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timeline(checkpoints: Path) -> list[tuple[float, int]]:
    """``(written_at, records the state includes)`` of every checkpoint, oldest first."""
    events = []
    for path in sorted(checkpoints.rglob("*.parquet")):
        try:
            _, meta = read_state(path)
        except CheckpointError:  # being written or pruned right now
            continue
        events.append((float(meta["written_at"]), dict(meta["positions"])))
    events.sort(key=lambda e: e[0])
    latest: dict[str, int] = {}
    out = []
    for written_at, positions in events:
        latest.update(positions)
        out.append((written_at, sum(latest.values())))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` and their threads so far (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def settled(logs: list[Path]) -> bool:
    """Every worker holds partitions, and none got a new assignment in the last 2 seconds."""
    if len(logs) == 1:
        return True
    now = time.time()
    for log in logs:
        lines = [line for line in log.read_text(errors="replace").splitlines()
                 if "partitions held here now: " in line]
        if not lines or lines[-1].endswith("now: none"):
            return False
        stamp = time.mktime(time.strptime(lines[-1][:19], "%Y-%m-%d %H:%M:%S"))
        if now - stamp < 2.0:
            return False
    return True


def wait(condition: Any, procs: list[subprocess.Popen[bytes]], what: str,
         timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if any(p.poll() is not None for p in procs):
            sys.exit(f"a worker exited while waiting for {what}")
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.05)


def run(bootstrap: str, n: int, warmup: int, mode: str | None, workers: int, every: int,
        step_records: int, broker_pid: int | None) -> dict[str, Any]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    rows = rows_of(n)
    create_topic(bootstrap, name, partitions=PARTITIONS)
    for kind in KINDS:
        create_topic(bootstrap, f"{name}-{kind}", partitions=1)
    producer = KafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_DEFAULTS)
    send(producer, name, rows[:warmup])
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as folder:
        checkpoints = Path(folder) / "ck"
        overrides = {
            "source.bootstrap_servers": bootstrap, "source.topics": name,
            "source.group_id": name, "checkpoint.directory": json.dumps(str(checkpoints)),
            "checkpoint.every_records": every, "checkpoint.every_seconds": 0.5,
            "checkpoint.keep": 100_000,
            **{f"outputs.{kind}.topic": f"{name}-{kind}" for kind in KINDS},
        }
        if mode is not None:
            overrides["scaleout.mode"] = mode
        if mode == "shared":
            overrides["scaleout.step_records"] = step_records
        command = [sys.executable, "-m", "streamal.cli", "--log-level", "INFO", "run",
                   "sensor_anomaly_kafka"]
        command += [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": str(workers),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
        logs = [Path(folder) / f"worker-{rank}.log" for rank in range(workers)]
        procs = []
        for rank, log in enumerate(logs):
            with open(log, "wb") as out:
                procs.append(subprocess.Popen(command, env={**env, "RANK": str(rank)},
                                              stdout=subprocess.DEVNULL, stderr=out))
        try:
            wait(lambda: (timeline(checkpoints) or [(0, 0)])[-1][1] >= warmup, procs,
                 "the warm-up records")
            wait(lambda: settled(logs), procs, "the consumer group to settle")
            pids = [p.pid for p in procs] + ([broker_pid] if broker_pid else [])
            cpu_workers, cpu_broker = cpu_seconds(pids[:workers]), cpu_seconds(pids[workers:])
            started = time.time()
            send(producer, name, rows[warmup:])
            wait(lambda: timeline(checkpoints)[-1][1] >= n, procs, "every record")
            done_at = next(t for t, total in timeline(checkpoints) if total >= n)
            cpu_workers = cpu_seconds(pids[:workers]) - cpu_workers
            cpu_broker = cpu_seconds(pids[workers:]) - cpu_broker
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            codes = [p.wait(120) for p in procs]
            producer.close()
        if codes != [0] * workers:
            sys.exit(f"{mode} x{workers}: workers exited with {codes}:\n"
                     + logs[0].read_text(errors="replace")[-3000:])
    measured = n - warmup
    seconds = done_at - started
    print(f"{mode or 'pipeline'} x{workers}: {measured / seconds:,.0f} records/s", file=sys.stderr,
          flush=True)
    return {"mode": mode or "pipeline", "workers": workers, "records": measured,
            "seconds": round(seconds, 2), "per_s": round(measured / seconds),
            "worker_cpu_s_per_1000": round(1000 * cpu_workers / measured, 3),
            "broker_cpu_s_per_1000": round(1000 * cpu_broker / measured, 3)
            if broker_pid else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--warmup", type=int, default=3000)
    parser.add_argument("--every", type=int, default=2000, help="checkpoint every N records")
    parser.add_argument("--step-records", type=int, default=8,
                        help="shared mode: records per worker per sync step")
    parser.add_argument("--modes", default="pipeline,per_partition,shared",
                        help="comma-separated runs to make (default: all)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    plan = [(None, 1)] if "pipeline" in modes else []
    plan += [(mode, w) for mode in ("per_partition", "shared") if mode in modes for w in (1, 2)]

    with broker() as bootstrap:
        broker_pid = None
        if not os.environ.get("STREAMAL_KAFKA_BOOTSTRAP"):
            found = sorted(Path(tempfile.gettempdir()).glob("bench-broker-*/broker.pid"),
                           key=lambda p: p.stat().st_mtime)
            broker_pid = int(found[-1].read_text()) if found else None
        runs = [run(bootstrap, args.records, args.warmup, mode, workers, args.every,
                    args.step_records, broker_pid)
                for mode, workers in plan]
    by = {(r["mode"], r["workers"]): r for r in runs}
    ratios = {mode: round(by[(mode, 2)]["per_s"] / by[(mode, 1)]["per_s"], 2)
              for mode in ("per_partition", "shared") if (mode, 1) in by}
    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
               f"{os.getloadavg()[0]:.1f} at the end, Python {platform.python_version()}")
    if args.json:
        print(json.dumps({"records": args.records, "warmup": args.warmup,
                          "partitions": PARTITIONS, "step_records": args.step_records,
                          "runs": runs, "ratios": ratios, "machine": machine}, indent=2))
        return 0
    print(f"{args.records - args.warmup} sensor records measured after {args.warmup} of "
          f"warm-up, {PARTITIONS} partitions; {machine}")
    print(f"{'mode':<14}{'workers':>8}{'records/s':>11}{'seconds':>9}{'worker CPU s/1000':>19}"
          f"{'broker CPU s/1000':>19}")
    for r in runs:
        print(f"{r['mode']:<14}{r['workers']:>8}{r['per_s']:>11,}{r['seconds']:>9}"
              f"{r['worker_cpu_s_per_1000']:>19}{str(r['broker_cpu_s_per_1000']):>19}")
    for mode, ratio in ratios.items():
        print(f"{mode}: 2 workers / 1 worker = {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
