"""The checkpoint directory is not writable, or full: say so, keep the old checkpoint, retry.

Pass: one clear ERROR line per outage (and one line when it is over), the failures in the
metrics and in ``/healthz``, processing goes on, the previous checkpoint stays the newest
one a restart trusts, a later retry succeeds once the disk is back, and a half-written or
truncated file is never taken for a checkpoint.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

import streamal.checkpoint as ck
from streamal import ActivationDetector
from streamal.checkpoint import CheckpointStore, read_state
from streamal.connectors import MemorySink, MemorySource
from streamal.observability import PipelineMetrics
from streamal.runtime import Pipeline, RecordDecoder

N = 1200


def rows(n: int = N, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [json.dumps({"a": rng.gauss(0, 1), "b": rng.gauss(5, 1)}).encode() for _ in range(n)]


class Flaky(MemorySource):
    """A memory source that runs ``act(offset)`` before each poll."""

    def __init__(self, values: list[bytes], act=None):
        super().__init__(values)
        self.act = act
        self.offset = 0

    def poll(self, max_records: int, timeout: float):
        if self.act is not None:
            self.act(self.offset)
        batch = super().poll(max_records, timeout)
        if batch:
            self.offset = batch[-1].position[1] + 1
        return batch


def pipeline(source, directory, metrics=None, **kwargs) -> tuple[Pipeline, MemorySink]:
    scores = MemorySink()
    pipe = Pipeline(source, {"scores": scores}, lambda: ActivationDetector(seed=0),
                    RecordDecoder(), checkpoint_dir=directory, checkpoint_every_records=100,
                    poll_records=50, observer=metrics, **kwargs)
    pipe._ensure()
    pipe._checkpointer.retry_backoff = 0.0  # retry at the next due turn (tests only)
    return pipe, scores


def weights(directory: Path) -> dict[str, np.ndarray]:
    arrays, _ = read_state(CheckpointStore(directory).list()[-1])
    return arrays


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    directory = tmp_path_factory.mktemp("reference")
    pipeline(MemorySource(rows()), directory)[0].run()
    return weights(directory)


@pytest.mark.parametrize("fault", ["full", "not a directory"])
def test_a_failing_checkpoint_directory_is_reported_retried_and_never_trusted_half_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        reference: dict[str, np.ndarray], fault: str) -> None:
    directory = tmp_path / "ck"
    metrics = PipelineMetrics(max_unsaved_seconds=3600)
    broken = {"on": False}
    write_table = ck.pq.write_table

    def full_disk(table, where, **kwargs):  # half the file, then ENOSPC
        if broken["on"]:
            where.write(b"PAR1" + b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_table(table, where, **kwargs)

    monkeypatch.setattr(ck.pq, "write_table", full_disk)
    seen: dict[str, object] = {}

    def act(offset: int) -> None:
        if offset == 300:  # break the disk after three checkpoints
            seen["before"] = [p.name for p in CheckpointStore(directory).list()]
            broken["on"] = True
            if fault == "not a directory":
                directory.rename(tmp_path / "moved")
                directory.write_text("a file where the checkpoint directory was")
        if offset == 800:  # while broken: nothing new was trusted, and it shows
            seen["during"] = [p.name for p in CheckpointStore(tmp_path / "moved").list()
                              if fault == "not a directory"] or \
                [p.name for p in CheckpointStore(directory).list()]
            seen["stray"] = sorted(p.name for p in directory.parent.rglob("*") if p.is_file())
            seen["health"] = metrics.health()
            seen["metrics"] = generate_latest(metrics.registry).decode()
            broken["on"] = False  # the disk is back
            if fault == "not a directory":
                directory.unlink()
                (tmp_path / "moved").rename(directory)

    pipe, scores = pipeline(Flaky(rows(), act), directory, metrics)
    with caplog.at_level(logging.INFO, logger="streamal.runtime"):
        summary = pipe.run()

    assert summary.stopped_by == "exhausted" and summary.records_in == N
    assert len(scores.records) == N, "processing went on while checkpoints failed"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert "checkpoint failed" in message and "last good checkpoint" in message
    assert ("No space left" in message) == (fault == "full")
    assert any("checkpoint written again after" in r.getMessage() for r in caplog.records)
    assert seen["during"] == seen["before"], "the previous checkpoint stays the newest"
    assert not [n for n in seen["stray"] if n.startswith(".checkpoint")], "no temp file left"
    health = seen["health"]
    assert health["checkpoint_failures_in_a_row"] >= 2 and health["unsaved_records"] >= 400
    assert 'streamal_checkpoint_failures_total{stage="store"}' in seen["metrics"]
    failures = [line for line in seen["metrics"].splitlines()
                if line.startswith('streamal_checkpoint_failures_total{stage="store"}')]
    assert float(failures[0].split()[-1]) >= 2
    final = weights(directory)
    assert max(float(np.max(np.abs(final[k] - reference[k]), initial=0.0))
               for k in reference if k.startswith("model/")) <= 1e-6
    _, meta = read_state(CheckpointStore(directory).list()[-1])
    assert meta["positions"] == {"memory": N}


def test_a_truncated_newest_checkpoint_is_skipped_and_the_run_resumes_from_the_one_before(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        reference: dict[str, np.ndarray]) -> None:
    directory = tmp_path / "ck"
    pipeline(MemorySource(rows()), directory)[0].run(max_records=500)
    store = CheckpointStore(directory)
    good = store.list()[-1]
    bad = directory / f"checkpoint-{store.latest_sequence + 1:010d}.parquet"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # e.g. a half-copied file
    with caplog.at_level(logging.WARNING, logger="streamal.checkpoint"):
        resumed, scores = pipeline(MemorySource(rows()), directory)
        summary = resumed.run()
    assert summary.resumed_from == str(good) and summary.records_this_run == N - 500
    assert any(str(bad) in r.getMessage() and "skipping" in r.getMessage()
               for r in caplog.records)
    final = weights(directory)
    assert max(float(np.max(np.abs(final[k] - reference[k]), initial=0.0))
               for k in reference if k.startswith("model/")) <= 1e-6


def test_the_cli_reports_an_unusable_checkpoint_in_one_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from streamal.cli import main

    directory = tmp_path / "ck"
    directory.mkdir()
    (directory / "checkpoint-0000000001.parquet").write_bytes(b"not parquet at all")
    data = tmp_path / "in.jsonl"
    data.write_bytes(b"".join(r + b"\n" for r in rows(50)))
    with caplog.at_level(logging.ERROR):
        code = main(["run", "backtest_files", "--set", f"source.path={json.dumps(str(data))}",
                     "--set", f"outputs.directory={json.dumps(str(tmp_path / 'out'))}",
                     "--set", f"checkpoint.directory={json.dumps(str(directory))}",
                     "--set", "decode.key_field=\"k\"", "--set", "decode.time_field=\"t\""])
    assert code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "none of 1 checkpoints is valid" in errors[0], errors
