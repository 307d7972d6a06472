"""Two ``per_partition`` workers on a 4-partition topic, through a real broker.

* A rebalance in the middle: worker a runs alone, worker b joins while records flow; a
  checkpoints the partitions it loses, b loads them. Every record is scored exactly once
  across both, and every partition's model equals that of one uninterrupted worker.
* A worker killed with SIGKILL and restarted rejoins and catches up: every record scored,
  duplicates only after the killed worker's checkpoints, the same per-partition models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cluster import (
    SPEC,
    Producer,
    Worker,
    partition_positions,
    partition_states,
    score_counts,
    sensor_rows,
    wait_until,
)

from streamal.pipelines import build_pipeline, load_spec

pytestmark = pytest.mark.kafka


def reference_models(bootstrap: str, topic: str, tmp: Path) -> dict[str, Any]:
    """Per-partition states of one worker reading the whole topic, in this process."""
    spec = load_spec(SPEC, [
        f"source.bootstrap_servers={bootstrap}", f"source.topics={topic}",
        "source.partitions=[0, 1, 2, 3]", "source.stop_at_end=true",
        'decode.features=["temp", "vib", "pressure"]', f'checkpoint.directory="{tmp / "ck"}"',
        "scaleout.mode=per_partition",
    ])
    summary = build_pipeline(spec, sinks={}).run()
    assert summary.stopped_by == "exhausted"
    return partition_states(tmp / "ck")


def assert_same_models(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert set(got) == set(want) and got
    for stream, (arrays, meta) in want.items():
        theirs, their_meta = got[stream]
        assert their_meta["positions"] == meta["positions"], stream
        models = [k for k in arrays if k.startswith("model/")]
        assert models and set(models) == {k for k in theirs if k.startswith("model/")}
        for key in models:
            a, b = arrays[key], theirs[key]
            if a.dtype.kind == "f":
                diff = float(np.max(np.abs(a - b), initial=0.0))
                assert diff <= 1e-6, f"{stream} {key}: max abs difference {diff}"
            else:
                assert np.array_equal(a, b), f"{stream} {key}"


def test_rebalance_in_the_middle_scores_every_record_once(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    rows = sensor_rows(6000, seed=1)
    producer = Producer(kafka_bootstrap, unique_name)
    producer.send(rows[:2000])
    a = Worker("a", tmp_path, kafka_bootstrap, unique_name, unique_name, "per_partition",
               stop_at_end=False)
    b = None
    try:
        wait_until(lambda: sum(partition_positions(tmp_path / "ck").values()) >= 2000, [a],
                   "worker a to checkpoint the first 2000 records")
        assert len(a.owned()) == 4
        b = Worker("b", tmp_path, kafka_bootstrap, unique_name, unique_name, "per_partition",
                   stop_at_end=False)
        feeding = producer.trickle(rows[2000:], until=lambda: len(b.owned()) > 0)  # type: ignore
        wait_until(lambda: len(b.owned()) > 0, [a, b], "worker b to get partitions")
        feeding.join(60)
        wait_until(lambda: sum(partition_positions(tmp_path / "ck").values()) >= len(rows),
                   [a, b], "every record to be checkpointed")
        for w in (a, b):
            w.terminate()
        assert a.wait() == 0 and b.wait() == 0, a.log()[-2000:] + b.log()[-2000:]
    finally:
        for w in (a, b):
            if w is not None and w.alive():
                w.kill()
        producer.close()

    moved = set(b.owned())
    assert moved and moved < set(a.owned()), "b took over some of a's partitions"
    assert "partitions handed back, checkpointed" in a.log()
    assert all(f"{s}: now processed here, resumed from" in b.log()
               for s in moved if partition_positions(tmp_path / "ck").get(s)), b.log()[-3000:]
    counts = score_counts([a, b])
    assert set(counts) == set(producer.ids) and len(counts) == len(rows)
    assert max(counts.values()) == 1, "a clean rebalance scores each record once"
    assert_same_models(partition_states(tmp_path / "ck"),
                       reference_models(kafka_bootstrap, unique_name, tmp_path / "ref"))


def test_killed_worker_rejoins_and_the_models_are_exact(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    rows = sensor_rows(6000, seed=2)
    producer = Producer(kafka_bootstrap, unique_name)
    producer.send(rows)
    producer.close()
    args = (tmp_path, kafka_bootstrap, unique_name, unique_name, "per_partition")
    a, b = Worker("a", *args), Worker("b", *args)
    workers = [a, b]
    try:
        wait_until(lambda: len(b.owned()) > 0, workers, "worker b to get partitions")
        mine = b.owned()
        wait_until(lambda: any(partition_positions(tmp_path / "ck").get(s) for s in mine),
                   workers, "worker b to checkpoint a partition")
        b.kill()
        at_kill = {s: p for s, p in partition_positions(tmp_path / "ck").items() if s in mine}
        b2 = Worker("b2", *args)
        workers.append(b2)
        assert a.wait() == 0, a.log()[-3000:]
        assert b2.wait() == 0, b2.log()[-3000:]
    finally:
        for w in workers:
            if w.alive():
                w.kill()

    counts = score_counts(workers)
    assert set(counts) == set(producer.ids), "every record has a score"
    for record_id, n in counts.items():
        if n > 1:
            stream, offset = record_id.rsplit("@", 1)
            assert n == 2 and stream in mine and int(offset) >= at_kill.get(stream, 0), (
                f"{record_id} scored {n} times; b held {mine}, checkpointed at {at_kill}")
    assert_same_models(partition_states(tmp_path / "ck"),
                       reference_models(kafka_bootstrap, unique_name, tmp_path / "ref"))
