"""Kafka error paths: an unreachable broker, and a broker that restarts without its data."""

import json
import logging
import socket
import time

import pytest

from streamal.connectors import DeliveryError, KafkaSink, KafkaSource, create_topic

pytestmark = pytest.mark.kafka

FAST_FAIL = {  # give up on an absent broker within about a second
    "bootstrap_timeout_ms": 500,
    "max_block_ms": 500,
    "request_timeout_ms": 500,
    "delivery_timeout_ms": 1000,
}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_until(source, count, deadline):
    records, stop = [], time.monotonic() + deadline
    while len(records) < count and time.monotonic() < stop:
        records.extend(source.poll(max_records=100, timeout=0.2))
    return records


def test_flush_raises_when_the_broker_is_unreachable(caplog):
    bootstrap = f"127.0.0.1:{closed_port()}"
    sink = KafkaSink("nowhere", bootstrap, client_settings=FAST_FAIL, retries=1,
                     retry_backoff=0.05)
    start = time.monotonic()
    for i in range(3):
        sink.add({"i": i})
    with caplog.at_level(logging.WARNING, logger="streamal.connectors.kafka_sink"):
        with pytest.raises(DeliveryError, match=r"3 records to topic 'nowhere' .* not delivered"):
            sink.flush()
    assert time.monotonic() - start < 20
    assert len([m for m in caplog.messages if "re-sending" in m]) == 1


def test_sink_and_sources_recover_from_a_broker_restart(local_broker, unique_name, caplog):
    bootstrap = local_broker.start()
    topic = unique_name
    create_topic(bootstrap, topic, partitions=4)
    # idempotent on purpose (not the default): a restart kills such a producer for good
    sink = KafkaSink(topic, bootstrap, retry_backoff=0.2,
                     client_settings={"enable_idempotence": True})
    assigned = KafkaSource(topic, bootstrap, partitions=[0, 1, 2, 3])
    grouped = KafkaSource(topic, bootstrap, group_id=unique_name)
    for i in range(40):
        sink.add({"i": i, "life": 1}, key=f"k{i}")
    sink.flush()
    assert len(read_until(assigned, 40, deadline=10)) == 40
    assert len(read_until(grouped, 40, deadline=10)) == 40

    local_broker.kill()
    local_broker.start(port=local_broker.port)  # same address, empty log
    create_topic(bootstrap, topic, partitions=4)
    with caplog.at_level(logging.WARNING, logger="streamal.connectors"):
        for i in range(8):  # fewer than before: the new logs stay behind the old positions
            sink.add({"i": i, "life": 2}, key=f"k{i}")
        sink.flush()
        after = {}
        for name, source in (("assigned", assigned), ("grouped", grouped)):
            after[name] = read_until(source, 8, deadline=15)
    sink.close()
    assigned.close()
    grouped.close()

    for name, records in after.items():
        got = sorted((json.loads(r.value)["life"], json.loads(r.value)["i"]) for r in records)
        assert got == [(2, i) for i in range(8)], name
    assert any("re-sending them with a new producer" in m for m in caplog.messages)
    assert any("reading it from the start" in m for m in caplog.messages)
