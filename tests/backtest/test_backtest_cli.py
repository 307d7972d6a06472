"""``streamal backtest`` end to end: anomaly (windows, label column), classification, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from backtest_data import (
    START,
    STEP,
    anomaly_spec,
    backtest_cli,
    write_classes,
    write_labels,
    write_series,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    folder = tmp_path / "recordings"
    folder.mkdir()
    write_series(folder / "s1.csv", spike=range(180, 190))
    write_series(folder / "s2.csv", spike=range(150, 155))
    return folder


def summary_of(report: Path) -> dict:
    return json.loads((report / "summary.json").read_text())


def roc_by_pairs(positives: list[float], negatives: list[float]) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def test_an_anomaly_backtest_with_window_labels(
        tmp_path: Path, recordings: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report"
    labels = write_labels(tmp_path / "labels.json", {"data/s1.csv": [(180, 189)],
                                                      "s2.csv": [(150, 154)],
                                                      "missing.csv": [(1, 2)]})
    spec = anomaly_spec(tmp_path / "spec.toml", str(recordings), report)
    assert backtest_cli(str(spec), "--labels", str(labels)) == 0
    out = capsys.readouterr().out
    assert "480 records" in out and "nab_standard:" in out and str(report) in out
    summary = summary_of(report)
    m = summary["metrics"]
    assert summary["counts"]["records"] == 480 and summary["counts"]["series"] == 2
    assert summary["labels"]["unmatched"] == ["missing.csv"]
    assert any("'missing.csv' matches no series" in w for w in summary["warnings"])
    assert set(m["nab"]) >= {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    assert m["nab"]["windows"] == 2
    # the metrics equal what the records table gives when counted by hand
    records = pd.read_parquet(report / "records.parquet")
    assert len(records) == 480 and records["label"].sum() == 15
    assert set(records.loc[records["label"], "event_time"].astype(int)) == {
        1_700_000_000 + 60 * r for r in [*range(180, 190), *range(150, 155)]}
    judged = records.sort_values("event_time", kind="stable").groupby("series").tail(240 - 20)
    positives = judged.loc[judged["label"], "score"].tolist()
    negatives = judged.loc[~judged["label"], "score"].tolist()
    assert m["evaluated"] == 2 * (240 - 20) and m["anomalous"] == 15
    assert m["roc_auc"] == pytest.approx(roc_by_pairs(positives, negatives))
    alert, truth = judged["alert"], judged["label"]
    tp, fp, fn = int((alert & truth).sum()), int((alert & ~truth).sum()), \
        int((~alert & truth).sum())
    assert m["counts"]["tp"] == tp and m["counts"]["fp"] == fp and m["counts"]["fn"] == fn
    assert m["f1"] == pytest.approx(tp / (tp + (fn + fp) / 2))
    assert (records["alert"] == (records["score"] >= 0.5)).iloc[40:].all()  # fixed threshold


def test_window_labels_match_record_keys(tmp_path: Path) -> None:
    rows = [{"seq": i, "sensor": f"s{i % 2}", "time": START + STEP * (i // 2),
             "temp": float(i % 7) + (9.0 if i // 2 in range(100, 104) else 0.0)}
            for i in range(300)]
    data = tmp_path / "sensors.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    labels = write_labels(tmp_path / "labels.json", {"s0": [(100, 103)], "s1": []})
    report = tmp_path / "report"
    assert backtest_cli("backtest_files", "--set", f"source.path={str(data)!r}", "--labels",
                        str(labels), "--report", str(report), "--set", "alerts.warmup=20") == 0
    summary = summary_of(report)
    assert summary["labels"]["series_by"] == "key"
    assert summary["labels"]["matched"] == {"s0": "s0", "s1": "s1"}
    assert summary["metrics"]["anomalous"] == 4 and summary["metrics"]["nab"]["windows"] == 1
    records = pd.read_parquet(report / "records.parquet")
    assert sorted(records.loc[records["label"], "series"]) == ["s0"] * 4


def test_the_report_renders(tmp_path: Path, recordings: Path) -> None:
    report = tmp_path / "report"
    labels = write_labels(tmp_path / "labels.json", {"s1.csv": [(180, 189)]})
    spec = anomaly_spec(tmp_path / "spec.toml", str(recordings), report)
    assert backtest_cli(str(spec), "--labels", str(labels)) == 0
    summary = summary_of(report)
    page = (report / "report.html").read_text()
    assert len(summary["plots"]) == 2
    for plot in summary["plots"]:
        assert f"<img src='{plot}'" in page
        assert (report / plot).read_bytes().startswith(PNG)
        assert (report / plot).stat().st_size > 5000
    assert "ROC-AUC" in page and "NAB score, standard" in page
    assert f"{summary['metrics']['roc_auc']:.4f}" in page
    for name in ("records", "drift", "dead_letters"):
        assert (report / f"{name}.parquet").is_file()
    assert summary["versions"]["streamal"] and summary["spec"]["checkpoint"]["directory"] is None
    # series without labels are plotted, but not counted
    assert summary["labels"]["unlabelled_series"] == [str(recordings / "s2.csv")]
    assert summary["metrics"]["evaluated"] == 240 - 20


def test_an_anomaly_backtest_with_a_label_column_counts_dead_letters(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_series(tmp_path / "s.csv", label_column=True)
    with data.open("a") as fh:
        fh.write("yesterday,1.0,0\n")  # a time the decoder cannot read
    report = tmp_path / "report"
    spec = anomaly_spec(tmp_path / "spec.toml", str(data), report)
    assert backtest_cli(str(spec), "--label-field", "anomaly", "--set", "backtest.warmup=0") == 0
    summary = summary_of(report)
    assert summary["counts"]["dead_letters"] == 1
    assert summary["counts"]["dead_letters_by_stage"]["validate"] == 1
    assert any("1 records could not be used" in w for w in summary["warnings"])
    assert summary["metrics"]["anomalous"] == 10 and summary["metrics"]["evaluated"] == 240
    assert "nab" not in summary["metrics"]
    assert "anomaly" in summary["spec"]["decode"]["exclude"]  # never a feature
    dead = pd.read_parquet(report / "dead_letters.parquet")
    assert dead["stage"].tolist() == ["validate"]


def test_a_classification_backtest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_classes(tmp_path / "classes.jsonl")
    report = tmp_path / "report"
    assert backtest_cli("semisupervised_files", "--set", f"source.path={str(data)!r}",
                        "--set", "model.hidden=[32]", "--set", "backtest.rolling_window=50",
                        "--report", str(report)) == 0
    assert "accuracy_unlabelled:" in capsys.readouterr().out
    summary = summary_of(report)
    m = summary["metrics"]
    assert summary["counts"]["records"] == 301 and summary["counts"]["dead_letters"] == 1
    assert (m["labelled"], m["unlabelled"]) == (60, 240)
    records = pd.read_parquet(report / "records.parquet")
    correct = records["label"] == records["prediction"]
    assert m["accuracy"] == pytest.approx(correct.mean())
    assert m["accuracy_unlabelled"] == pytest.approx(correct[records["given_label"].isna()].mean())
    assert m["accuracy"] > 0.8 and len(m["accuracy_over_time"]) == 10
    assert summary["plots"] == ["plots/accuracy.png"]
    assert (report / "plots" / "accuracy.png").read_bytes().startswith(PNG)


@pytest.mark.parametrize(("labels", "message"), [
    (None, "labels file '.*nope.json' does not exist"),
    ("{oops", "is not readable JSON"),
    ('{"s.csv": [["2023-11-15", "2023-11-14"]]}', "ends before it starts"),
    ('{"other.csv": [["2023-11-15", "2023-11-16"]]}',
     "no series of the labels file matches a series of the run"),
])
def test_bad_labels_files_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           labels: str | None, message: str) -> None:
    data = write_series(tmp_path / "s.csv", rows=60)
    path = tmp_path / "nope.json"
    if labels is not None:
        path.write_text(labels)
    spec = anomaly_spec(tmp_path / "spec.toml", str(data), tmp_path / "report")
    assert backtest_cli(str(spec), "--labels", str(path)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(message, err), err


def test_labels_covering_nothing_give_a_warning(tmp_path: Path) -> None:
    data = write_series(tmp_path / "s.csv", rows=60)
    labels = write_labels(tmp_path / "labels.json", {"s.csv": [(500, 510)]})
    spec = anomaly_spec(tmp_path / "spec.toml", str(data), tmp_path / "report")
    assert backtest_cli(str(spec), "--labels", str(labels)) == 0
    warnings = summary_of(tmp_path / "report")["warnings"]
    assert any("holds no record" in w for w in warnings)
    assert any("mark no evaluated record as anomalous" in w for w in warnings)


def test_a_backtest_needs_a_file_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert backtest_cli("sensor_anomaly_kafka") == 2
    assert "source.type: a backtest replays files" in capsys.readouterr().err


def test_missing_recordings_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert backtest_cli("backtest_files", "--set", f"source.path={str(tmp_path / 'no')!r}") == 2
    assert "source.path: no such file" in capsys.readouterr().err


def test_window_labels_are_for_the_anomaly_task(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert backtest_cli("semisupervised_files", "--labels", "x.json") == 2
    assert "backtest.labels: window labels mark anomalies" in capsys.readouterr().err
