"""The pieces a backtest runs with: column sinks, the progress bar, row counts, the truth pass."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from backtest_data import backtest_cli, write_classes, write_series

from streamal.backtest.collect import ColumnSink, Progress, count_rows, read_field
from streamal.pipelines import load_spec


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_column_sink_keeps_the_named_fields_in_order() -> None:
    sink = ColumnSink(("id", "score", "alert"))
    sink.add({"id": "f@0", "score": 0.5, "key": "k"})
    sink.add({"id": "f@1", "score": 0.9, "alert": True})
    frame = sink.frame()
    assert frame.columns.tolist() == ["id", "score", "alert"]
    assert frame["id"].tolist() == ["f@0", "f@1"] and frame["alert"].tolist() == [None, True]


def test_the_progress_bar_shows_only_on_a_terminal_and_when_enabled() -> None:
    for stream, enabled, shown in ((Terminal(), True, True), (io.StringIO(), True, False),
                                   (Terminal(), False, False)):
        progress = Progress(total=10, enabled=enabled, stream=stream)
        progress.batch(4, 0.1)
        progress.stopped(None)
        assert ("4/10" in stream.getvalue()) is shown


def test_rows_are_counted_without_parsing(tmp_path: Path) -> None:
    write_series(tmp_path / "a.csv", rows=30)
    write_classes(tmp_path / "b.jsonl", rows=20, bad_line=True)
    pd.DataFrame({"x": range(7)}).to_parquet(tmp_path / "c.parquet")
    assert count_rows(str(tmp_path), None) == 30 + 21 + 7
    assert count_rows(str(tmp_path / "*.csv"), None) == 30


def test_the_truth_pass_reads_a_field_by_record_id(tmp_path: Path) -> None:
    data = write_classes(tmp_path / "b.jsonl", rows=4, bad_line=True)
    spec = load_spec("semisupervised_files", [f"source.path={str(data)!r}"])
    values = read_field(spec, "true_label")
    assert len(values) == 4 and f"{data}@2" not in values  # line 2 is not JSON
    assert set(values.values()) <= {"idle", "busy"}


def test_the_given_label_can_be_the_truth(tmp_path: Path) -> None:
    data = write_classes(tmp_path / "classes.jsonl", rows=200, bad_line=False)
    report = tmp_path / "report"
    assert backtest_cli("semisupervised_files", "--set", f"source.path={str(data)!r}",
                        "--set", "model.hidden=[16]", "--label-field", "label",
                        "--set", "decode.exclude=['seq', 'true_label']",
                        "--report", str(report)) == 0
    summary = pd.read_json(report / "summary.json", typ="series")
    m = summary["metrics"]
    assert (m["evaluated"], m["labelled"], m["unlabelled"]) == (40, 40, 0)
    assert m["accuracy_unlabelled"] is None  # NaN is written as null
