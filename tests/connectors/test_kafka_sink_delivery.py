"""KafkaSink's placement of keyed records and its delivery bookkeeping, on a stand-in producer.

The stand-in decides per record whether its send is acknowledged at once, fails, or stays
unconfirmed until the producer's flush; the tests against the real broker are in
``test_kafka_connector.py`` and ``test_kafka_faults.py``.
"""

import gc
import json
import logging
import weakref

import pytest
from kafka.errors import KafkaError

from streamal.connectors import DeliveryError, KafkaSink
from streamal.connectors import kafka_sink as kafka_sink_module
from streamal.connectors.kafka_partitions import default_partition

PARTITIONS = {0, 1, 2, 3}


class Future:
    def __init__(self) -> None:
        self.is_done = False
        self.exception: BaseException | None = None

    def failed(self) -> bool:
        return self.is_done and self.exception is not None


class Producer:
    """Records what is sent; ``outcome(i)`` of a record's ``"i"`` decides its fate:
    ``"ok"`` (acknowledged at once), ``"fail"`` (failed at once), ``"later"``
    (acknowledged by the producer's flush) or ``"never"`` (not confirmed at all)."""

    made: list["Producer"] = []
    outcome = staticmethod(lambda i: "ok")

    def __init__(self, bootstrap_servers, **settings) -> None:
        self.settings = settings
        self.sent: list[tuple[bytes | None, dict, int | None]] = []
        self.futures: list[weakref.ref] = []  # held weakly: the sink decides what lives
        self.later: list[Future] = []
        self.closed = False
        Producer.made.append(self)

    def partitions_for(self, topic: str) -> set[int]:
        return set(PARTITIONS)

    def send(self, topic, value=None, key=None, partition=None) -> Future:
        record = json.loads(value)
        self.sent.append((key, record, partition))
        future = Future()
        fate = self.outcome(record["i"])
        if fate == "later":
            self.later.append(future)
        elif fate != "never":
            future.is_done = True
            future.exception = KafkaError("lost") if fate == "fail" else None
        self.futures.append(weakref.ref(future))
        return future

    def flush(self) -> None:
        for future in self.later:
            future.is_done = True
        self.later = []

    def close(self, timeout=None) -> None:
        self.closed = True


@pytest.fixture
def servers(unique_name):
    """Bootstrap servers of this test alone: sinks share producers by servers and settings."""
    return f"{unique_name}:9092"


@pytest.fixture
def producers(monkeypatch):
    monkeypatch.setattr(kafka_sink_module, "KafkaProducer", Producer)
    monkeypatch.setattr(Producer, "made", [])
    monkeypatch.setattr(Producer, "outcome", staticmethod(lambda i: "ok"))
    return Producer


def test_keyed_records_go_where_the_default_partitioner_puts_them(producers, servers):
    sink = KafkaSink("t", servers)
    keys = [f"sensor-{i % 37}" for i in range(300)] + [None, "é"]
    sink.add_many([{"i": i} for i in range(len(keys))], keys)
    sink.flush()
    (producer,) = producers.made
    assert [r["i"] for _, r, _ in producer.sent] == list(range(len(keys)))
    for (key_bytes, _, partition), key in zip(producer.sent, keys, strict=True):
        if key is None:
            assert (key_bytes, partition) == (None, None)  # the producer picks
        else:
            assert key_bytes == key.encode()
            assert partition == default_partition(key.encode(), PARTITIONS)


def test_an_own_partitioner_or_key_serializer_places_the_records(producers, servers):
    for setting in ("partitioner", "key_serializer"):
        sink = KafkaSink("t", servers, client_settings={setting: object()})
        sink.add({"i": 0}, key="s1")
        assert producers.made[-1].sent == [(b"s1", {"i": 0}, None)]


def test_acknowledged_records_are_let_go_before_the_flush(producers, servers):
    sink = KafkaSink("t", servers)
    for start in range(0, 1000, 100):
        sink.add_many([{"i": i} for i in range(start, start + 100)], ["k"] * 100)
    gc.collect()
    (producer,) = producers.made
    assert len(producer.futures) == 1000
    assert all(ref() is None for ref in producer.futures)  # the sink holds none of them
    sink.flush()


