"""Kafka sink: JSON records to one topic, delivery confirmed on flush."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from .base import DeliveryError, Sink, encode_json
from .kafka_partitions import KeyPartitions
from .kafka_producers import shared_producer

__all__ = ["PRODUCER_DEFAULTS", "KafkaSink"]

logger = logging.getLogger(__name__)

PRODUCER_DEFAULTS: dict[str, Any] = {"acks": "all", "linger_ms": 20, "batch_size": 262144,
                                     "enable_idempotence": False}
"""Measured on tansu. Idempotence is off: after a broker restart on its s3 engine, tansu
answers a retried batch it did not keep with DUPLICATE_SEQUENCE_NUMBER, which kafka-python
takes for success, so the records were lost without an error (up to 82 of 20 100 outputs in
runs with two restarts; see "Reliability" in ``BENCHMARKS.md``). Without idempotence a lost batch
fails its futures and :meth:`KafkaSink.flush` sends it again: at least once, never silently
lost (outputs carry ids for readers to drop duplicates)."""


class KafkaSink(Sink):
    """Send JSON records to one topic; :meth:`flush` confirms every delivery.

    Every :meth:`add` is sent at once (batched by the producer). The sink
    keeps each record until the broker has acknowledged it, and those that
    failed until :meth:`flush`, which waits for the rest. Records that failed
    (for instance with ``UnknownProducerIdError`` after a broker restart,
    which kills an idempotent producer for good) are sent again with a new
    producer, up to ``retries`` times with a doubling backoff; then
    :class:`DeliveryError` is raised. Delivery is at least once: a record may
    be written twice, readers drop duplicates by id.

    A keyed record goes to the partition kafka-python's default partitioner
    would pick (remembered per key, see :mod:`.kafka_partitions`), unless
    ``client_settings`` name their own ``partitioner`` or ``key_serializer``.
    Sinks with the same bootstrap servers and settings share one producer
    (see :mod:`.kafka_producers`): a failure seen by one of them replaces it
    for all, and each sends its own failed records again at its flush.

    While the broker is away, a flush waits: each try lasts up to the
    producer's ``delivery_timeout_ms`` (two minutes by default), and the first
    :meth:`add` of a new sink waits up to ``max_block_ms`` for the topic's
    metadata. Lower both in ``client_settings`` to fail sooner.

    Parameters
    ----------
    topic
        Destination topic.
    bootstrap_servers
        ``"host:port"`` or a list of them.
    client_settings
        Extra ``KafkaProducer`` settings.
    retries
        How many times a flush replaces the producer and re-sends failed records.
    retry_backoff
        Seconds before the first retry; doubled for each further one.

    """

    def __init__(
        self,
        topic: str,
        bootstrap_servers: str | Sequence[str],
        client_settings: Mapping[str, Any] | None = None,
        retries: int = 5,
        retry_backoff: float = 0.5,
    ) -> None:
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self.client_settings = client_settings
        self.retries = retries
        self.retry_backoff = retry_backoff
        own = {"partitioner", "key_serializer"} & set(client_settings or {})
        self._keys = None if own else KeyPartitions()
        self._settings = {**PRODUCER_DEFAULTS, **dict(client_settings or {})}
        self._shared = shared_producer(bootstrap_servers, self._settings)
        self._shared.join(self)
        self._producer: KafkaProducer | None = None  # the shared producer, as last used
        self._sent: deque[tuple[str | None, bytes, Any]] = deque()  # (key, value, future)
        self._failed: list[tuple[str | None, bytes, BaseException]] = []  # to send again
        self._added = 0  # records added since the last flush
        self._broken: KafkaError | None = None  # why the last producer could not send

    def add(self, record: Mapping[str, Any], key: str | None = None) -> None:
        self.add_many((record,), (key,))

    def add_many(self, records: Sequence[Mapping[str, Any]],
                 keys: Sequence[str | None]) -> None:
        self._added += len(records)
        self._send_all([(key, encode_json(record))
                        for record, key in zip(records, keys, strict=True)])

    def _send_all(self, items: Sequence[tuple[str | None, bytes]]) -> None:
        """Send ``(key, value)`` items; keep each until it is known to be delivered."""
        producer = self._ready()
        sent, failed, topic = self._sent, self._failed, self.topic
        place = self._keys.place if self._keys is not None else _utf8
        for i, (key, value) in enumerate(items):
            if producer is None:  # no producer since the last flush: flush retries
                assert self._broken is not None
                failed.extend((k, v, self._broken) for k, v in items[i:])
                break
            key_bytes, partition = place(key)
            try:
                sent.append((key, value, producer.send(topic, value=value, key=key_bytes,
                                                       partition=partition)))
            except KafkaError as exc:
                self._break(exc)
                producer = None
                failed.append((key, value, exc))
        while sent and sent[0][2].is_done:  # delivered (or failed) in order: let go
            key, value, future = sent.popleft()
            if future.exception is not None:
                failed.append((key, value, future.exception))

    def _ready(self) -> KafkaProducer | None:
        """The shared producer, made if need be, with the topic's partitions known to the
        key cache; ``None`` (and :attr:`_broken` set) when it cannot send."""
        if self._broken is not None:
            return None
        try:
            self._producer = self._shared.get(self._make_producer)
            if self._keys is not None:
                self._keys.use(self._producer.partitions_for(self.topic))
        except KafkaError as exc:
            self._break(exc)
            return None
        return self._producer

    def _make_producer(self) -> KafkaProducer:
        return KafkaProducer(bootstrap_servers=self.bootstrap_servers, **self._settings)

    def _break(self, error: KafkaError) -> None:
        """The producer cannot send: drop it; records go to :attr:`_failed` until a flush."""
        self._drop_producer()
        self._broken = error

    def flush(self) -> None:
        for attempt in range(self.retries + 1):
            # a producer another sink discarded is closed: its records are settled
            current = self._producer is self._shared.producer
            producer = self._producer if current else None
            if producer is not None:
                try:
                    producer.flush()
                except KafkaError as exc:
                    logger.debug("producer flush failed: %s", exc)
            failed = self._failed + [(k, v, e) for k, v, sent in self._sent
                                     if (e := _error(sent)) is not None]
            self._sent.clear()
            self._failed = []
            if not failed:
                self._added = 0
                return
            if attempt == self.retries:
                break
            if attempt == 0:
                logger.warning("%d of %d records to topic %r were not delivered (%r); "
                               "re-sending them with a new producer",
                               len(failed), self._added, self.topic, failed[0][2])
            self._drop_producer()
            time.sleep(self.retry_backoff * 2**attempt)
            self._broken = None
            self._send_all([(k, v) for k, v, _ in failed])
        self._failed = failed  # kept for a later flush
        error = failed[0][2]
        raise DeliveryError(
            f"{len(failed)} records to topic {self.topic!r} at {self.bootstrap_servers} were not "
            f"delivered after {self.retries} retries: {error!r}"
        ) from error

    def _drop_producer(self) -> None:
        """Discard the producer (for every sink that shares it): it failed."""
        if self._producer is not None:
            self._shared.discard(self._producer)
            self._producer = None

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer = None
            self._shared.leave(self)


def _utf8(key: str | None) -> tuple[bytes | None, None]:
    """``(key as UTF-8, None)``: the producer's partitioner places the record."""
    return None if key is None else key.encode(), None


def _error(sent: Any) -> BaseException | None:
    """The failure of a send: its error, the future's exception, or None if delivered."""
    if isinstance(sent, BaseException):
        return sent
    if not sent.is_done:
        return KafkaError("delivery not confirmed by the broker")
    error: BaseException | None = sent.exception if sent.failed() else None
    return error
