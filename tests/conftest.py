"""Shared pytest fixtures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# --- Kafka broker (tansu via tools/kafka-broker) ------------------------------------------------
# `kafka_bootstrap` is one broker for the whole session: $STREAMAL_KAFKA_BOOTSTRAP if set (CI
# starts one), else a broker started here. It fails, never skips, when no broker can start.
# `local_broker` is a private broker a test may kill and restart; `unique_name` names topics
# and groups so that tests never share them.

BROKER_TOOL = Path(__file__).resolve().parents[1] / "tools" / "kafka-broker"


class LocalBroker:
    """A tansu broker started with ``tools/kafka-broker`` in its own directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.bootstrap: str | None = None

    def _tool(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(BROKER_TOOL), *args, "--dir", str(self.directory)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    def start(self, port: int | None = None) -> str:
        """Start (or restart on ``port``) and return the bootstrap address; fail the test if not."""
        result = self._tool("start", *(["--port", str(port)] if port else []))
        if result.returncode != 0:
            pytest.fail(f"the Kafka broker did not start (exit {result.returncode}):\n"
                        f"{result.stderr.strip()}", pytrace=False)
        self.bootstrap = result.stdout.strip()
        return self.bootstrap

    @property
    def port(self) -> int:
        assert self.bootstrap is not None, "broker not started"
        return int(self.bootstrap.rsplit(":", 1)[1])

    def kill(self) -> None:
        """Kill the broker process at once (SIGKILL), as a crash would."""
        pid = int((self.directory / "broker.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        self._tool("stop")


def _running(pid: int) -> bool:
    try:  # a killed process that is not reaped yet has an empty command line
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of the session's Kafka broker."""
    external = os.environ.get("STREAMAL_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    broker = LocalBroker(tmp_path_factory.mktemp("kafka-broker"))
    try:
        yield broker.start()
    finally:
        broker.stop()


@pytest.fixture
def local_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A private, not yet started broker that the test may kill and restart."""
    broker = LocalBroker(tmp_path_factory.mktemp("private-broker"))
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