def test_a_flush_sends_again_exactly_the_failed_and_unconfirmed_records(producers, servers,
                                                                       caplog):
    fates = {0: "fail", 3: "fail", 4: "later", 7: "fail"}
    producers.outcome = staticmethod(lambda i: fates.get(i, "ok"))
    sink = KafkaSink("t", servers, retry_backoff=0.0)
    sink.add_many([{"i": i} for i in range(10)], [f"k{i}" for i in range(10)])
    first = producers.made[0]
    first.flush = lambda: None  # record 4 stays unconfirmed
    producers.outcome = staticmethod(lambda i: "ok")
    with caplog.at_level(logging.WARNING, logger="streamal.connectors.kafka_sink"):
        sink.flush()
    assert first.closed
    again = producers.made[1].sent
    assert [r["i"] for _, r, _ in again] == [0, 3, 4, 7]
    assert all(p == default_partition(k, PARTITIONS) for k, _, p in again)
    assert any("4 of 10 records" in m for m in caplog.messages)
    sink.flush()  # nothing left to send
    assert len(producers.made) == 2 and len(producers.made[1].sent) == 4


def test_records_that_keep_failing_raise_and_are_kept_for_the_next_flush(producers, servers):
    producers.outcome = staticmethod(lambda i: "fail" if i % 2 else "ok")
    sink = KafkaSink("t", servers, retries=2, retry_backoff=0.0)
    sink.add_many([{"i": i} for i in range(6)], [None] * 6)
    with pytest.raises(DeliveryError, match=r"3 records to topic 't' .* after 2 retries"):
        sink.flush()
    assert [[r["i"] for _, r, _ in p.sent] for p in producers.made] == [
        [0, 1, 2, 3, 4, 5], [1, 3, 5], [1, 3, 5]]
    producers.outcome = staticmethod(lambda i: "ok")
    sink.flush()  # the broker is back: the kept records go now
    assert [r["i"] for _, r, _ in producers.made[-1].sent] == [1, 3, 5]
    sink.flush()
    assert len(producers.made[-1].sent) == 3


def test_a_producer_that_cannot_be_made_fails_the_records_until_a_flush(producers, servers,
                                                                       monkeypatch):
    def refuse(*args, **kwargs):
        raise KafkaError("no broker")

    monkeypatch.setattr(kafka_sink_module, "KafkaProducer", refuse)
    sink = KafkaSink("t", servers, retry_backoff=0.0)
    sink.add_many([{"i": 0}, {"i": 1}], ["a", "b"])
    sink.add({"i": 2}, key="c")
    monkeypatch.setattr(kafka_sink_module, "KafkaProducer", Producer)
    sink.flush()
    (producer,) = producers.made
    assert [(k, r["i"]) for k, r, _ in producer.sent] == [(b"a", 0), (b"b", 1), (b"c", 2)]


def test_sinks_with_the_same_servers_and_settings_share_one_producer(producers, servers):
    scores, alerts = KafkaSink("scores", servers), KafkaSink("alerts", servers)
    other = KafkaSink("scores", servers, client_settings={"linger_ms": 5})
    scores.add({"i": 0}, key="a")
    alerts.add({"i": 1}, key="a")
    other.add({"i": 2}, key="a")
    assert len(producers.made) == 2
    shared, own = producers.made
    assert [r["i"] for _, r, _ in shared.sent] == [0, 1] and own.settings["linger_ms"] == 5
    scores.close()  # alerts still uses it
    assert not shared.closed
    alerts.close()
    assert shared.closed and not own.closed
    other.close()
    assert own.closed


def test_a_failure_seen_by_one_sink_replaces_the_producer_of_both(producers, servers):
    producers.outcome = staticmethod(lambda i: "fail" if i == 0 else "never")
    scores = KafkaSink("scores", servers, retry_backoff=0.0)
    alerts = KafkaSink("alerts", servers, retry_backoff=0.0)
    scores.add({"i": 0})
    alerts.add({"i": 1})
    producers.outcome = staticmethod(lambda i: "ok")
    scores.flush()  # record 0 failed: the producer is discarded, record 0 sent again
    first, second = producers.made
    assert first.closed and [r["i"] for _, r, _ in second.sent] == [0]
    alerts.flush()  # record 1 was never confirmed by the discarded producer: sent again
    assert [r["i"] for _, r, _ in second.sent] == [0, 1] and len(producers.made) == 2
