"""KafkaSource, KafkaSink and create_topic against the real broker of the session."""

import time

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from streamal.connectors import KafkaSink, KafkaSource, create_topic, next_positions
from streamal.connectors.kafka import partition_of

pytestmark = pytest.mark.kafka

N = 200
PARTITIONS = [0, 1, 2, 3]


@pytest.fixture
def topic(kafka_bootstrap, unique_name):
    assert create_topic(kafka_bootstrap, unique_name, partitions=4)
    return unique_name


@pytest.fixture
def filled(kafka_bootstrap, topic):
    """The topic holding records {"i": 0..N-1}, keyed "k<i>"."""
    with KafkaSink(topic, kafka_bootstrap) as sink:
        for i in range(N):
            sink.add({"i": i}, key=f"k{i}")
    return topic


def read_until(source, done, deadline=20.0, max_records=50):
    records, stop = [], time.monotonic() + deadline
    while not done(records) and time.monotonic() < stop:
        records.extend(source.poll(max_records=max_records, timeout=0.2))
    return records


def values(records):
    import json

    return sorted(json.loads(r.value)["i"] for r in records)


def test_create_topic_is_idempotent(kafka_bootstrap, unique_name):
    assert create_topic(kafka_bootstrap, unique_name, partitions=2) is True
    assert create_topic(kafka_bootstrap, unique_name, partitions=2) is False


def test_assign_mode_reads_everything_then_is_exhausted(kafka_bootstrap, filled):
    before = time.time()
    with KafkaSource(filled, kafka_bootstrap, partitions=PARTITIONS, stop_at_end=True) as source:
        assert not source.exhausted
        records = read_until(source, lambda _: source.exhausted)
        assert source.exhausted
        assert source.poll(10, 0.2) == []
    assert values(records) == list(range(N))
    streams = {r.position[0] for r in records}
    assert streams == {f"{filled}:{p}" for p in PARTITIONS}  # keys spread over partitions
    for stream in streams:  # each partition is read in order from offset 0
        offsets = [r.position[1] for r in records if r.position[0] == stream]
        assert offsets == list(range(len(offsets)))
    assert {r.id for r in records} == {f"{s}@{o}" for s, o in (r.position for r in records)}
    assert all(isinstance(r.key, str) and r.key.startswith("k") for r in records)
    assert all(before - 60 < r.event_time < time.time() + 60 for r in records)


def test_sink_puts_keyed_records_where_kafka_pythons_partitioner_would(kafka_bootstrap, filled,
                                                                        unique_name):
    plain = unique_name + "-plain"  # the same keys through a plain kafka-python producer
    create_topic(kafka_bootstrap, plain, partitions=4)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(N):
        producer.send(plain, value=b"{}", key=f"k{i}".encode())
    producer.flush()
    producer.close()
    placed = {}
    for topic in (filled, plain):
        with KafkaSource(topic, kafka_bootstrap, partitions=PARTITIONS, stop_at_end=True) as source:
            records = read_until(source, lambda _: source.exhausted)
        placed[topic] = {r.key: partition_of(r.position[0]).partition for r in records}
    assert len(placed[filled]) == N and placed[filled] == placed[plain]


def test_group_mode_reads_everything_and_commits_offsets(kafka_bootstrap, filled, unique_name):
    group = unique_name + "-g"
    with KafkaSource(filled, kafka_bootstrap, group_id=group, stop_at_end=True) as source:
        records = read_until(source, lambda _: source.exhausted)
        assert values(records) == list(range(N))
        positions = next_positions(records)
        source.commit(positions)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        committed = admin.list_group_offsets(group)[group]
    finally:
        admin.close()
    assert {f"{tp.topic}:{tp.partition}": o.offset for tp, o in committed.items()} == positions


def test_seek_resumes_exactly_in_assign_mode(kafka_bootstrap, filled):
    with KafkaSource(filled, kafka_bootstrap, partitions=PARTITIONS) as first:
        head = read_until(first, lambda r: len(r) >= 60, max_records=30)
    with KafkaSource(filled, kafka_bootstrap, partitions=PARTITIONS, stop_at_end=True) as source:
        source.seek(next_positions(head))
        tail = read_until(source, lambda _: source.exhausted)
    assert sorted(r.id for r in head + tail) == sorted({r.id for r in head + tail})
    assert values(head + tail) == list(range(N))


def test_seek_applies_when_the_group_assigns_partitions(kafka_bootstrap, filled, unique_name):
    source = KafkaSource(filled, kafka_bootstrap, group_id=unique_name, stop_at_end=True)
    positions = {f"{filled}:{p}": 5 for p in PARTITIONS}
    positions["another-topic:0"] = 3  # positions of other topics are ignored
    source.seek(positions)
    with source:
        records = read_until(source, lambda _: source.exhausted)
    assert len(records) == N - 5 * len(PARTITIONS)
    assert min(r.position[1] for r in records) == 5


def test_latest_reads_only_new_records(kafka_bootstrap, topic):
    # tansu answers "latest" with the last batch's base offset + 1: a batch of one record
    # at the end of each partition keeps that exact for this test
    with KafkaSink(topic, kafka_bootstrap) as sink:
        for i in range(8):
            sink.add({"i": i}, key=f"k{i}")
    with KafkaSink(topic, kafka_bootstrap) as sink:
        for p in PARTITIONS:
            sink.add({"i": 8 + p}, key=f"k{p}")
            sink.flush()
    with KafkaSource(topic, kafka_bootstrap, partitions=[f"{topic}:{p}" for p in PARTITIONS],
                     auto_offset_reset="latest") as source:
        assert source.poll(100, 0.5) == []
        with KafkaSink(topic, kafka_bootstrap) as sink:
            sink.add({"i": N})
        records = read_until(source, lambda r: len(r) >= 1)
    assert values(records) == [N]


def test_empty_topic_is_exhausted_at_once_with_stop_at_end(kafka_bootstrap, topic):
    with KafkaSource(topic, kafka_bootstrap, partitions=PARTITIONS, stop_at_end=True) as source:
        assert read_until(source, lambda _: source.exhausted, deadline=10) == []
        assert source.exhausted


def test_raw_values_null_values_and_binary_keys(kafka_bootstrap, topic):
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    producer.send(topic, value=b"\xffnot json", key=b"\xfe\xff", partition=0)
    producer.send(topic, value=None, key=b"gone", partition=0)
    producer.flush()
    producer.close()
    with KafkaSource(topic, kafka_bootstrap, partitions=[0]) as source:
        records = read_until(source, lambda r: len(r) >= 2)
    assert [(r.value, r.key) for r in records] == [(b"\xffnot json", b"\xfe\xff"), (b"", "gone")]


def test_options_are_checked(kafka_bootstrap):
    with pytest.raises(ValueError, match="group_id"):
        KafkaSource("t", kafka_bootstrap)
    with pytest.raises(ValueError, match="auto_offset_reset"):
        KafkaSource("t", kafka_bootstrap, group_id="g", auto_offset_reset="none")
    with pytest.raises(ValueError, match="topic:partition"):
        KafkaSource("t", kafka_bootstrap, partitions=["t-0"])
    with pytest.raises(ValueError, match="topic:partition"):
        KafkaSource("t", kafka_bootstrap, partitions=[0]).seek({"t-0": 1})
