"""Helpers for the scale-out tests: data, worker processes, their outputs and checkpoints."""

from __future__ import annotations

import collections
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from streamal.checkpoint import CheckpointError, CheckpointStore, read_state
from streamal.connectors import create_topic

SPEC = "sensor_anomaly_kafka"
FEATURES = ["temp", "vib", "pressure"]
T0 = 1_700_000_000


def balanced_sensors(partitions: int = 4, per_partition: int = 4) -> list[str]:
    """Sensor names that Kafka's default partitioner spreads evenly over ``partitions``."""
    chosen: dict[int, list[str]] = {p: [] for p in range(partitions)}
    i = 0
    while any(len(names) < per_partition for names in chosen.values()):
        p = (murmur2(f"s{i}".encode()) & 0x7FFFFFFF) % partitions
        if len(chosen[p]) < per_partition:
            chosen[p].append(f"s{i}")
        i += 1
    return [name for names in zip(*chosen.values()) for name in names]


SENSORS = balanced_sensors()


def sensor_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` correlated readings of :data:`SENSORS` with rare faults; ``seq`` is the index."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        s = i % len(SENSORS)
        load = math.sin(i / 40.0 + s) + rng.gauss(0, 0.1)
        temp = 60 + 2 * s + 3 * load + rng.gauss(0, 0.2)
        vib, pressure = 0.5 + 0.2 * load + rng.gauss(0, 0.02), 100 - 2 * load + rng.gauss(0, 0.3)
        if rng.random() < 0.005:
            vib, pressure = vib * 6, pressure - 30
        rows.append({"seq": i, "sensor": SENSORS[s], "time": T0 + i, "temp": round(temp, 4),
                     "vib": round(vib, 5), "pressure": round(pressure, 4)})
    return rows


class Producer:
    """Produces sensor rows keyed by sensor; remembers every record's id → seq."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = 4) -> None:
        create_topic(bootstrap, topic, partitions=partitions)
        self.topic = topic
        self.ids: dict[str, int] = {}
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)

    def send(self, rows: Iterable[dict[str, Any]]) -> None:
        sent = [(self._producer.send(self.topic, key=r["sensor"].encode(),
                                     value=json.dumps(r).encode()), r["seq"]) for r in rows]
        self._producer.flush()
        for future, seq in sent:
            meta = future.get(timeout=30)
            self.ids[f"{meta.topic}:{meta.partition}@{meta.offset}"] = seq

    def trickle(self, rows: Sequence[dict[str, Any]], until: Callable[[], bool],
                chunk: int = 50, pause: float = 0.1) -> threading.Thread:
        """Send ``rows`` in small chunks while ``until()`` is false, then the rest at once."""
        def go() -> None:
            i = 0
            while i < len(rows) and not until():
                self.send(rows[i:i + chunk])
                i += chunk
                time.sleep(pause)
            self.send(rows[i:])

        thread = threading.Thread(target=go, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._producer.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Worker:
    """One ``streamal run`` process of the sensor spec, scaled out; outputs to a JSONL file."""

    def __init__(self, name: str, tmp: Path, bootstrap: str, topic: str, group: str, mode: str,
                 env: dict[str, str] | None = None, stop_at_end: bool = True,
                 **settings: Any) -> None:
        self.name = name
        self.scores = tmp / f"scores-{name}.jsonl"
        self.log_path = tmp / f"worker-{name}.log"
        overrides = {
            "source.bootstrap_servers": bootstrap, "source.topics": topic,
            "source.group_id": group, "source.stop_at_end": json.dumps(stop_at_end),
            "decode.features": json.dumps(FEATURES),
            "checkpoint.directory": json.dumps(str(tmp / "ck")),
            "checkpoint.every_records": 300, "checkpoint.every_seconds": 1.0,
            "outputs.scores": f"{{path={json.dumps(str(self.scores))}}}",
            "outputs.alerts": f"{{path={json.dumps(str(tmp / f'alerts-{name}.jsonl'))}}}",
            "scaleout.mode": mode, **settings,
        }
        command = [sys.executable, "-m", "streamal.cli", "--log-level", "INFO", "run", SPEC]
        command += [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in wait()
        full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        env=full_env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.wait(30)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 120) -> int:
        try:
            code = self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._log.close()
        return code

    def owned(self) -> list[str]:
        """Partitions this worker loaded (per_partition), in the order it got them."""
        found = []
        for line in self.log().splitlines():
            if ": now processed here" in line:
                found.append(line.split("partitioned: ", 1)[1].split(": now", 1)[0])
        return found


def wait_until(condition: Callable[[], bool], workers: Sequence[Worker], what: str,
               timeout: float = 90.0, allow_exit: bool = False) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for w in workers:
            if not allow_exit and not w.alive():
                raise AssertionError(f"worker {w.name} exited ({w.process.returncode}) while "
                                     f"waiting for {what}:\n{w.log()[-3000:]}")
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.name}\n{w.log()[-2000:]}" for w in workers)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.05)


def score_counts(workers: Iterable[Worker]) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for w in workers:
        if w.scores.exists():
            counts.update(json.loads(line)["id"] for line in w.scores.read_text().splitlines())
    return counts


def partition_states(directory: Path) -> dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]]:
    """Newest checkpoint of every partition store under ``directory/partitions``."""
    out = {}
    folder = directory / "partitions"
    prefixes = {p.name.rsplit("-", 1)[0] for p in folder.glob("partition-*.parquet")} \
        if folder.is_dir() else set()
    for prefix in prefixes:
        found = CheckpointStore(folder, prefix=prefix).load_latest()
        if found is not None:
            arrays, meta, _ = found
            (stream, _), = meta["positions"].items()
            out[stream] = (arrays, meta)
    return out


def partition_positions(directory: Path) -> dict[str, int]:
    try:
        return {s: int(m["positions"][s]) for s, (_, m) in partition_states(directory).items()}
    except CheckpointError:  # a file being pruned right now: ask again
        return {}


def shared_state(directory: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    latest = CheckpointStore(directory).list()[-1]
    return read_state(latest)
