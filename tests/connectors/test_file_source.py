"""FileSource on real CSV, JSONL and Parquet files."""

import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamal.connectors import FileSource, next_positions
from streamal.connectors.formats import parse_time


def drain(source, max_records=1000, timeout=0.0):
    records = []
    while not source.exhausted:
        records.extend(source.poll(max_records, timeout))
    return records


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def write_parquet(path, rows, row_group_size=None):
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)


def test_csv_rows_are_python_dicts_with_none_for_missing(tmp_path):
    path = tmp_path / "m.csv"  # a blank line is skipped and not counted as a row
    path.write_text("t,value,label\n1,0.5,a\n2,,b\n\n3,7,\n\n")
    records = drain(FileSource(path))
    assert [r.value for r in records] == [
        {"t": 1, "value": 0.5, "label": "a"},
        {"t": 2, "value": None, "label": "b"},
        {"t": 3, "value": 7.0, "label": None},
    ]
    assert [r.position for r in records] == [(str(path), 0), (str(path), 1), (str(path), 2)]
    assert all(type(r.value["t"]) is int for r in records)
    assert all(r.event_time is None and r.key is None for r in records)


def test_one_bad_csv_cell_spoils_only_its_own_record(tmp_path):
    # pandas reads a column with one text cell as text and an integer column with gaps as
    # floats; the rows still carry numbers where the file has numbers, and labels stay 3
    path = tmp_path / "m.csv"
    path.write_text("t,value,label,sensor\n1,0.5,3,a7\n2,broken,,7\n3,1e3,4,b\n4,1_0,5,c\n")
    values = [r.value for r in drain(FileSource(path, batch_rows=2))]
    assert values == [
        {"t": 1, "value": 0.5, "label": 3, "sensor": "a7"},
        {"t": 2, "value": "broken", "label": None, "sensor": 7},
        {"t": 3, "value": 1000.0, "label": 4, "sensor": "b"},
        {"t": 4, "value": "1_0", "label": 5, "sensor": "c"},
    ]
    assert all(type(v["label"]) is int for v in values if v["label"] is not None)


def test_csv_delimiter_is_guessed_from_the_header(tmp_path):
    path = tmp_path / "skab.csv"
    path.write_text("datetime;Current;anomaly\n2020-02-08 13:30:47;2.1;0.0\n")
    (record,) = drain(FileSource(path, time_field="datetime"))
    assert record.value == {"datetime": "2020-02-08 13:30:47", "Current": 2.1, "anomaly": 0.0}
    assert record.event_time == parse_time("2020-02-08T13:30:47+00:00")


