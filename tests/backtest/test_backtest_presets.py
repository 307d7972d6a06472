"""``streamal backtest`` with ``model.preset``: one tuned series detector per file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from backtest_data import anomaly_spec, backtest_cli, write_labels, write_series


def test_a_backtest_of_generated_series_with_the_series_preset_per_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    write_series(folder / "s1.csv", rows=400, spike=range(300, 303))
    write_series(folder / "s2.csv", rows=400, spike=range(250, 252))
    labels = write_labels(tmp_path / "labels.json", {"s1.csv": [(295, 310)],
                                                      "s2.csv": [(245, 260)]})
    report = tmp_path / "report"
    spec = anomaly_spec(tmp_path / "spec.toml", str(folder / "*.csv"), report)
    assert backtest_cli(str(spec), "--labels", str(labels),
                        "--set", "model.preset=series", "--set", "model.probation=100",
                        "--set", "alerts.value=0.9965", "--set", "alerts.warmup=0",
                        "--set", "source.file_field=file", "--set", "decode.key_field=file",
                        "--set", "model.per_key=true", "--set", "backtest.series=file") == 0
    assert "800 records" in capsys.readouterr().out
    summary = json.loads((report / "summary.json").read_text())
    assert summary["counts"]["models"] == 2 and summary["counts"]["dead_letters"] == 0
    assert summary["spec"]["model"]["preset"] == "series"
    records = pd.read_parquet(report / "records.parquet")
    assert records["score"].between(0.0, 1.0).all()
    assert (records["alert"] == (records["score"] >= 0.9965)).all()
    caught = records[records["alert"] & records["label"].astype(bool)]
    assert sorted(caught["series"].str.rsplit("/", n=1).str[-1].unique()) == ["s1.csv", "s2.csv"]
    nab = summary["metrics"]["nab"]["standard"]
    assert nab["score"] > 50  # both spikes alerted inside their windows, few false alarms
