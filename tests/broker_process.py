"""A tansu broker from ``tools/kafka-broker`` that a test or a benchmark may start, kill and
restart (used by ``tests/conftest.py``, ``tests/reliability`` and ``bench/``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BROKER_TOOL = Path(__file__).resolve().parents[1] / "tools" / "kafka-broker"


class BrokerProcess:
    """One broker in its own ``directory``, on the ``storage`` engine of the tool.

    With ``storage="s3"`` its data lives in a moto S3 server that outlives the
    broker, so a restart on the same port brings the same topics and records
    back; with ``"memory"`` a restart starts with an empty log.
    """

    def __init__(self, directory: Path, storage: str = "memory") -> None:
        self.directory = Path(directory)
        self.storage = storage
        self.bootstrap: str | None = None

    def _tool(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(BROKER_TOOL), *args, "--dir", str(self.directory)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    def start(self, port: int | None = None) -> str:
        """Start on ``port`` (default: the previous start's port, else a free one) and
        return the bootstrap address; ``RuntimeError`` with the tool's message if not."""
        if port is None and self.bootstrap is not None:
            port = self.port
        result = self._tool("start", "--storage", self.storage,
                            *(["--port", str(port)] if port else []))
        if result.returncode != 0:
            raise RuntimeError(f"the Kafka broker did not start (exit {result.returncode}): "
                               f"{result.stderr.strip()}")
        self.bootstrap = result.stdout.strip()
        return self.bootstrap

    @property
    def port(self) -> int:
        assert self.bootstrap is not None, "broker not started"
        return int(self.bootstrap.rsplit(":", 1)[1])

    def kill(self) -> None:
        """SIGKILL the broker (not an S3 server), as a crash would; wait until it is gone."""
        pid = int((self.directory / "broker.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        self._tool("stop")


def start_or_fail(broker: BrokerProcess) -> str:
    """Start ``broker`` from a pytest fixture: fail the test (never skip) if it cannot start."""
    import pytest

    try:
        return broker.start()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)


def _running(pid: int) -> bool:
    try:  # a killed process that is not reaped yet has an empty command line
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False
