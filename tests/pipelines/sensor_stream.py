"""Synthetic sensor records, bad records, and Kafka helpers for the pipeline tests."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Sequence
from typing import Any

from kafka import KafkaProducer

from streamal.connectors import KafkaSource, create_topic

FEATURES = ["temp", "vib", "pressure"]
T0 = 1_700_000_000


def sensor_records(n: int, sensors: int = 8, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` readings of ``sensors`` machines: correlated features, rare spikes, a level shift.

    Every record has ``seq`` (its index, unique), ``sensor``, ``time`` and the features.
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        s = i % sensors
        load = math.sin(i / 50.0 + s) + rng.gauss(0, 0.1)
        shift = 2.0 if i > 0.6 * n else 0.0
        temp = 60 + 5 * s + 3 * load + shift + rng.gauss(0, 0.2)
        vib = 0.5 + 0.2 * load + rng.gauss(0, 0.02)
        pressure = 100 - 2 * load + shift + rng.gauss(0, 0.3)
        if rng.random() < 0.005:  # a fault: vibration and pressure jump together
            vib, pressure = vib * 6, pressure - 30
        rows.append({"seq": i, "sensor": f"s{s}", "time": T0 + i,
                     "temp": round(temp, 4), "vib": round(vib, 5), "pressure": round(pressure, 4)})
    return rows


def bad_values(n: int, seed: int = 1) -> list[tuple[str, bytes]]:
    """``n`` bad record values, ``(kind, bytes)``, cycling through every kind of damage.

    Huge values here overflow to infinity (``1e999``, ``10**400``); a huge *finite* value
    is tested on its own (``test_bad_records.py``).
    """
    def good_like(i: int, **change: Any) -> dict[str, Any]:
        row = {"seq": -1 - i, "sensor": f"s{i % 8}", "time": T0 + i,
               "temp": 61.0, "vib": 0.5, "pressure": 100.0}
        row.update(change)
        return row

    def dumps(row: dict[str, Any]) -> bytes:
        return json.dumps(row, allow_nan=True).encode()

    makers = [
        ("invalid json", lambda i: b'{"seq": %d, "temp": 6' % i),
        ("invalid json", lambda i: b"not json at all"),
        ("empty", lambda i: b""),
        ("not utf-8", lambda i: b"\xff\xfe\x00garbage"),
        ("json array", lambda i: b"[1, 2, 3]"),
        ("nan", lambda i: dumps(good_like(i, temp=float("nan")))),
        ("infinity", lambda i: dumps(good_like(i, vib=float("inf")))),
        ("string", lambda i: dumps(good_like(i, temp="hot"))),
        ("numeric string", lambda i: dumps(good_like(i, pressure="101.5"))),
        ("missing field", lambda i: dumps({k: v for k, v in good_like(i).items() if k != "vib"})),
        ("no features", lambda i: dumps({"seq": -1 - i, "sensor": "s1", "time": T0})),
        ("nested", lambda i: dumps(good_like(i, temp={"value": 61.0}))),
        ("array value", lambda i: dumps(good_like(i, vib=[0.5, 0.6]))),
        ("huge overflow", lambda i: b'{"sensor": "s2", "time": %d, "temp": 1e999, "vib": 0.5, '
                                    b'"pressure": 100}' % (T0 + i)),
        ("huge integer", lambda i: dumps(good_like(i, temp=10**400))),
        ("json boolean", lambda i: b"true"),
    ]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind, make = makers[i % len(makers)]
        value = make(i)
        if rng.random() < 0.5 and kind == "invalid json":
            value = value[: max(1, len(value) // 2)]
        out.append((kind, value))
    return out


def mix(good: Sequence[dict[str, Any]], bad: Sequence[tuple[str, bytes]],
        seed: int = 2) -> list[tuple[str, bytes, Any]]:
    """Good and bad records interleaved at random places, order of each kept.

    Returns ``(key, value, tag)`` with ``tag`` the good record's ``seq`` or ``("bad", kind)``.
    """
    rng = random.Random(seed)
    slots = sorted(rng.sample(range(len(good) + len(bad)), len(bad)))
    items, g, b = [], iter(good), iter(bad)
    bad_at = set(slots)
    for i in range(len(good) + len(bad)):
        if i in bad_at:
            kind, value = next(b)
            items.append((f"s{i % 8}", value, ("bad", kind)))
        else:
            row = next(g)
            items.append((row["sensor"], json.dumps(row).encode(), row["seq"]))
    return items


def produce(bootstrap: str, topic: str, items: Iterable[tuple[str, bytes, Any]],
            partitions: int) -> dict[str, Any]:
    """Create ``topic`` and produce ``items``; return record id (``topic:p@offset``) → tag."""
    create_topic(bootstrap, topic, partitions=partitions)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                             batch_size=262144)
    try:
        sent = [(producer.send(topic, key=key.encode(), value=value), tag)
                for key, value, tag in items]
        producer.flush()
        ids = {}
        for future, tag in sent:
            meta = future.get(timeout=30)
            ids[f"{meta.topic}:{meta.partition}@{meta.offset}"] = tag
        return ids
    finally:
        producer.close()


def read_topic(bootstrap: str, topic: str, partitions: int = 1) -> list[dict[str, Any]]:
    """Every JSON record of ``topic`` (all its partitions), in partition order."""
    source = KafkaSource(topic, bootstrap, partitions=range(partitions), stop_at_end=True)
    records = []
    with source:
        while not source.exhausted:
            records.extend(source.poll(5000, 0.5))
    return [json.loads(r.value) for r in records]


def create_topics(bootstrap: str, *topics: str) -> None:
    """Create one-partition topics (output topics would auto-create with four)."""
    for topic in topics:
        create_topic(bootstrap, topic, partitions=1)
