"""Sources and sinks: where records come from and where outputs go.

Every source yields :class:`Record` objects with a resumable position; every
sink buffers JSON records until :meth:`Sink.flush`. The learning library never
imports this package; the runtime joins a source, a model and sinks.
"""

from .base import (
    DeliveryError,
    Position,
    Record,
    Sink,
    Source,
    SourceError,
    encode_json,
    next_positions,
)
from .files import FileSink, FileSource
from .kafka import KafkaSink, KafkaSource, create_topic
from .memory import MemorySink, MemorySource

__all__ = [
    "DeliveryError",
    "FileSink",
    "FileSource",
    "KafkaSink",
    "KafkaSource",
    "MemorySink",
    "MemorySource",
    "Position",
    "Record",
    "Sink",
    "Source",
    "SourceError",
    "create_topic",
    "encode_json",
    "next_positions",
]
