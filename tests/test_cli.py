"""The ``streamal`` command: demo, run (stop on SIGTERM, resume), spec, checkpoint show."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from streamal.checkpoint import CheckpointStore, read_state
from streamal.cli import main

NAB_ROWS = 7267


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run in-process pipelines with one torch thread, as ``streamal`` does by default."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def summary_numbers(text: str) -> dict[str, int]:
    return {k.strip(): int(v.replace(",", ""))
            for k, v in re.findall(r"^  ([a-z ]+):\s+([\d,]+)$", text, re.M)}


def test_demo_replays_the_bundled_series_and_prints_a_summary(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    numbers = summary_numbers(text)
    assert numbers["records"] == NAB_ROWS and numbers["scored"] == NAB_ROWS
    assert numbers["dead letters"] == 0
    assert numbers["alerts"] > 0 and numbers["drift events"] >= 0
    scores = (out / "outputs" / "scores.jsonl").read_text().splitlines()
    assert len(scores) == NAB_ROWS
    assert f"scores:         {out / 'outputs' / 'scores.jsonl'}" in text
    alerts = (out / "outputs" / "alerts.jsonl").read_text().splitlines()
    assert len(alerts) == numbers["alerts"]
    assert all(json.loads(line)["kind"] == "alert" for line in alerts)
    latest = CheckpointStore(out / "checkpoints").list()[-1]
    assert f"checkpoint:     {latest}" in text
    assert f"streamal checkpoint show {latest}" in text
    _, meta = read_state(latest)
    assert sum(meta["positions"].values()) == NAB_ROWS


def test_a_second_demo_starts_afresh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["demo", "--out", str(tmp_path), "--set", "run.max_records=600"]
    assert main(args) == 0
    first = summary_numbers(capsys.readouterr().out)
    assert first["records"] == 600
    assert main(args) == 0
    assert summary_numbers(capsys.readouterr().out) == first
    assert len((tmp_path / "outputs" / "scores.jsonl").read_text().splitlines()) == 600


def test_checkpoint_show_prints_text_or_json(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    main(["demo", "--out", str(tmp_path), "--set", "run.max_records=200"])
    capsys.readouterr()
    latest = CheckpointStore(tmp_path / "checkpoints").list()[-1]
    assert main(["checkpoint", "show", str(latest)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"checkpoint {latest}\n")
    assert "checksum:        ok" in text
    assert re.search(r"^  positions \(next offset to read\):\n    \S+\.csv: 200$", text, re.M)
    assert "records_in=200" in text and "(single model): SeriesPreset" in text
    assert re.search(r"^    model/__all__/\S+: +<f\d \(", text, re.M), text
    assert main(["checkpoint", "show", str(tmp_path / "checkpoints"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == str(latest) and info["checksum_ok"] is True
    assert list(info["pipeline"]["positions"].values()) == [200]
    assert info["pipeline"]["counters"]["records_in"] == 200


def test_checkpoint_show_reports_a_bad_file(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    garbled = tmp_path / "checkpoint-0000000001.parquet"
    garbled.write_bytes(b"PAR1 not really")
    assert main(["checkpoint", "show", str(garbled)]) == 1
    assert "not a readable Parquet file" in capsys.readouterr().err
    assert main(["checkpoint", "show", str(tmp_path / "empty")]) == 1


def test_an_invalid_spec_exits_2_naming_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "demo", "--set", "model.probaton=300", "--set", "alerts.warmup=-1"]) == 2
    err = capsys.readouterr().err
    assert "model.probaton: unknown key; did you mean 'probation'?" in err
    assert "alerts.warmup: must not be negative, got -1" in err
    assert main(["run", "no-such-spec.toml"]) == 2


def test_spec_prints_the_validated_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "sensor_anomaly_kafka", "--set", "model.hidden=[32,32]"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert spec["model"]["hidden"] == [32, 32] and spec["source"]["type"] == "kafka"


def test_run_stops_on_sigterm_with_a_final_checkpoint_and_resumes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    checkpoints, outputs = tmp_path / "ck", tmp_path / "out"
    overrides = [f"checkpoint.directory={json.dumps(str(checkpoints))}",
                 f"outputs.directory={json.dumps(str(outputs))}",
                 "checkpoint.every_seconds=0.5", "run.poll_records=20",
                 "source.speed=720000"]  # hourly rows at 200 per second: a slow stream
    command = [sys.executable, "-m", "streamal.cli", "run", "demo"]
    command += [arg for o in overrides for arg in ("--set", o)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    store = CheckpointStore(checkpoints)
    deadline = time.monotonic() + 60
    while not store.list() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr[-3000:]
    assert "stopped (signal)" in stderr
    assert all(re.match(r"^\S+ \S+ [A-Z]+ [\w.]+: ", line) for line in stderr.splitlines()), \
        "one log line per event"

    _, meta = read_state(store.list()[-1])
    done = sum(meta["positions"].values())
    assert 0 < done < NAB_ROWS
    scores = (outputs / "scores.jsonl").read_text().splitlines()
    assert len(scores) == done, "everything before the final checkpoint is written, once"

    with caplog.at_level("INFO"):  # a restart resumes where the checkpoint is
        assert main(["run", "demo", *[a for o in overrides[:2] for a in ("--set", o)],
                     "--set", "run.max_records=100"]) == 0
    assert f"resumed from {store.list()[-2]}" in caplog.text or "resumed from" in caplog.text
    _, meta = read_state(store.list()[-1])
    assert sum(meta["positions"].values()) == done + 100


def test_the_readme_examples_run() -> None:
    import doctest

    import torch

    readme = Path(__file__).resolve().parents[1] / "README.md"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add contention on a busy machine
    try:
        result = doctest.testfile(str(readme), module_relative=False,
                                  optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    finally:
        torch.set_num_threads(threads)
    assert result.attempted >= 8 and result.failed == 0


def test_the_readme_states_the_two_setup_commands() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert '```bash\npip install -e ".[test]" && streamal demo\n```' in readme
    assert "```bash\npython -m pytest -q\n```" in readme