def test_csv_is_read_in_chunks_and_resumes_inside_a_chunk(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("i\n" + "".join(f"{i}\n\n" for i in range(25)))
    source = FileSource(path, batch_rows=4)
    first = source.poll(max_records=10, timeout=0)
    assert [r.value["i"] for r in first] == list(range(10))
    resumed = FileSource(path, batch_rows=4)
    resumed.seek(next_positions(first))
    assert [r.value["i"] for r in drain(resumed, max_records=3)] == list(range(10, 25))
    resumed.seek({str(path): 25})
    assert resumed.exhausted


def test_jsonl_lines_stay_raw_bytes_and_bad_lines_are_kept(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"ts": 10, "x": 1}\n\n{broken\n{"ts": 12, "x": 3}\r\n')
    records = drain(FileSource(path, time_field="ts"))
    assert [r.value for r in records] == [b'{"ts": 10, "x": 1}', b"{broken", b'{"ts": 12, "x": 3}']
    assert [r.position[1] for r in records] == [0, 2, 3]
    assert [r.event_time for r in records] == [10.0, None, 12.0]


def test_parquet_rows_and_timestamps(tmp_path):
    import datetime as dt

    path = tmp_path / "p.parquet"
    moments = [dt.datetime(2024, 1, 1, 0, 0, i, tzinfo=dt.timezone.utc) for i in range(3)]
    write_parquet(path, [{"at": m, "v": i} for i, m in enumerate(moments)])
    records = drain(FileSource(path, time_field="at"))
    assert [r.value["v"] for r in records] == [0, 1, 2]
    assert [r.event_time for r in records] == [m.timestamp() for m in moments]


def test_parquet_seek_skips_whole_row_groups(tmp_path):
    path = tmp_path / "groups.parquet"
    write_parquet(path, [{"i": i} for i in range(50)], row_group_size=8)
    assert pq.ParquetFile(path).num_row_groups == 7
    for start in (0, 7, 8, 19, 49, 50):
        source = FileSource(path, batch_rows=3)
        source.seek({str(path): start})
        got = [r.value["i"] for r in drain(source)]
        assert got == list(range(start, 50))
        assert [r.position[1] for r in drain(FileSource(path))][start:] == got


@pytest.fixture
def three_files(tmp_path):
    """Interleaved event times across formats; a tie at t=30 between a.csv and b.jsonl."""
    (tmp_path / "a.csv").write_text("ts,src\n10,a\n30,a\n50,a\n")
    write_jsonl(tmp_path / "b.jsonl", [{"ts": 20, "src": "b"}, {"ts": 30, "src": "b"},
                                      "not json", {"ts": 60, "src": "b"}])
    write_parquet(tmp_path / "c.parquet", [{"ts": 5, "src": "c"}, {"ts": 40, "src": "c"}])
    (tmp_path / "notes.txt").write_text("ignored: unknown extension")
    (tmp_path / ".hidden.csv").write_text("ts,src\n0,hidden\n")
    return tmp_path


def label(record):
    value = record.value
    if isinstance(value, bytes):
        value = json.loads(value) if value.startswith(b"{") else {"src": "bad", "ts": None}
    return f"{value['src']}{value['ts']}"


def test_directory_merges_files_in_event_time_order(three_files):
    source = FileSource(three_files, time_field="ts")
    assert [p.rsplit("/", 1)[1] for p in source.streams] == ["a.csv", "b.jsonl", "c.parquet"]
    records = drain(source, max_records=2)
    # ties: file order (a before b); an unreadable line follows its predecessor in its file
    assert [label(r) for r in records] == [
        "c5", "a10", "b20", "a30", "b30", "badNone", "c40", "a50", "b60"]


def test_glob_without_time_field_reads_files_one_after_another(three_files):
    source = FileSource(str(three_files / "[ab].*"))
    assert [label(r) for r in drain(source)] == [
        "a10", "a30", "a50", "b20", "b30", "badNone", "b60"]


def test_explicit_format_restricts_a_directory(three_files):
    source = FileSource(three_files, format="csv")
    assert [label(r) for r in drain(source)] == ["a10", "a30", "a50"]


def test_resume_at_every_split_gives_the_uninterrupted_stream(three_files):
    full = drain(FileSource(three_files, time_field="ts"))
    for split in range(len(full) + 1):
        source = FileSource(three_files, time_field="ts")
        head = source.poll(max_records=split, timeout=0)
        resumed = FileSource(three_files, time_field="ts")
        resumed.seek(next_positions(head))
        assert head + drain(resumed) == full, split


def test_missing_inputs_and_bad_options_fail_clearly(tmp_path):
    (tmp_path / "x.txt").write_text("a\n")
    (tmp_path / "ok.csv").write_text("a\n1\n")
    with pytest.raises(FileNotFoundError, match="no such file"):
        FileSource(tmp_path / "missing.csv")
    with pytest.raises(FileNotFoundError, match="no file matches"):
        FileSource(str(tmp_path / "*.parquet"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no csv, jsonl or parquet files"):
        FileSource(empty)
    with pytest.raises(ValueError, match="cannot tell the format"):
        FileSource(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="unknown file format"):
        FileSource(tmp_path / "ok.csv", format="xml")
    with pytest.raises(ValueError, match="speed"):
        FileSource(tmp_path / "ok.csv", speed=0)
    with pytest.raises(ValueError, match="no column 'ts'"):
        FileSource(tmp_path / "ok.csv", time_field="ts").poll(1, 0)
    assert len(drain(FileSource(tmp_path / "x.txt", format="csv"))) == 0


def test_unreadable_times_keep_file_order_and_warn_once(tmp_path, caplog):
    path = tmp_path / "t.csv"
    path.write_text("ts,v\n2024-01-01 00:00:00,1\nyesterday,2\nlater,3\n2024-01-01 00:00:02,4\n")
    with caplog.at_level(logging.WARNING, logger="streamal.connectors.files"):
        records = drain(FileSource(path, time_field="ts"))
    assert [r.value["v"] for r in records] == [1, 2, 3, 4]
    assert [r.event_time is None for r in records] == [False, True, True, False]
    assert len([m for m in caplog.messages if "cannot read event time" in m]) == 1


def test_time_parsing():
    assert parse_time("2014-04-01 00:05:00") == 1396310700.0
    assert parse_time("2014-04-01T00:05:00Z") == 1396310700.0
    assert parse_time("2014-04-01T02:05:00+02:00") == 1396310700.0
    assert parse_time("1396310700.5") == 1396310700.5
    assert parse_time(1396310700250 / 1000) == 1396310700.25
    assert parse_time("01/04/2014 00:05", "%d/%m/%Y %H:%M") == 1396310700.0
    assert parse_time("2014-04-01", "%d/%m/%Y") is None
    assert parse_time(float("nan")) is None
    assert parse_time(True) is None
    assert parse_time(None) is None


class VirtualClock:
    """``time.monotonic`` and ``time.sleep`` for the file source: sleeping advances the
    clock at once, so pacing is checked exactly and no test waits on the machine."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    import streamal.connectors.files as files

    fake = VirtualClock()
    monkeypatch.setattr(files, "time", fake)  # the module's own name: nothing else sees it
    return fake


def test_speed_replays_by_event_time_and_respects_the_poll_timeout(tmp_path, clock):
    path = tmp_path / "s.csv"
    path.write_text("ts,v\n" + "".join(f"{t},{t}\n" for t in (0, 1, 2, 3, 4)))
    source = FileSource(path, time_field="ts", speed=100.0)  # 4 s of events in 0.04 s
    start = clock.now
    first = source.poll(max_records=10, timeout=0)
    assert [r.value["v"] for r in first] == [0]  # the next one is not due yet
    assert clock.slept == []  # a zero timeout never waits
    records = first + drain(source, timeout=1.0)
    assert [r.value["v"] for r in records] == [0, 1, 2, 3, 4]
    assert clock.now - start == pytest.approx(0.04)  # each record at its event time / 100

    slow = FileSource(path, time_field="ts", speed=0.01)  # 100 s between records
    assert len(slow.poll(10, 0)) == 1
    start = clock.now
    assert slow.poll(10, timeout=0.05) == []
    assert clock.now - start == pytest.approx(0.05)  # waits out the timeout, not the record
    assert not slow.exhausted
