"""Kafka sink: JSON records to one topic, delivery confirmed on flush."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from .base import DeliveryError, Sink, encode_json

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

    Every :meth:`add` is sent at once (batched by the producer); the sink keeps
    the records sent since the last flush. :meth:`flush` waits for all of
    them. Records that failed (for instance with ``UnknownProducerIdError``
    after a broker restart, which kills an idempotent producer for good) are
    sent again with a new producer, up to ``retries`` times with a doubling
    backoff; then :class:`DeliveryError` is raised. Delivery is at least once:
    a record may be written twice, readers drop duplicates by id.

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
        self._producer: KafkaProducer | None = None
        self._sent: list[tuple[bytes | None, bytes, Any]] = []  # (key, value, future or error)
        self._broken: KafkaError | None = None  # why the last producer could not send

    def add(self, record: Mapping[str, Any], key: str | None = None) -> None:
        self.add_many((record,), (key,))

    def add_many(self, records: Sequence[Mapping[str, Any]],
                 keys: Sequence[str | None]) -> None:
        sent = self._sent
        for record, key in zip(records, keys, strict=True):
            value = encode_json(record)
            key_bytes = None if key is None else key.encode()
            if self._broken is not None:  # no producer since the last flush: flush retries
                sent.append((key_bytes, value, self._broken))
            else:
                sent.append((key_bytes, value, self._send(key_bytes, value)))

    def _send(self, key: bytes | None, value: bytes) -> Any:
        """Send one record; return its future, or the error if it could not be sent."""
        try:
            if self._producer is None:
                settings = {**PRODUCER_DEFAULTS, **dict(self.client_settings or {})}
                self._producer = KafkaProducer(bootstrap_servers=self.bootstrap_servers,
                                               **settings)
            return self._producer.send(self.topic, value=value, key=key)
        except KafkaError as exc:
            self._drop_producer()
            self._broken = exc
            return exc

    def flush(self) -> None:
        for attempt in range(self.retries + 1):
            if self._producer is not None:
                try:
                    self._producer.flush()
                except KafkaError as exc:
                    logger.debug("producer flush failed: %s", exc)
            failed = [(k, v, e) for k, v, sent in self._sent if (e := _error(sent)) is not None]
            if not failed:
                self._sent = []
                return
            if attempt == self.retries:
                break
            if attempt == 0:
                logger.warning("%d of %d records to topic %r were not delivered (%r); "
                               "re-sending them with a new producer",
                               len(failed), len(self._sent), self.topic, failed[0][2])
            self._drop_producer()
            time.sleep(self.retry_backoff * 2**attempt)
            self._broken = None
            self._sent = [(k, v, self._broken or self._send(k, v)) for k, v, _ in failed]
        error = failed[0][2]
        raise DeliveryError(
            f"{len(failed)} records to topic {self.topic!r} at {self.bootstrap_servers} were not "
            f"delivered after {self.retries} retries: {error!r}"
        ) from error

    def _drop_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except KafkaError as exc:
                logger.debug("closing a failed producer: %s", exc)
            self._producer = None

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._drop_producer()


def _error(sent: Any) -> BaseException | None:
    """The failure of a send: its error, the future's exception, or None if delivered."""
    if isinstance(sent, BaseException):
        return sent
    if not sent.is_done:
        return KafkaError("delivery not confirmed by the broker")
    error: BaseException | None = sent.exception if sent.failed() else None
    return error
