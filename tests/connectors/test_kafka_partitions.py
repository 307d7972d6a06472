"""The per-key partition cache gives kafka-python's default partitioner's answer."""

import random

import pytest
from kafka.partitioner import DefaultPartitioner

from streamal.connectors.kafka_partitions import KeyPartitions, default_partition


class Cluster:
    """The part of kafka-python's cluster metadata that its partitioner reads."""

    def __init__(self, topic: str, partitions: set[int], available: set[int]):
        self.topic, self.partitions, self.available = topic, partitions, available

    def topics(self) -> set[str]:
        return {self.topic}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.partitions)

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.available)


def random_keys(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_:é€"
    return [f"s{i}" for i in range(200)] + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(count)]


@pytest.mark.parametrize("partitions", [{0}, {0, 1}, {0, 1, 2, 3}, set(range(7)), set(range(64)),
                                        {0, 2, 5}])
def test_default_partition_matches_kafka_python(partitions):
    # some partitions unavailable: keyed records still go by the hash over all of them
    cluster = Cluster("t", partitions, available={min(partitions)})
    partitioner = DefaultPartitioner()
    for key in random_keys(2000):
        data = key.encode()
        assert default_partition(data, partitions) == partitioner.partition(
            "t", data, data, b"v", b"v", cluster), key


def test_key_partitions_places_like_the_default_partitioner_and_follows_changes():
    keys = KeyPartitions()
    keys.use({0, 1, 2, 3})
    placed = {key: keys.place(key) for key in random_keys(500, seed=1)}
    assert all(p == (k.encode(), default_partition(k.encode(), {0, 1, 2, 3}))
               for k, p in placed.items())
    assert len({p for _, p in placed.values()}) == 4
    assert all(keys.place(k) is placed[k] for k in placed)  # remembered
    keys.use({0, 1, 2, 3, 4, 5, 6, 7})  # partitions added: placed anew
    assert all(keys.place(k) == (k.encode(), default_partition(k.encode(), range(8)))
               for k in placed)


def test_key_partitions_without_a_key_or_partitions_leaves_the_choice_to_the_producer():
    keys = KeyPartitions()
    assert keys.place("s1") == (b"s1", None)  # no partitions known yet
    keys.use({0, 1})
    assert keys.place(None) == (None, None)
    assert keys.place("s1") == (b"s1", default_partition(b"s1", {0, 1}))


def test_key_partitions_forgets_past_its_bound():
    keys = KeyPartitions(max_keys=10)
    keys.use({0, 1, 2})
    first = keys.place("k0")
    for i in range(1, 25):
        assert keys.place(f"k{i}") == (f"k{i}".encode(),
                                       default_partition(f"k{i}".encode(), {0, 1, 2}))
    assert keys.place("k0") == first
    assert len(keys._known) <= 10
