"""Small generated recordings, labels and specs for the backtest tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

START = 1_700_000_000  # epoch seconds of the first row; rows are one minute apart
STEP = 60


def stamp(row: int) -> str:
    """The ISO time of a row, as the CSV files write it."""
    import datetime as dt

    when = dt.datetime.fromtimestamp(START + STEP * row, dt.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S")


def write_series(path: Path, rows: int = 240, spike: range = range(180, 190),
                 label_column: bool = False) -> Path:
    """A smooth periodic series with a burst of large values on the ``spike`` rows."""
    lines = ["timestamp,value" + (",anomaly" if label_column else "")]
    for i in range(rows):
        value = math.sin(i / 6) + (8.0 if i in spike else 0.0)
        extra = f",{int(i in spike)}" if label_column else ""
        lines.append(f"{stamp(i)},{value:.6f}{extra}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_labels(path: Path, windows: dict[str, list[tuple[int, int]]]) -> Path:
    """A NAB-format labels file: windows given as (first row, last row)."""
    data = {name: [[stamp(a) + ".000000", stamp(b) + ".000000"] for a, b in wins]
            for name, wins in windows.items()}
    path.write_text(json.dumps(data))
    return path


def anomaly_spec(path: Path, source: str, report: Path, extra: str = "") -> Path:
    """A spec for the anomaly backtest of ``source``: fixed-threshold alerts, no drift."""
    path.write_text(f"""
[source]
type = "file"
path = {json.dumps(source)}
time_field = "timestamp"

[decode]
time_field = "timestamp"

[model]
seed = 0

[alerts]
policy = "fixed"
value = 0.5
warmup = 20

[drift]
detector = "ADWIN"

[outputs]
directory = {json.dumps(str(report / "unused"))}

[backtest]
report = {json.dumps(str(report))}
{extra}
""")
    return path


def write_classes(path: Path, rows: int = 300, every: int = 5, bad_line: bool = True) -> Path:
    """JSONL of two classes; one row in ``every`` carries its label; every row its truth."""
    import random

    rng = random.Random(0)
    lines = []
    for i in range(rows):
        y = rng.choice(["idle", "busy"])
        c = 1.0 if y == "busy" else -1.0
        lines.append(json.dumps({"seq": i, "time": START + i, "cpu": 50 + 30 * c + rng.gauss(0, 5),
                                 "net": 5 + 3 * c + rng.gauss(0, 0.5),
                                 "label": y if i % every == 0 else None, "true_label": y}))
    if bad_line:
        lines.insert(rows // 2, "{not json")
    path.write_text("\n".join(lines) + "\n")
    return path


def backtest_cli(*args: str) -> int:
    """``streamal backtest ARGS --no-progress`` in this process; torch's thread count (which
    the command sets to 1) is restored afterwards."""
    import torch

    from streamal.cli import main

    threads = torch.get_num_threads()
    try:
        return main(["backtest", *args, "--no-progress"])
    finally:
        torch.set_num_threads(threads)
