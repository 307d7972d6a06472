"""The image's entry command, run directly on this machine against the test broker.

``ENTRYPOINT`` + ``CMD`` of deploy/Dockerfile, with the spec path mapped to its source in the
repository (as the image COPYs it), fed by deploy/producer.py. While it runs, the image's
``HEALTHCHECK`` command passes against it; every produced record gets a score; SIGTERM (what
``docker stop`` and Kubernetes send) ends it with exit status 0 after a final checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_manifests import DEPLOY, METRICS_PORT, ROOT, SPEC_IN_IMAGE, copies, entry_command
from test_manifests import instructions as dockerfile_instructions

from streamal.checkpoint import CheckpointError, CheckpointStore
from streamal.connectors import KafkaSource, create_topic

pytestmark = pytest.mark.kafka

N = 1500
KINDS = ("scores", "alerts", "drift", "dead_letter")


def checkpointed(directory: Path) -> int:
    """Records the partition checkpoints under ``directory`` hold, in total."""
    folder = directory / "partitions"
    total = 0
    for prefix in {p.name.rsplit("-", 1)[0] for p in folder.glob("partition-*.parquet")}:
        try:
            found = CheckpointStore(folder, prefix=prefix).load_latest()
        except CheckpointError:
            return 0
        if found is not None:
            total += sum(found[1]["positions"].values())
    return total


def wait_for(condition, process: subprocess.Popen, log: Path, what: str,
             timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the command ended while waiting for {what}:\n" \
                                       f"{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} in {timeout} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


def test_the_entry_command_runs_the_deploy_spec_healthy(kafka_bootstrap: str, unique_name: str,
                                                        tmp_path: Path) -> None:
    topic = unique_name
    create_topic(kafka_bootstrap, topic, partitions=4)
    outputs = {kind: f"{unique_name}-{kind}" for kind in KINDS}
    for name in outputs.values():
        create_topic(kafka_bootstrap, name, partitions=1)
    produced = subprocess.run(
        [sys.executable, str(DEPLOY / "producer.py"), "--bootstrap", kafka_bootstrap,
         "--topic", topic, "--rate", "0", "--count", str(N), "--shift-every", "500"],
        capture_output=True, text=True, timeout=120)
    assert produced.returncode == 0 and f"{N} records sent" in produced.stderr, produced.stderr

    command = entry_command()
    program = Path(sys.executable).with_name(command[0])  # the console script of this install
    args = [str(ROOT / copies()[SPEC_IN_IMAGE]) if a == SPEC_IN_IMAGE else a
            for a in command[1:]]
    overrides = {
        "source.bootstrap_servers": kafka_bootstrap, "source.topics": topic,
        "source.group_id": unique_name, "checkpoint.every_seconds": 1,
        "checkpoint.directory": json.dumps(str(tmp_path / "checkpoints")),
        "observability.metrics_port": 0, "observability.bind": "127.0.0.1",  # a free port here
        **{f"outputs.{kind}.topic": name for kind, name in outputs.items()},
    }
    args += [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    log = tmp_path / "streamal.log"
    with open(log, "wb") as err:
        process = subprocess.Popen([str(program), *args], stdout=subprocess.DEVNULL, stderr=err,
                                   cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        wait_for(lambda: "health on http://" in log.read_text(), process, log, "health endpoint")
        port = int(re.search(r"health on http://[\d.]+:(\d+)/healthz", log.read_text())[1])
        wait_for(lambda: checkpointed(tmp_path / "checkpoints") >= N, process, log,
                 "checkpoint of every record")
        (check,) = dockerfile_instructions("HEALTHCHECK")
        probe = json.loads(check[check.index("CMD") + 3:])
        assert probe[0] == "python"
        probe = [sys.executable, *probe[1:]]
        probe[-1] = probe[-1].replace(f":{METRICS_PORT}/", f":{port}/")
        health = subprocess.run(probe, capture_output=True, text=True, timeout=30)
        assert health.returncode == 0, health.stderr
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    source = KafkaSource(outputs["scores"], kafka_bootstrap, partitions=[0], stop_at_end=True)
    scores = []
    with source:
        while not source.exhausted:
            scores.extend(json.loads(r.value) for r in source.poll(5000, 0.5))
    assert len(scores) == N == len({s["id"] for s in scores})
    assert all(0.0 <= s["score"] <= 1.0 for s in scores)
