"""Where kafka-python's default partitioner puts a keyed record, cached per key.

kafka-python hashes every keyed record's key with murmur2 in pure Python, on
every send. A sink that sends many records with few keys (one per sensor)
computes each key's partition once here and hands it to ``send(partition=...)``:
the same placement, for a dictionary lookup.
"""

from __future__ import annotations

from collections.abc import Collection

from kafka.partitioner.default import murmur2

__all__ = ["KeyPartitions", "default_partition"]

MAX_KEYS = 100_000
"""Keys remembered at most; the cache starts afresh past this (keys that are ids)."""


def default_partition(key: bytes, partitions: Collection[int]) -> int:
    """The partition kafka-python's ``DefaultPartitioner`` picks for ``key``.

    ``partitions`` are all the topic's partitions (available or not), as the
    producer's metadata lists them.

    Examples
    --------
    >>> default_partition(b"s1", {0, 1, 2, 3}), default_partition(b"s1", {0})
    (1, 0)
    """
    ordered = sorted(partitions)
    return ordered[(murmur2(key) & 0x7FFFFFFF) % len(ordered)]


class KeyPartitions:
    """``(UTF-8 key, partition)`` of text keys for one topic, remembered per key.

    :meth:`use` is told the topic's partitions before each run of
    :meth:`place` calls; a change of them (partitions added) forgets what was
    remembered, as the default partitioner would then place keys anew.

    Examples
    --------
    >>> keys = KeyPartitions()
    >>> keys.use({0, 1, 2, 3})
    >>> keys.place("s1"), keys.place(None)
    ((b's1', 1), (None, None))
    >>> keys.use({0, 1, 2, 3, 4, 5})
    >>> keys.place("s1")
    (b's1', 3)
    """

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        self._partitions: frozenset[int] = frozenset()
        self._known: dict[str, tuple[bytes, int]] = {}

    def use(self, partitions: Collection[int]) -> None:
        """Place keys among ``partitions`` (all of the topic's) from now on."""
        if partitions != self._partitions:
            self._partitions = frozenset(partitions)
            self._known = {}

    def place(self, key: str | None) -> tuple[bytes | None, int | None]:
        """``(key as UTF-8, its partition)``; the partition is ``None`` (the producer's
        partitioner decides) for no key or while no partitions are known."""
        if key is None:
            return None, None
        hit = self._known.get(key)
        if hit is None:
            if len(self._known) >= self.max_keys:
                self._known = {}
            data = key.encode()
            if not self._partitions:  # not known: the producer's partitioner decides
                return data, None
            hit = self._known[key] = (data, default_partition(data, self._partitions))
        return hit
