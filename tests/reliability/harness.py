"""Helpers of the reliability tests and benchmarks: brokers that survive kills
(``BrokerProcess``, from ``tests/broker_process.py``), `streamal run` subprocesses, their
metrics, and the checks of a faulty run against an uninterrupted one.

Used by ``tests/reliability`` and by ``bench/crash_loop.py`` / ``bench/soak.py``.
"""

from __future__ import annotations

import collections
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "pipelines"))  # sensor_stream
sys.path.insert(0, str(ROOT / "tests"))  # broker_process

from broker_process import BrokerProcess  # noqa: E402
from sensor_stream import (  # noqa: E402
    FEATURES,
    bad_values,
    create_topics,
    mix,
    produce,
    read_topic,
    sensor_records,
)

__all__ = [
    "FEATURES",
    "KINDS",
    "BrokerProcess",
    "bad_values",
    "cli_command",
    "create_topics",
    "free_port",
    "health",
    "max_weight_diff",
    "mix",
    "model_arrays",
    "outputs",
    "produce",
    "read_topic",
    "scrape",
    "sensor_overrides",
    "sensor_records",
    "wait_for",
]

KINDS = ("scores", "alerts", "drift", "dead_letter")
SPEC = "sensor_anomaly_kafka"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sensor_overrides(bootstrap: str, topic: str, name: str, checkpoints: Path,
                     **extra: Any) -> list[str]:
    """``--set`` overrides pointing the packaged Kafka sensor spec at a test's topics."""
    overrides = [
        f"source.bootstrap_servers={bootstrap}", f"source.topics={topic}",
        f"source.group_id={name}", "source.partitions=[0]",
        f"decode.features={json.dumps(FEATURES)}",
        f"checkpoint.directory={json.dumps(str(checkpoints))}",
        *[f"outputs.{kind}.topic={name}-{kind}" for kind in KINDS],
    ]
    return overrides + [f"{key}={value}" for key, value in extra.items()]


def cli_command(overrides: Sequence[str], spec: str = SPEC, log_level: str = "INFO",
                threads: int = 1) -> list[str]:
    command = [sys.executable, "-m", "streamal.cli", "--log-level", log_level,
               "--threads", str(threads), "run", spec]
    return command + [arg for o in overrides for arg in ("--set", o)]


def outputs(bootstrap: str, name: str) -> dict[str, list[dict[str, Any]]]:
    return {kind: read_topic(bootstrap, f"{name}-{kind}") for kind in KINDS}


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             process: subprocess.Popen | None = None, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it is truthy; fail naming ``what`` (and the process's end)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended (exit {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(interval)


def scrape(port: int) -> dict[str, float]:
    """The samples of ``/metrics`` as ``{'name{label="v"}': value}`` (``{}`` if unreachable)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except (OSError, urllib.error.URLError):
        return {}
    samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def health(port: int) -> tuple[int, dict[str, Any]]:
    """Status code and JSON body of ``/healthz`` (``(0, {})`` if unreachable)."""
    try:
        answer = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
        return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return 0, {}


def model_arrays(directory: Path) -> dict[str, np.ndarray]:
    from streamal.checkpoint import CheckpointStore, read_state

    arrays, _ = read_state(CheckpointStore(directory).list()[-1])
    return {k: v for k, v in arrays.items() if k.startswith("model/")}


def max_weight_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys() and a, (sorted(a), sorted(b))
    return max(float(np.max(np.abs(a[k].astype(float) - b[k].astype(float)), initial=0.0))
               for k in a)


def output_counts(records: Iterable[dict[str, Any]]) -> collections.Counter[str]:
    return collections.Counter(r["id"] for r in records)
