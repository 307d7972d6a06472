"""Kafka connectors (kafka-python 3): source, sink and a topic helper.

Measured client defaults for tansu live in :mod:`.kafka_source` and
:mod:`.kafka_sink`; ``client_settings`` passes anything else (SASL, SSL,
timeouts) through to kafka-python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from .kafka_sink import PRODUCER_DEFAULTS, KafkaSink
from .kafka_source import CONSUMER_DEFAULTS, KafkaSource, partition_of, stream_of

__all__ = [
    "CONSUMER_DEFAULTS",
    "PRODUCER_DEFAULTS",
    "KafkaSink",
    "KafkaSource",
    "create_topic",
    "partition_of",
    "stream_of",
]


def create_topic(
    bootstrap_servers: str | Sequence[str],
    name: str,
    partitions: int = 1,
    client_settings: Mapping[str, Any] | None = None,
) -> bool:
    """Create topic ``name`` with ``partitions`` partitions (replication 1).

    Returns True if it was created, False if it already existed (its partition
    count is then left as it is).
    """
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, **dict(client_settings or {}))
    try:
        admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1}})
        return True
    except TopicAlreadyExistsError:
        return False
    finally:
        admin.close()
