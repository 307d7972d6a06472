"""Fixtures of the reliability tests: a broker whose data survives kills, one torch thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from broker_process import BrokerProcess, start_or_fail


@pytest.fixture
def s3_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A started tansu broker on the s3 engine (a local moto server): kill it, restart it."""
    broker = BrokerProcess(tmp_path_factory.mktemp("s3-broker"), storage="s3")
    start_or_fail(broker)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny micro-batches run faster on one thread, and much faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
