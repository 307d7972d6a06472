"""The sensor pipeline end to end through a real broker: outputs, dead letters, crashes, replay.

* 10 000 sensor records and 200 bad ones in a 4-partition topic: one score per good input,
  well-formed alerts and drift events, every bad record in the dead letter with its reason.
* ``streamal run`` killed with SIGKILL five times mid-stream and restarted: the final model
  equals that of an uninterrupted run, every input has an output, and duplicates exist only
  for records after the checkpoint a restart resumed from.
* The same good records replayed from a JSONL file give the same scores as the Kafka run
  (whose topic also held bad records: they change nothing).
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sensor_stream import (
    FEATURES,
    bad_values,
    create_topics,
    mix,
    produce,
    read_topic,
    sensor_records,
)

from streamal.checkpoint import CheckpointStore, read_state
from streamal.pipelines import build_pipeline, load_spec

pytestmark = pytest.mark.kafka

SPEC = "sensor_anomaly_kafka"
KINDS = ("scores", "alerts", "drift", "dead_letter")


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run in-process pipelines with one torch thread, as ``streamal`` does by default."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def kafka_overrides(bootstrap: str, topic: str, name: str, checkpoints: Path,
                    **extra: Any) -> list[str]:
    """``--set`` overrides pointing the sensor spec at a test's topics and folders."""
    overrides = [
        f"source.bootstrap_servers={bootstrap}", f"source.topics={topic}",
        f"source.group_id={name}", "source.stop_at_end=true",
        f"decode.features={json.dumps(FEATURES)}",
        f"checkpoint.directory={json.dumps(str(checkpoints))}",
        *[f"outputs.{kind}.topic={name}-{kind}" for kind in KINDS],
    ]
    return overrides + [f"{key}={value}" for key, value in extra.items()]


def run_in_process(overrides: list[str]) -> Any:
    return build_pipeline(load_spec(SPEC, overrides)).run()


def outputs(bootstrap: str, name: str) -> dict[str, list[dict[str, Any]]]:
    return {kind: read_topic(bootstrap, f"{name}-{kind}") for kind in KINDS}


def model_arrays(directory: Path) -> dict[str, np.ndarray]:
    latest = CheckpointStore(directory).list()[-1]
    arrays, _ = read_state(latest)
    return {k: v for k, v in arrays.items() if k.startswith("model/")}


