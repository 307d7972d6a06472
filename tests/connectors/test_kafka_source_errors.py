"""KafkaSource turns a broker's refusal of its settings into one clear error."""

from __future__ import annotations

import pytest
from kafka.errors import InvalidSessionTimeoutError, NodeNotReadyError

from streamal.connectors import KafkaSource, SourceError


class RefusingConsumer:
    """Stands in for a consumer whose broker answers JoinGroup with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.config = {"session_timeout_ms": 3000}
        self.error = error

    def poll(self, timeout_ms: int, max_records: int) -> dict:
        raise self.error


def source_with(consumer: RefusingConsumer, monkeypatch: pytest.MonkeyPatch) -> KafkaSource:
    source = KafkaSource(topics="t", bootstrap_servers="127.0.0.1:1", group_id="g")
    monkeypatch.setattr(source, "_connect", lambda: consumer)
    return source


def test_a_refused_session_timeout_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # Apache Kafka refuses sessions below group.min.session.timeout.ms (6000 by default)
    source = source_with(RefusingConsumer(InvalidSessionTimeoutError()), monkeypatch)
    with pytest.raises(SourceError, match=r"timeout of 3000 ms.*source\.session_timeout_ms"):
        source.poll(10, 0.01)


def test_a_retriable_error_is_still_an_empty_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    source = source_with(RefusingConsumer(NodeNotReadyError()), monkeypatch)
    assert source.poll(10, 0.01) == []
