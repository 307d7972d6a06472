"""Security: no pickle anywhere, crafted checkpoints refused, Kafka secrets, localhost metrics.

* No module of streamal imports or calls a deserialiser that can run code (pickle and its
  relatives, ``torch.load``, ``numpy.load``, pandas' pickle readers, torch.distributed's
  object collectives): proven on the syntax tree, so comments and docs do not count.
* Hand-made checkpoints (a pickle posing as one, or a file with a valid checksum whose
  content does not fit) are refused with a clear :class:`CheckpointError` and never run code.
* SASL / SSL settings of a spec reach kafka-python unchanged, a secret read from the
  environment included, and the secret shows in no log line, not even at DEBUG.
* The metrics and health endpoint listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import ast
import json
import logging
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamal import ActivationDetector
from streamal.checkpoint import CheckpointError, CheckpointStore, read_state, write_state
from streamal.connectors import MemorySource
from streamal.drift import DriftMonitor
from streamal.observability import PipelineMetrics, observe
from streamal.observability.server import MetricsServer
from streamal.pipelines import load_spec
from streamal.runtime import Pipeline, RecordDecoder

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("streamal", "connectors", "pipelines")
SECRET = "Tr0ub4dor&3-not-in-any-log"

UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve",
                  "marshal", "jsonpickle"}
UNSAFE_CALLS = {("torch", "load"), ("np", "load"), ("numpy", "load"), ("pd", "read_pickle"),
                ("pandas", "read_pickle"), ("yaml", "load"), ("yaml", "unsafe_load")}
UNSAFE_NAMES = {"read_pickle", "to_pickle", "broadcast_object_list", "all_gather_object",
                "gather_object", "scatter_object_list", "send_object_list",
                "recv_object_list", "allow_pickle"}


def unsafe_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names
                      if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in UNSAFE_MODULES:
                found.append(f"{where} from {node.module} import")
            found += [f"{where} from {node.module} import {a.name}" for a in node.names
                      if a.name in UNSAFE_NAMES or (node.module, a.name) in UNSAFE_CALLS]
        elif isinstance(node, ast.Attribute):
            base = node.value.id if isinstance(node.value, ast.Name) else None
            if (base, node.attr) in UNSAFE_CALLS or node.attr in UNSAFE_NAMES:
                found.append(f"{where} {base}.{node.attr}")
        elif isinstance(node, ast.keyword) and node.arg in UNSAFE_NAMES:
            found.append(f"{where} {node.arg}=")
        elif isinstance(node, ast.Name) and node.id in UNSAFE_NAMES:
            found.append(f"{where} {node.id}")
    return found


def test_no_module_can_unpickle(tmp_path: Path) -> None:
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    assert len(files) > 30
    found = [use for path in files for use in unsafe_uses(path)]
    assert not found, "code-running deserialisers in the package:\n" + "\n".join(found)
    probe = tmp_path / "probe.py"  # the scanner does see such uses
    probe.write_text("import pickle\nimport torch\nx = torch.load('m.pt')\n"
                     "from torch.distributed import all_gather_object\n")
    assert len(unsafe_uses(probe)) == 3


# ---- crafted checkpoints -------------------------------------------------------------------
def evil_pickle(marker: Path) -> bytes:
    """A protocol-0 pickle, written by hand, that creates ``marker`` when unpickled
    (it calls ``builtins.open(marker, "w")``)."""
    return f"cbuiltins\nopen\n(S{str(marker)!r}\nS'w'\ntR.".encode()


def good_checkpoint(directory: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    values = [{"a": float(i % 7), "b": float(i % 3)} for i in range(200)]
    Pipeline(MemorySource(values), {}, lambda: ActivationDetector(seed=0), RecordDecoder(),
             drift=DriftMonitor("ADWIN"), checkpoint_dir=directory).run()
    arrays, meta, _ = CheckpointStore(directory).load_latest()
    return arrays, meta


def resume(directory: Path) -> Pipeline:
    pipe = Pipeline(MemorySource([{"a": 1.0, "b": 2.0}] * 300), {},
                    lambda: ActivationDetector(seed=0), RecordDecoder(),
                    drift=DriftMonitor("ADWIN"), checkpoint_dir=directory)
    pipe.run()
    return pipe


def hostile(meta: dict[str, Any], marker: Path) -> list[tuple[str, dict[str, Any]]]:
    """Checkpoint metas (valid checksums) that must be refused, with the words of the error."""
    model = meta["models"][0]
    edits = []

    def edited(**changes: Any) -> dict[str, Any]:
        copy = json.loads(json.dumps(meta))
        copy["models"][0].update(changes)
        return copy

    edits.append(("differ from the checkpoint's own spec", edited(
        meta={**model["meta"], "params": {**model["meta"]["params"], "hidden": [10**9]}})))
    drift_text = json.dumps(model["drift"])
    assert "river._river_rust.drift:AdaptiveWindowing" in drift_text
    edits.append(("outside river", edited(drift=json.loads(drift_text.replace(
        "river._river_rust.drift:AdaptiveWindowing", "os:system")))))
    garbled = json.loads(drift_text)
    garbled["streams"]["score"]["detector"]["_helper"]["v"] = "AAAA" * 10
    edits.append(("not a usable pipeline checkpoint", edited(drift=garbled)))
    edits.append(("not a usable pipeline checkpoint", edited(meta="pwned")))
    broken = json.loads(json.dumps(meta))
    broken["models"] = [{"key": None}]
    edits.append(("not a usable pipeline checkpoint", broken))
    return edits


def test_crafted_checkpoints_are_refused_clearly_and_run_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    arrays, meta = good_checkpoint(tmp_path / "good")
    for i, (words, bad_meta) in enumerate(hostile(meta, marker)):
        directory = tmp_path / f"hostile-{i}"
        directory.mkdir()
        write_state(directory / "checkpoint-0000000001.parquet", arrays, bad_meta)
        read_state(directory / "checkpoint-0000000001.parquet")  # the store's checks pass
        with pytest.raises(CheckpointError, match=words) as info:
            resume(directory)
        assert "checkpoint-0000000001.parquet" in str(info.value)

    # a pickle posing as the newest checkpoint: skipped with a warning, never unpickled
    directory = tmp_path / "good"
    newest = CheckpointStore(directory).latest_sequence + 1
    (directory / f"checkpoint-{newest:010d}.parquet").write_bytes(evil_pickle(marker))
    good = CheckpointStore(directory).list()[-2]
    pipe = resume(directory)
    assert pipe._summary.resumed_from == str(good) and pipe.counters["records_in"] == 300
    only = tmp_path / "only-pickle"
    only.mkdir()
    (only / "checkpoint-0000000001.parquet").write_bytes(evil_pickle(marker))
    with pytest.raises(CheckpointError, match="none of 1 checkpoints is valid"):
        resume(only)
    assert not marker.exists()


# ---- Kafka security settings ---------------------------------------------------------------
class FakeMessage:
    def __init__(self, offset: int, value: bytes):
        self.offset, self.value, self.key, self.timestamp = offset, value, None, 1_700_000_000_000


class FakeConsumer:
    """Enough of kafka-python's KafkaConsumer for one explicitly assigned partition."""

    made: list[dict[str, Any]] = []

    def __init__(self, **settings: Any):
        FakeConsumer.made.append(settings)
        self.tps: list[Any] = []
        self.position_ = 0
        self.values = [json.dumps({"temp": 60.0 + i % 5, "vib": 0.5, "pressure": 100.0,
                                   "sensor": "s1", "time": 1_700_000_000 + i}).encode()
                       for i in range(30)]

    def assign(self, tps: list[Any]) -> None:
        self.tps = list(tps)

    def assignment(self) -> set[Any]:
        return set(self.tps)

    def seek_to_beginning(self, *tps: Any) -> None:
        self.position_ = 0

    def seek(self, tp: Any, offset: int) -> None:
        self.position_ = offset

    def poll(self, timeout_ms: int, max_records: int) -> dict[Any, list[FakeMessage]]:
        batch = [FakeMessage(i, self.values[i]) for i in
                 range(self.position_, min(len(self.values), self.position_ + max_records))]
        self.position_ += len(batch)
        return {self.tps[0]: batch} if batch else {}

    def highwater(self, tp: Any) -> int:
        return len(self.values)

    def position(self, tp: Any, timeout_ms: int = 0) -> int:
        return self.position_

    def commit(self, offsets: Any, timeout_ms: int = 0) -> None:
        pass

    def close(self, autocommit: bool = False) -> None:
        pass