# ---- 4 partitions, 10 000 good and 200 bad records -------------------------------------------
def test_every_good_record_is_scored_once_and_every_bad_one_dead_lettered(
        kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    good, bad = sensor_records(10_000), bad_values(200)
    ids = produce(kafka_bootstrap, unique_name, mix(good, bad), partitions=4)
    create_topics(kafka_bootstrap, *[f"{unique_name}-{kind}" for kind in KINDS])
    summary = run_in_process(kafka_overrides(kafka_bootstrap, unique_name, unique_name,
                                             tmp_path / "ck"))
    out = outputs(kafka_bootstrap, unique_name)
    good_ids = {i for i, tag in ids.items() if not isinstance(tag, tuple)}
    bad_ids = {i for i, tag in ids.items() if isinstance(tag, tuple)}
    assert len(good_ids) == 10_000 and len(bad_ids) == 200

    counts = collections.Counter(r["id"] for r in out["scores"])
    assert set(counts) == good_ids, "scores must cover exactly the good records"
    assert max(counts.values()) == 1, "an uninterrupted run scores each record once"
    for r in out["scores"]:
        assert 0.0 <= r["score"] <= 1.0 and isinstance(r["alert"], bool), r
        assert r["key"] == f"s{good[ids[r['id']]]['seq'] % 8}"
        assert r["event_time"] == good[ids[r["id"]]]["time"]

    dead = {r["id"]: r for r in out["dead_letter"]}
    missing = collections.Counter(ids[i][1] for i in bad_ids - set(dead))
    assert not missing, f"bad records not in the dead letter, by kind: {dict(missing)}"
    assert set(dead) == bad_ids and len(out["dead_letter"]) == 200
    for r in dead.values():
        assert r["stage"] in ("decode", "validate") and r["reason"], r
        assert r["raw_encoding"] in ("utf-8", "base64") and "raw" in r
        stream, offset = r["position"]
        assert f"{stream}@{offset}" == r["id"]

    alerted = {r["id"] for r in out["scores"] if r["alert"]}
    assert out["alerts"], "the faults in the data raise alerts"
    assert {r["id"] for r in out["alerts"]} == alerted
    for r in out["alerts"]:
        assert r["kind"] == "alert" and r["id"] in good_ids
        assert r["threshold"] is not None and r["score"] >= r["threshold"], r
    assert out["drift"], "the level shift in the data is detected"
    for r in out["drift"]:
        assert r["kind"] == "drift" and r["stream"] == "score" and r["detector"] == "ADWIN", r
        assert r["id"] in good_ids and isinstance(r["n"], int)

    assert summary.records_in == 10_200 and summary.scored == 10_000
    assert summary.dead_lettered_total == 200 and summary.alerted == len(alerted)
    assert summary.drift_events == len(out["drift"]) and summary.stopped_by == "exhausted"


# ---- one partition: crash and restart, then file replay ----------------------------------------
N_CRASH = 5000
KILLS = 5  # the CI size of the crash loop; bench/crash_loop.py runs 100 000 records, 20 kills


@pytest.fixture(scope="module")
def crash_topic(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A one-partition topic of good and bad records (one partition: a total order)."""
    name = f"crash-{os.urandom(4).hex()}"
    good, bad = sensor_records(N_CRASH, seed=5), bad_values(40, seed=6)
    items = mix(good, bad, seed=7)
    ids = produce(kafka_bootstrap, name, items, partitions=1)
    return {"topic": name, "good": good, "items": items, "ids": ids,
            "dir": tmp_path_factory.mktemp("crash")}


@pytest.fixture(scope="module")
def uninterrupted(kafka_bootstrap: str, crash_topic: dict[str, Any]) -> dict[str, Any]:
    """The reference run over the crash topic, in this process, never interrupted."""
    name = f"{crash_topic['topic']}-ref"
    create_topics(kafka_bootstrap, *[f"{name}-{kind}" for kind in KINDS])
    checkpoints = crash_topic["dir"] / "ref-ck"
    overrides = kafka_overrides(kafka_bootstrap, crash_topic["topic"], name, checkpoints,
                                **{"source.partitions": "[0]", "checkpoint.every_records": 500})
    summary = run_in_process(overrides)
    return {"summary": summary, "checkpoints": checkpoints,
            "outputs": outputs(kafka_bootstrap, name)}


def test_sigkill_mid_stream_and_restart_gives_the_uninterrupted_model(
        kafka_bootstrap: str, crash_topic: dict[str, Any], uninterrupted: dict[str, Any]) -> None:
    name = f"{crash_topic['topic']}-crash"
    create_topics(kafka_bootstrap, *[f"{name}-{kind}" for kind in KINDS])
    checkpoints = crash_topic["dir"] / "crash-ck"
    overrides = kafka_overrides(kafka_bootstrap, crash_topic["topic"], name, checkpoints,
                                **{"source.partitions": "[0]", "checkpoint.every_records": 500,
                                   "checkpoint.every_seconds": 3600})
    command = [sys.executable, "-m", "streamal.cli", "--log-level", "WARNING", "run", SPEC]
    command += [arg for o in overrides for arg in ("--set", o)]
    store, rng = CheckpointStore(checkpoints), random.Random(0)
    resumed_at: list[int] = []  # the position each restart resumed from
    for _ in range(KILLS):
        found = store.load_latest()
        resumed_at.append(found[1]["positions"][f"{crash_topic['topic']}:0"] if found else 0)
        before = store.latest_sequence or 0
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while (store.latest_sequence or 0) <= before and process.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.05))  # somewhere after that checkpoint
        process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL, (
            f"the run ended (exit {process.returncode}) before it was killed; "
            f"make the stream longer:\n{stderr.decode()[-2000:]}")
    found = store.load_latest()
    resumed_at.append(found[1]["positions"][f"{crash_topic['topic']}:0"])
    final = subprocess.run(command, capture_output=True, timeout=120)
    assert final.returncode == 0, final.stderr.decode()[-3000:]
    assert resumed_at == sorted(resumed_at) and resumed_at[-1] < N_CRASH

    crashed, reference = model_arrays(checkpoints), model_arrays(uninterrupted["checkpoints"])
    assert crashed.keys() == reference.keys() and crashed
    for key in reference:
        diff = float(np.max(np.abs(crashed[key].astype(float) - reference[key].astype(float)),
                            initial=0.0))
        assert diff <= 1e-6, f"{key}: max abs difference {diff}"
    _, meta = read_state(store.list()[-1])
    _, ref_meta = read_state(CheckpointStore(uninterrupted["checkpoints"]).list()[-1])
    assert meta["positions"] == ref_meta["positions"]
    counters = {k: v for k, v in meta["counters"].items() if k != "checkpoints"}
    assert counters == {k: v for k, v in ref_meta["counters"].items() if k != "checkpoints"}

    out = outputs(kafka_bootstrap, name)
    ids = crash_topic["ids"]
    per_id = collections.Counter(r["id"] for r in out["scores"] + out["dead_letter"])
    assert set(per_id) == set(ids), "every input has at least one output"
    for record_id, count in per_id.items():
        offset = int(record_id.rsplit("@", 1)[1])
        restarts_before = sum(1 for p in resumed_at[1:] if p <= offset)
        assert count <= 1 + restarts_before, (
            f"{record_id} written {count} times but only {restarts_before} restarts resumed "
            f"at or before it (resume positions {resumed_at})")
    reference_scores = {r["id"]: r["score"] for r in uninterrupted["outputs"]["scores"]}
    for r in out["scores"]:
        assert r["score"] == pytest.approx(reference_scores[r["id"]], abs=1e-6), r["id"]


def test_file_replay_gives_the_scores_of_the_kafka_run(
        crash_topic: dict[str, Any], uninterrupted: dict[str, Any], tmp_path: Path) -> None:
    data = tmp_path / "sensors.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in crash_topic["good"]))
    out = tmp_path / "out"
    spec = load_spec("backtest_files", [
        f"source.path={json.dumps(str(data))}",
        f"decode.features={json.dumps(FEATURES)}",
        f"outputs.directory={json.dumps(str(out))}",
        f"checkpoint.directory={json.dumps(str(out / 'ck'))}",
    ])
    kafka = load_spec(SPEC)
    for table in ("model", "alerts", "drift"):  # the two specs run the same model
        assert spec[table] == kafka[table], table
    summary = build_pipeline(spec).run()
    assert summary.scored == N_CRASH and summary.dead_lettered_total == 0

    ids = crash_topic["ids"]
    kafka_scores = {ids[r["id"]]: r for r in uninterrupted["outputs"]["scores"]}
    file_scores = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(file_scores) == N_CRASH == len(kafka_scores)
    for line, r in enumerate(file_scores):
        assert r["id"] == f"{data}@{line}"
        seq = crash_topic["good"][line]["seq"]
        theirs = kafka_scores[seq]
        assert (r["key"], r["event_time"]) == (theirs["key"], theirs["event_time"])
        assert r["score"] == pytest.approx(theirs["score"], abs=1e-6), f"seq {seq}"
        assert r["alert"] == theirs["alert"], f"seq {seq}"
    file_model = model_arrays(out / "ck")
    kafka_model = model_arrays(uninterrupted["checkpoints"])
    for key, value in kafka_model.items():
        assert np.allclose(file_model[key], value, atol=1e-6), key
