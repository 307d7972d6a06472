"""Two ``shared`` workers (gloo) on a 4-partition topic, through a real broker.

* Every record is scored exactly once across the workers, and after every sync step the
  workers' whole states (weights, statistics, schema) have the same SHA-256
  (``scaleout.check_every = 1`` makes every step check it; a difference fails the run).
* A worker killed with SIGKILL makes the other stop with a sync error; both restarted,
  they resume from the last global checkpoint and catch up: every record scored, the
  model learnt every record exactly once, and both end with the same state.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cluster import (
    Producer,
    Worker,
    free_port,
    score_counts,
    sensor_rows,
    shared_state,
    wait_until,
)

pytestmark = pytest.mark.kafka

DIGEST = re.compile(r"shared model: (\d+) sync steps, (\d+) checks of identical state, "
                    r"state digest ([0-9a-f]{64})")


def pair(tmp: Path, bootstrap: str, topic: str, port: int, names: tuple[str, str],
         **settings: object) -> list[Worker]:
    env = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    settings = {"scaleout.sync_timeout": 60, "model.hidden": "[6, 4]", **settings}
    return [Worker(name, tmp, bootstrap, topic, topic, "shared", env={**env, "RANK": str(rank)},
                   **settings)
            for rank, name in enumerate(names)]


def digests(workers: list[Worker]) -> list[tuple[int, int, str]]:
    found = []
    for w in workers:
        match = DIGEST.search(w.log())
        assert match, f"{w.name} logged no final digest:\n{w.log()[-3000:]}"
        found.append((int(match[1]), int(match[2]), match[3]))
    return found


def learnt_exactly_once(directory: Path, n_records: int) -> None:
    """The model counts every record once: learnt by it, or kept from it by an alert."""
    _, meta = shared_state(directory)
    skipped = sum(r["counters"]["skipped_learning"] for r in meta["ranks"])
    learnt = sum(r["counters"]["learnt"] for r in meta["ranks"])
    assert meta["model"]["n_learnt"] == learnt == n_records - skipped, (
        meta["model"]["n_learnt"], learnt, skipped)


def test_every_record_scored_once_and_weights_identical_after_each_sync(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    rows = sensor_rows(3000, seed=3)
    producer = Producer(kafka_bootstrap, unique_name)
    producer.send(rows)
    producer.close()
    workers = pair(tmp_path, kafka_bootstrap, unique_name, free_port(), ("w0", "w1"),
                   **{"scaleout.check_every": 1})
    try:
        codes = [w.wait() for w in workers]
    finally:
        for w in workers:
            if w.alive():
                w.kill()
    assert codes == [0, 0], "\n".join(w.log()[-3000:] for w in workers)

    counts = score_counts(workers)
    assert set(counts) == set(producer.ids) and max(counts.values()) == 1
    assert all(score_counts([w]) for w in workers), "both workers scored records"
    (steps0, checks0, d0), (steps1, checks1, d1) = digests(workers)
    assert steps0 == steps1 and checks0 == checks1 == steps0 + 2  # broadcast + every step + end
    assert d0 == d1
    learnt_exactly_once(tmp_path / "ck", len(rows))


def test_killed_worker_restarts_with_the_other_and_both_catch_up(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    rows = sensor_rows(4000, seed=4)
    producer = Producer(kafka_bootstrap, unique_name)
    producer.send(rows)
    producer.close()
    port = free_port()
    first = pair(tmp_path, kafka_bootstrap, unique_name, port, ("w0", "w1"))
    workers = list(first)
    try:
        checkpoints = tmp_path / "ck"
        wait_until(lambda: len(list(checkpoints.glob("checkpoint-*.parquet"))) >= 2, first,
                   "a second global checkpoint")
        first[1].kill()
        assert first[0].wait(90) != 0, "the survivor stops when its peer is gone"
        assert "SyncError" in first[0].log()
        _, before = shared_state(checkpoints)
        second = pair(tmp_path, kafka_bootstrap, unique_name, port, ("w0b", "w1b"))
        workers += second
        codes = [w.wait() for w in second]
    finally:
        for w in workers:
            if w.alive():
                w.kill()
    assert codes == [0, 0], "\n".join(w.log()[-3000:] for w in second)
    assert all("resumed from" in w.log() for w in second)
    assert sum(before["positions"].values()) < len(rows), "the kill came mid-stream"

    counts = score_counts(workers)
    assert set(counts) == set(producer.ids), "every record has a score"
    (_, _, d0), (_, _, d1) = digests(second)
    assert d0 == d1
    learnt_exactly_once(checkpoints, len(rows))