class FakeFuture:
    is_done, exception = True, None

    def failed(self) -> bool:
        return False


class FakeProducer:
    made: list[dict[str, Any]] = []

    def __init__(self, **settings: Any):
        FakeProducer.made.append(settings)

    def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def send(self, topic: str, value: bytes, key: bytes | None = None,
             partition: int | None = None) -> FakeFuture:
        return FakeFuture()

    def flush(self) -> None:
        pass

    def close(self, timeout: float = 0) -> None:
        pass


SECURITY = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "streamal", "ssl_cafile": "/etc/ssl/ca.pem",
            "ssl_check_hostname": True}


def test_sasl_and_ssl_settings_reach_kafka_python_and_secrets_are_never_logged(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    import streamal.connectors.kafka_sink as kafka_sink
    import streamal.connectors.kafka_source as kafka_source
    from streamal.cli import main

    monkeypatch.setenv("STREAMAL_TEST_KAFKA_PASSWORD", SECRET)
    monkeypatch.setattr(kafka_source, "KafkaConsumer", FakeConsumer)
    monkeypatch.setattr(kafka_sink, "KafkaProducer", FakeProducer)
    FakeConsumer.made, FakeProducer.made = [], []
    overrides = [f"source.{k}={json.dumps(v)}" for k, v in SECURITY.items()] + [
        "source.sasl_plain_password=env:STREAMAL_TEST_KAFKA_PASSWORD",
        "source.bootstrap_servers=broker.invalid:9093", "source.partitions=[0]",
        "source.stop_at_end=true", f"checkpoint.directory={json.dumps(str(tmp_path / 'ck'))}",
        "observability.metrics_port=0"]
    with caplog.at_level(logging.DEBUG):
        code = main(["--log-level", "DEBUG", "run", "sensor_anomaly_kafka",
                     *[a for o in overrides for a in ("--set", o)]])
    assert code == 0
    want = {**SECURITY, "sasl_plain_password": SECRET}
    assert len(FakeConsumer.made) == 1 and FakeProducer.made  # producers: outputs written
    for made in FakeConsumer.made + FakeProducer.made:
        assert {k: made.get(k) for k in want} == want
        assert made["bootstrap_servers"] == "broker.invalid:9093"
    assert "env:STREAMAL_TEST_KAFKA_PASSWORD" in caplog.text, "the reference is shown"
    captured = capfd.readouterr()
    assert SECRET not in caplog.text + captured.out + captured.err
    assert SECRET not in repr(load_spec("sensor_anomaly_kafka", overrides))


@pytest.mark.kafka
def test_a_real_client_sends_the_sasl_handshake_without_logging_the_password(
        kafka_bootstrap: str, caplog: pytest.LogCaptureFixture) -> None:
    from streamal.connectors import KafkaSource

    settings = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                "sasl_plain_username": "streamal", "sasl_plain_password": SECRET,
                "bootstrap_timeout_ms": 1500, "request_timeout_ms": 1500}
    source = KafkaSource("sasl-probe", kafka_bootstrap, partitions=[0], client_settings=settings)
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="kafka"):
        try:
            source.poll(10, 0.5)  # tansu has no SASL: the handshake is refused
        except Exception as error:  # noqa: BLE001 - any client error will do, its text is checked
            assert SECRET not in str(error)
        finally:
            source.close()
    assert time.monotonic() - started < 30
    assert "SaslHandshake" in caplog.text and "PLAIN" in caplog.text
    assert SECRET not in caplog.text


# ---- the metrics endpoint binds to localhost -----------------------------------------------
def test_the_metrics_endpoint_listens_on_localhost_unless_configured() -> None:
    spec = load_spec("sensor_anomaly_kafka")
    assert spec["observability"]["bind"] == "127.0.0.1"
    assert spec["observability"]["metrics_port"] is None, "no endpoint unless asked for"
    with observe({"metrics_port": 0}) as watch:
        assert watch.server is not None
        host, port = watch.server._server.socket.getsockname()[:2]
        assert host == "127.0.0.1"
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    server = MetricsServer(PipelineMetrics(), port=0, bind="0.0.0.0").start()
    try:
        assert server._server.socket.getsockname()[0] == "0.0.0.0"
    finally:
        server.stop()
