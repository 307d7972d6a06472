"""Window labels (NAB's format) are read, matched to series and turned into row labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamal.backtest.labels import (
    LabelError,
    anomaly_flag,
    class_value,
    in_windows,
    match_series,
    read_windows,
    windows_from_json,
)


def test_nab_windows_are_read_as_utc_epoch_seconds(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"realKnownCause/x.csv": [
        ["2014-02-19 10:50:00.000000", "2014-02-20 03:30:00.000000"]], "y.csv": []}))
    windows = read_windows(path)
    assert windows == {"realKnownCause/x.csv": [(1392807000.0, 1392867000.0)], "y.csv": []}


def test_a_zoned_time_is_converted_to_utc() -> None:
    windows = windows_from_json({"a": [["2014-02-19T11:50:00+01:00",
                                         "2014-02-19T12:00:00+01:00"]]})
    assert windows["a"] == [(1392807000.0, 1392807600.0)]


def test_the_bundled_labels_of_the_demo_series_are_read() -> None:
    windows = read_windows("bundled:ambient_temperature_system_failure.labels.json")
    assert list(windows) == ["realKnownCause/ambient_temperature_system_failure.csv"]
    assert len(windows["realKnownCause/ambient_temperature_system_failure.csv"]) == 2


def test_files_match_by_path_tail_then_base_name() -> None:
    seen = ["data/realKnownCause/a.csv", "data/other/b.csv", "c.csv"]
    matches, unmatched = match_series(["realKnownCause/a.csv", "x/b.csv", "c.csv", "d.csv"],
                                      seen, by="file")
    assert matches == {"realKnownCause/a.csv": "data/realKnownCause/a.csv",
                       "x/b.csv": "data/other/b.csv", "c.csv": "c.csv"}
    assert unmatched == ["d.csv"]


def test_keys_match_exactly() -> None:
    matches, unmatched = match_series(["s1", "s2"], ["s1", "s10"], by="key")
    assert matches == {"s1": "s1"} and unmatched == ["s2"]


def test_a_name_that_fits_several_files_is_an_error() -> None:
    with pytest.raises(LabelError, match="fits several source files"):
        match_series(["a.csv"], ["one/a.csv", "two/a.csv"], by="file")


def test_rows_inside_a_window_are_anomalous_both_ends_included() -> None:
    times = np.array([9.0, 10.0, 15.0, 20.0, 21.0, 30.0, np.nan])
    assert in_windows(times, [(10.0, 20.0), (30.0, 30.0)]).tolist() == [
        False, True, True, True, False, True, False]


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not readable JSON"),
    ('[["2014-01-01", "2014-01-02"]]', "expected a JSON object of series name"),
    ('{"a": "2014-01-01"}', "expected a JSON object of series name"),
    ('{"a": [["2014-01-02", "2014-01-01"]]}', "ends before it starts"),
    ('{"a": [["2014-01-01"]]}', "must be \\[start, end\\]"),
    ('{"a": [["yesterday", "2014-01-01"]]}', "labels file"),
    ('{"a": [["2014-01-01", "2014-01-03"], ["2014-01-02", "2014-01-04"]]}', "overlapping"),
])
def test_a_malformed_labels_file_is_a_clear_error(tmp_path: Path, content: str,
                                                  message: str) -> None:
    path = tmp_path / "labels.json"
    path.write_text(content)
    with pytest.raises(LabelError, match=message):
        read_windows(path)


def test_a_missing_labels_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(LabelError, match="labels file '.*nope.json' does not exist"):
        read_windows(tmp_path / "nope.json")
    with pytest.raises(LabelError, match="no bundled file 'nope.json'"):
        read_windows("bundled:nope.json")


def test_anomaly_flags_accept_numbers_booleans_and_words() -> None:
    values = [1, 0, 1.0, True, False, "1", "false", " Anomaly ", None, float("nan")]
    assert [anomaly_flag(v) for v in values] == [True, False, True, True, False, True, False,
                                                 True, None, None]
    with pytest.raises(LabelError, match="2 is not an anomaly label"):
        anomaly_flag(2)


def test_class_values_from_csv_floats_become_ints() -> None:
    assert [class_value(v) for v in (np.int64(3), 2.0, 2.5, "x", True)] == [3, 2, 2.5, "x", True]
