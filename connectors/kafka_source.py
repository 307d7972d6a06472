"""Kafka source: read partitions by consumer group or explicit assignment.

Streams are named ``"topic:partition"``; offsets are partition offsets. The
consumer defaults were measured against tansu (see the project notes on Kafka):
a short session timeout makes a group join take about 2 s instead of 23 s,
offsets are committed by the checkpoint only, and static membership is never
used. ``client_settings`` passes anything else (SASL, SSL, timeouts) through
unchanged and wins over these defaults.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import InvalidSessionTimeoutError, KafkaError
from kafka.structs import OffsetAndMetadata

from .base import Record, Source, SourceError

__all__ = ["CONSUMER_DEFAULTS", "KafkaSource", "partition_of", "stream_of"]

logger = logging.getLogger(__name__)

CONSUMER_DEFAULTS: dict[str, Any] = {
    "session_timeout_ms": 3000,
    "heartbeat_interval_ms": 500,
    "enable_auto_commit": False,
}

LOG_CHECK_INTERVAL = 1.0
"""Seconds a position must stay past the end of its log before the log counts as reset."""


def stream_of(tp: TopicPartition) -> str:
    """``"topic:partition"``, the stream name of a partition."""
    return f"{tp.topic}:{tp.partition}"


def partition_of(stream: str) -> TopicPartition:
    """The partition named by ``"topic:partition"``."""
    topic, _, partition = stream.rpartition(":")
    if not topic or not partition.isdigit():
        raise ValueError(f"a Kafka stream is named 'topic:partition', got {stream!r}")
    return TopicPartition(topic, int(partition))


class KafkaSource(Source):
    """Read raw records from Kafka partitions, resumable from checkpointed positions.

    Either ``group_id`` alone (consumer group: the partitions of ``topics`` are
    shared with the group's other members) or ``partitions`` (explicit
    assignment, no join delay; ``group_id`` is then used for commits only).

    A partition gets the position given to :meth:`seek` when it is assigned;
    one without a position starts per ``auto_offset_reset`` (committed group
    offsets are for lag monitoring only and never decide where to read). Values
    are raw bytes (a null value is ``b""``), keys are ``str`` when UTF-8, the
    event time is the Kafka timestamp in seconds.

    When the broker's log of a partition stays behind the source's position
    for a second (a broker restarted without its data), the source logs a
    warning and reads that partition from its beginning. A log refilled past the
    old position before that cannot be told apart from new data.

    Parameters
    ----------
    topics
        A topic or a list of topics.
    bootstrap_servers
        ``"host:port"`` or a list of them.
    group_id
        Consumer group, for subscription and offset commits.
    partitions
        Explicit assignment: ``int`` partitions (taken from every topic) or
        ``"topic:partition"`` names.
    auto_offset_reset
        ``"earliest"`` or ``"latest"``: where a partition without a position starts.
    stop_at_end
        Become :attr:`exhausted` once every assigned partition is read up to
        the end offset it had when first seen (for backtests of a topic).
    client_settings
        Extra ``KafkaConsumer`` settings.

    """

    def __init__(
        self,
        topics: str | Sequence[str],
        bootstrap_servers: str | Sequence[str],
        group_id: str | None = None,
        partitions: Sequence[int | str] | None = None,
        auto_offset_reset: str = "earliest",
        stop_at_end: bool = False,
        client_settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.topics = topics
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.partitions = partitions
        self.auto_offset_reset = auto_offset_reset
        self.stop_at_end = stop_at_end
        self.client_settings = client_settings
        if auto_offset_reset not in ("earliest", "latest"):
            raise ValueError(f"auto_offset_reset must be 'earliest' or 'latest', "
                             f"got {auto_offset_reset!r}")
        if group_id is None and partitions is None:
            raise ValueError("KafkaSource needs group_id (consumer group) or partitions "
                             "(explicit assignment)")
        self._topics = [topics] if isinstance(topics, str) else list(topics)
        if partitions is not None:
            self._assignment()  # check the names now
        self._consumer: KafkaConsumer | None = None
        self._positions: dict[TopicPartition, int] = {}  # next offset to read, where known
        self._ends: dict[TopicPartition, int] = {}  # end offsets when first seen (stop_at_end)
        self._behind: dict[TopicPartition, float] = {}  # since when position > end offset
        self._on_assign: Callable[[list[str]], Mapping[str, int] | None] | None = None
        self._on_revoke: Callable[[list[str]], None] | None = None

    def set_rebalance_callbacks(
        self,
        on_assign: Callable[[list[str]], Mapping[str, int] | None] | None = None,
        on_revoke: Callable[[list[str]], None] | None = None,
    ) -> None:
        """Hooks for scale-out workers, called inside :meth:`poll` with stream names.

        ``on_revoke(streams)`` runs before partitions go to another member (a
        worker checkpoints them there); ``on_assign(streams)`` runs when
        partitions arrive (also for an explicit assignment, on connect) and may
        return their positions, which win over the ones known here. An
        exception in either ends :meth:`poll` with a ``KafkaError``.
        """
        self._on_assign, self._on_revoke = on_assign, on_revoke

    def _assigned(self, tps: Iterable[TopicPartition]) -> None:
        """Ask ``on_assign`` for positions of newly assigned partitions, then place them."""
        tps = list(tps)
        if self._on_assign is not None and tps:
            known = self._on_assign(sorted(stream_of(tp) for tp in tps))
            for stream, offset in (known or {}).items():
                self._positions[partition_of(stream)] = int(offset)
        self._place(tps)

    def _assignment(self) -> list[TopicPartition]:
        assert self.partitions is not None
        tps = []
        for p in self.partitions:
            if isinstance(p, str):
                tps.append(partition_of(p))
            else:
                tps.extend(TopicPartition(topic, int(p)) for topic in self._topics)
        return tps

    def _connect(self) -> KafkaConsumer:
        if self._consumer is None:
            settings = {**CONSUMER_DEFAULTS, "auto_offset_reset": self.auto_offset_reset,
                        "group_id": self.group_id, **dict(self.client_settings or {})}
            consumer = KafkaConsumer(bootstrap_servers=self.bootstrap_servers, **settings)
            self._consumer = consumer
            if self.partitions is None:
                consumer.subscribe(self._topics, listener=_Listener(self))
            else:
                tps = self._assignment()
                consumer.assign(tps)
                self._assigned(tps)
        return self._consumer

    def _place(self, tps: Iterable[TopicPartition]) -> None:
        """Move newly assigned partitions to their known position, else per reset policy."""
        assert self._consumer is not None
        unknown = []
        for tp in tps:
            if tp in self._positions:
                self._consumer.seek(tp, self._positions[tp])
            else:
                unknown.append(tp)
        if unknown and self.auto_offset_reset == "earliest":
            self._consumer.seek_to_beginning(*unknown)
        elif unknown:
            self._consumer.seek_to_end(*unknown)

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        """Up to ``max_records`` records; ``[]`` also while the broker is away.

        kafka-python's ``poll`` mostly returns nothing while it cannot reach the
        broker, but now and then raises a retriable error (a failed coordinator or
        metadata refresh); that is an empty poll too, after waiting ``timeout``.
        A session timeout the broker refuses raises :class:`SourceError`.
        """
        consumer = self._connect()
        try:
            fetched = consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        except InvalidSessionTimeoutError as exc:
            session = consumer.config["session_timeout_ms"]
            raise SourceError(
                f"the broker refused the consumer group session timeout of {session} ms "
                "(outside its group.min/max.session.timeout.ms; Apache Kafka's minimum is "
                "6000 by default): set source.session_timeout_ms (and heartbeat_interval_ms, "
                "a third of it) within the broker's range"
            ) from exc
        except KafkaError as exc:
            if not exc.retriable:
                raise
            logger.debug("poll failed, retrying: %r", exc)
            time.sleep(timeout)
            return []
        records = []
        for tp, messages in fetched.items():
            stream = stream_of(tp)
            for m in messages:
                records.append(Record(
                    b"" if m.value is None else m.value,
                    (stream, m.offset),
                    key=_decode_key(m.key),
                    event_time=m.timestamp / 1000 if m.timestamp is not None and m.timestamp >= 0
                    else None,
                ))
            if messages:
                self._positions[tp] = messages[-1].offset + 1
        self._check_log(consumer)
        return records

    def _check_log(self, consumer: KafkaConsumer) -> None:
        """Track end offsets from fetch responses; re-read a partition whose log went back.

        End offsets come from the high watermark of fetch responses, not from
        ``end_offsets()``: tansu answers ListOffsets with the base offset of the
        last batch + 1, which is too small for batched topics.
        """
        now = time.monotonic()
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is None:  # no fetch response for it yet
                continue
            self._ends.setdefault(tp, end)
            if tp not in self._positions:
                try:
                    position = consumer.position(tp, timeout_ms=0)
                except KafkaError:
                    position = None
                if position is not None:
                    self._positions[tp] = position
            position = self._positions.get(tp)
            if position is None or position <= end:
                self._behind.pop(tp, None)
            elif now - self._behind.setdefault(tp, now) >= LOG_CHECK_INTERVAL:
                logger.warning("%s: the broker's log ends at %d, behind this source's position %d "
                               "(broker restarted without its data?); reading it from the start",
                               stream_of(tp), end, position)
                del self._positions[tp], self._behind[tp], self._ends[tp]
                consumer.seek_to_beginning(tp)

    @property
    def exhausted(self) -> bool:
        if not self.stop_at_end or self._consumer is None:
            return False
        assigned = self._consumer.assignment()
        return bool(assigned) and all(
            tp in self._ends and self._positions.get(tp, -1) >= self._ends[tp] for tp in assigned
        )

    def lag(self) -> dict[str, int]:
        """Records behind the end of each assigned partition, where known.

        The end is the high watermark of the last fetch response, not
        ``end_offsets()`` (which tansu's s3 engine answers wrongly); a partition
        not fetched from yet is left out.
        """
        if self._consumer is None:
            return {}
        lags = {}
        for tp in self._consumer.assignment():
            end, position = self._consumer.highwater(tp), self._positions.get(tp)
            if end is not None and position is not None:
                lags[stream_of(tp)] = max(0, end - position)
        return lags

    def seek(self, positions: Mapping[str, int]) -> None:
        self._positions = {
            tp: offset for tp, offset in ((partition_of(s), o) for s, o in positions.items())
            if tp.topic in self._topics
        }
        self._behind = {}
        if self._consumer is not None:
            self._place(self._consumer.assignment())

    def commit(self, positions: Mapping[str, int]) -> None:
        """Commit group offsets (for lag monitoring); failures are logged, not raised."""
        if self.group_id is None or self._consumer is None:
            return
        offsets = {partition_of(s): OffsetAndMetadata(o, "", -1) for s, o in positions.items()}
        try:
            self._consumer.commit(offsets, timeout_ms=5000)
        except KafkaError as exc:
            logger.warning("commit of group offsets failed (used for lag monitoring only): %s", exc)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
            self._consumer = None


class _Listener(ConsumerRebalanceListener):
    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    def on_partitions_revoked(self, revoked: Any) -> None:
        # positions are tracked as records are delivered
        if self.source._on_revoke is not None and revoked:
            self.source._on_revoke(sorted(stream_of(tp) for tp in revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.source._assigned(assigned)


def _decode_key(key: bytes | None) -> bytes | str | None:
    if key is None:
        return None
    try:
        return key.decode()
    except UnicodeDecodeError:
        return key
