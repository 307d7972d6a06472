"""``per_partition`` workers in one process, over a fake consumer group: rebalance logic alone.

The fake source hands out partitions like Kafka's eager protocol (revoke everything, then
assign the new set) inside ``poll``, so the tests can put a rebalance exactly where they want.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamal import ActivationDetector
from streamal.checkpoint import CheckpointError
from streamal.connectors import MemorySink, Record, Source
from streamal.runtime import QuantileThreshold, RecordDecoder
from streamal.runtime.scaleout import PartitionedWorker

STREAMS = [f"t:{p}" for p in range(4)]


def partition_rows(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [json.dumps({"k": f"k{i % 3}", "a": rng.gauss(0, 1), "b": rng.gauss(seed, 1)}).encode()
            for i in range(n)]


class FakeGroup(Source):
    """One member of a fake consumer group over in-memory partitions."""

    def __init__(self, data: Mapping[str, list[bytes]]) -> None:
        self.data = data
        self.assigned: list[str] = []
        self.pending: list[str] | None = None
        self.position: dict[str, int] = {}
        self.on_assign: Any = None
        self.on_revoke: Any = None
        self.polls = 0
        self.at_poll: dict[int, list[str]] = {}  # poll number -> a rebalance then

    def set_rebalance_callbacks(self, on_assign: Any = None, on_revoke: Any = None) -> None:
        self.on_assign, self.on_revoke = on_assign, on_revoke

    def rebalance(self, streams: list[str]) -> None:
        self.pending = streams  # takes effect in the next poll, as in Kafka

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        self.polls += 1
        if self.polls in self.at_poll:
            self.pending = self.at_poll.pop(self.polls)
        if self.pending is not None:
            if self.assigned:
                self.on_revoke(list(self.assigned))
            self.assigned, self.pending = sorted(self.pending), None
            known = self.on_assign(list(self.assigned)) if self.assigned else {}
            self.position = {s: known.get(s, 0) for s in self.assigned}
        out: list[Record] = []
        while len(out) < max_records:  # round robin over the partitions
            left = [s for s in self.assigned if self.position[s] < len(self.data[s])]
            for s in left[: max_records - len(out)]:
                out.append(Record(self.data[s][self.position[s]], (s, self.position[s])))
                self.position[s] += 1
            if not left:
                break
        return out

    @property
    def exhausted(self) -> bool:
        return self.pending is None and bool(self.assigned) and all(
            self.position[s] >= len(self.data[s]) for s in self.assigned)

    def seek(self, positions: Mapping[str, int]) -> None:
        pass


def worker(source: FakeGroup, checkpoints: Path | None, sinks: dict[str, MemorySink],
           per_key: str | None = None) -> PartitionedWorker:
    return PartitionedWorker(source, sinks, lambda: ActivationDetector(hidden=(4, 3), seed=0),
                             RecordDecoder(key_field="k", exclude=["k"]),
                             alerts=QuantileThreshold(0.99, warmup=20, window=200),
                             per_key=per_key, checkpoint_dir=checkpoints,
                             checkpoint_every_records=50, checkpoint_every_seconds=None,
                             poll_records=37)


def weights(w: PartitionedWorker) -> dict[tuple[str, Any], dict[str, np.ndarray]]:
    return {(stream, key): m._export_state()[0] for stream, models in w.models.items()
            for key, m in models.items()}


@pytest.fixture
def data() -> dict[str, list[bytes]]:
    return {s: partition_rows(200 + 40 * p, seed=p) for p, s in enumerate(STREAMS)}


@pytest.mark.parametrize("per_key", [None, "k"])
def test_partitions_move_with_their_state_and_every_record_is_scored_once(
        data: dict[str, list[bytes]], tmp_path: Path, per_key: str | None,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="streamal.runtime.scaleout.partitioned")
    reference_source = FakeGroup(data)
    reference_source.rebalance(STREAMS)
    reference = worker(reference_source, None, {}, per_key)
    reference.run()

    a_out, b_out = {"scores": MemorySink()}, {"scores": MemorySink()}
    a_src, b_src = FakeGroup(data), FakeGroup(data)
    a = worker(a_src, tmp_path, a_out, per_key)
    b = worker(b_src, tmp_path, b_out, per_key)
    a_src.rebalance(STREAMS)
    a_src.at_poll[8] = STREAMS[:2]  # b joins mid-run: a checkpoints its partitions, keeps 0, 1
    a.run(max_records=400)
    b_src.rebalance(STREAMS[2:])
    b.run()
    a.run()
    assert a_src.exhausted and b_src.exhausted and set(b.models) == set(STREAMS[2:])
    assert "resumed from" in caplog.text and "t:2: now processed here, resumed" in caplog.text

    ids = [r["id"] for r in a_out["scores"].records + b_out["scores"].records]
    assert sorted(ids) == sorted(f"{s}@{i}" for s, rows in data.items() for i in range(len(rows)))
    got = {**weights(a), **weights(b)}
    want = weights(reference)
    assert got.keys() == want.keys() and len(want) == (12 if per_key else 4)
    for lane, arrays in want.items():
        for name, value in arrays.items():
            assert np.allclose(got[lane][name], value, atol=1e-6, equal_nan=True), (lane, name)


def test_an_eager_rebalance_keeps_the_tasks_it_gets_back(
        data: dict[str, list[bytes]], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = FakeGroup(data)
    w = worker(src, tmp_path, {})
    src.rebalance(STREAMS)
    w.run(max_records=100)
    caplog.set_level("INFO", logger="streamal.runtime.scaleout.partitioned")
    caplog.clear()
    src.rebalance(STREAMS)  # everything revoked and assigned again
    w.run(max_records=10)
    assert "now processed here" not in caplog.text, "kept tasks are not reloaded"


def test_a_worker_that_lost_its_partition_does_not_overwrite_the_new_owner(
        data: dict[str, list[bytes]], tmp_path: Path) -> None:
    zombie_src, owner_src = FakeGroup(data), FakeGroup(data)
    zombie, owner = worker(zombie_src, tmp_path, {}), worker(owner_src, tmp_path, {})
    zombie_src.rebalance(STREAMS[:1])
    zombie.run(max_records=60)  # checkpointed at 50; then it stalls and its session ends
    owner_src.rebalance(STREAMS[:1])  # the group gives the partition to another worker
    owner.run(max_records=120)
    with pytest.raises(CheckpointError, match="another worker checkpointed"):
        zombie.run(max_records=60)
