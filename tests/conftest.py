"""Shared pytest fixtures."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from broker_process import BrokerProcess, start_or_fail

# --- Kafka broker (tansu via tools/kafka-broker) ------------------------------------------------
# `kafka_bootstrap` is one broker for the whole session: $STREAMAL_KAFKA_BOOTSTRAP if set (CI
# starts one), else a broker started here. It fails, never skips, when no broker can start.
# `local_broker` is a private broker a test may kill and restart; `unique_name` names topics
# and groups so that tests never share them.

@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of the session's Kafka broker."""
    external = os.environ.get("STREAMAL_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    broker = BrokerProcess(tmp_path_factory.mktemp("kafka-broker"))
    try:
        yield start_or_fail(broker)
    finally:
        broker.stop()


@pytest.fixture
def local_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A private, not yet started broker that the test may kill and restart."""
    broker = BrokerProcess(tmp_path_factory.mktemp("private-broker"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A topic/group name unique to this test run: ``<test name>-<random hex>``."""
    base = "".join(ch if ch.isalnum() else "-" for ch in request.node.name)[:60].strip("-")
    return f"{base}-{uuid.uuid4().hex[:8]}"


# --- torch threads ---------------------------------------------------------------------------
# The networks in tests are small: on a 2-core machine a second torch thread only adds
# contention (learning loops ran 3-50x slower with 2 threads under load).
@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
