"""One kafka-python producer for the Kafka sinks of a process that have the same settings.

A pipeline writes scores, alerts, drift events and dead letters to four topics
of one broker. With a producer each, every sink has its own sender thread and
sends its own requests: a sink with one alert per poll costs a request (about
a millisecond of CPU in kafka-python) per poll. Sinks that share bootstrap
servers and client settings share one producer instead: one thread, and their
batches go to the broker together.

A sink that sees its producer fail discards it for all (the others' records
still in it fail too, and their next flush sends them again, as after any
failure); the next send makes a new one. The producer is closed when the last
sink that uses it is closed.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

__all__ = ["SharedProducer", "shared_producer"]

logger = logging.getLogger(__name__)

_REGISTRY: weakref.WeakValueDictionary[str, SharedProducer] = weakref.WeakValueDictionary()
_REGISTRY_LOCK = threading.Lock()


class SharedProducer:
    """A ``KafkaProducer`` made on first use and shared by the sinks that joined.

    Examples
    --------
    >>> class Sink: ...
    >>> one, two = Sink(), Sink()
    >>> shared = SharedProducer()
    >>> shared.join(one); shared.join(two)
    >>> shared.producer is None  # nothing made before the first send
    True
    >>> shared.leave(one); shared.leave(two)  # the last one out closes it
    """

    def __init__(self) -> None:
        self.producer: KafkaProducer | None = None
        self._users: weakref.WeakSet[Any] = weakref.WeakSet()  # sinks not closed
        self._lock = threading.Lock()

    def join(self, user: object) -> None:
        """Count ``user`` (a sink) among those that use the producer."""
        with self._lock:
            self._users.add(user)

    def leave(self, user: object) -> None:
        """``user`` is done with the producer; the last one to leave closes it."""
        with self._lock:
            self._users.discard(user)
            producer = self.producer if not self._users else None
            if producer is not None:
                self.producer = None
        if producer is not None:
            _close(producer)

    def get(self, make: Callable[[], KafkaProducer]) -> KafkaProducer:
        """The producer, made now by ``make()`` if there is none (which raises what
        kafka-python raises)."""
        with self._lock:
            if self.producer is None:
                self.producer = make()
            return self.producer

    def discard(self, producer: KafkaProducer) -> None:
        """Close ``producer`` because it failed, unless another sink already replaced it."""
        with self._lock:
            if self.producer is not producer:
                return
            self.producer = None
        _close(producer)


def shared_producer(bootstrap_servers: str | Sequence[str],
                    settings: Mapping[str, Any]) -> SharedProducer:
    """The :class:`SharedProducer` of these servers and settings while a sink holds it."""
    key = repr((bootstrap_servers, sorted(settings.items())))
    with _REGISTRY_LOCK:
        shared = _REGISTRY.get(key)
        if shared is None:
            shared = _REGISTRY[key] = SharedProducer()
        return shared


def _close(producer: KafkaProducer) -> None:
    try:
        producer.close(timeout=1)
    except KafkaError as exc:
        logger.debug("closing a producer: %s", exc)
