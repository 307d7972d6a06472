"""Soak: a million records through ``streamal run``, from a file and from Kafka.

Watches the ``streamal run`` process while it works: its resident memory (``VmRSS``), its
CPU time and ``streamal_records_in_total`` from its ``/metrics``, every ``--sample``
seconds. Pass: the RSS at the end is within 10 % of the RSS after the first 100 000 records,
and the rate of every 100 000-record window stays close to the others. Rates are given per
wall-clock second (which other load on the machine moves) and per CPU second of the
process (which it barely moves). Results go to ``bench/out/soak-*.json``; one table row per
pipeline is printed for ``BENCHMARKS.md``.

    python bench/soak.py --records 1000000 --pipeline file
    python bench/soak.py --records 1000000 --pipeline kafka
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

from harness import (  # noqa: E402
    FEATURES,
    KINDS,
    BrokerProcess,
    cli_command,
    create_topics,
    free_port,
    produce,
    scrape,
    sensor_overrides,
    sensor_records,
)

CHUNK = 100_000


def chunks(total: int, seed: int) -> Any:
    """``total`` sensor records in chunks of 100 000 (a level shift in each), seq/time running."""
    for start in range(0, total, CHUNK):
        rows = sensor_records(min(CHUNK, total - start), seed=seed + start // CHUNK)
        for row in rows:
            row["seq"] += start
            row["time"] += start
        yield rows


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (``/proc/PID/stat``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def watch(command: list[str], port: int, sample: float, log: Path) -> dict[str, Any]:
    """Run ``command``; sample (seconds, records_in, RSS MB, CPU s) until it ends."""
    samples: list[tuple[float, float, float, float]] = []
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    started = time.monotonic()
    while process.poll() is None:
        time.sleep(sample)
        records = scrape(port).get("streamal_records_in_total")
        rss, cpu = rss_mb(process.pid), cpu_seconds(process.pid)
        if records is not None and rss is not None and cpu is not None:
            samples.append((time.monotonic() - started, records, rss, cpu))
    if process.returncode != 0:
        raise SystemExit(f"streamal run failed (exit {process.returncode}); see {log}")
    return {"seconds": time.monotonic() - started, "samples": samples}


def summarise(samples: list[tuple[float, float, float, float]], total: int) -> dict[str, Any]:
    """RSS after 100 000 records and at the end; rates per 100 000-record window."""
    first = next(s for s in samples if s[1] >= CHUNK)
    last = samples[-1]
    marks = [samples[0]] + [next((s for s in samples if s[1] >= k), last)
                            for k in range(CHUNK, total + 1, CHUNK)]
    wall, cpu = [], []
    for a, b in zip(marks, marks[1:]):
        if b[1] > a[1] and b[0] > a[0] and b[3] > a[3]:
            wall.append((b[1] - a[1]) / (b[0] - a[0]))
            cpu.append((b[1] - a[1]) / (b[3] - a[3]))

    def spread(values: list[float]) -> float | None:
        return (max(values) - min(values)) / statistics.mean(values) if len(values) > 1 else None

    return {
        "rss_mb_after_100k": first[2], "rss_mb_end": last[2], "records_end": last[1],
        "rss_growth": last[2] / first[2] - 1, "rss_mb_max": max(s[2] for s in samples),
        "window_records_per_s": [round(w) for w in wall],
        "window_records_per_cpu_s": [round(c) for c in cpu],
        "records_per_s_mean": statistics.mean(wall), "records_per_s_spread": spread(wall),
        "records_per_cpu_s_mean": statistics.mean(cpu), "records_per_cpu_s_spread": spread(cpu),
    }


def file_pipeline(work: Path, total: int, seed: int, sample: float) -> dict[str, Any]:
    data = work / "sensors.jsonl"
    with open(data, "w") as f:
        for rows in chunks(total, seed):
            f.writelines(json.dumps(row) + "\n" for row in rows)
    port = free_port()
    overrides = [f"source.path={json.dumps(str(data))}", f"decode.features={json.dumps(FEATURES)}",
                 f"outputs.directory={json.dumps(str(work / 'out'))}",
                 f"checkpoint.directory={json.dumps(str(work / 'ck'))}",
                 f"observability.metrics_port={port}"]
    return watch(cli_command(overrides, spec="backtest_files"), port, sample, work / "file.log")


def kafka_pipeline(work: Path, total: int, seed: int, sample: float) -> dict[str, Any]:
    broker = BrokerProcess(work / "broker", storage="memory")
    bootstrap = broker.start()
    try:
        for rows in chunks(total, seed):
            produce(bootstrap, "sensors", [(r["sensor"], json.dumps(r).encode(), r["seq"])
                                           for r in rows], partitions=1)
        create_topics(bootstrap, *[f"soak-{kind}" for kind in KINDS])
        port = free_port()
        overrides = sensor_overrides(bootstrap, "sensors", "soak", work / "ck", **{
            "run.max_records": total, "observability.metrics_port": port})
        return watch(cli_command(overrides), port, sample, work / "kafka.log")
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--pipeline", choices=("file", "kafka"), default="file")
    parser.add_argument("--sample", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix=f"streamal-soak-{args.pipeline}-"))
    run = (file_pipeline if args.pipeline == "file" else kafka_pipeline)(
        work, args.records, args.seed, args.sample)
    result = {**summarise(run["samples"], args.records), "seconds": run["seconds"],
              "args": vars(args), "samples": run["samples"]}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / f"soak-{args.pipeline}-{args.records}.json"
    path.write_text(json.dumps(result, indent=2))
    wall, cpu = result["window_records_per_s"], result["window_records_per_cpu_s"]
    print(f"| {args.pipeline} | {args.records:,} | {result['rss_mb_after_100k']:.0f} MB "
          f"| {result['rss_mb_end']:.0f} MB | {100 * result['rss_growth']:+.1f} % "
          f"| {result['records_per_s_mean']:,.0f} ({min(wall):,}–{max(wall):,}) "
          f"| {result['records_per_cpu_s_mean']:,.0f} ({min(cpu):,}–{max(cpu):,}) "
          f"| {run['seconds']:.0f} s |")
    print(f"details: {path}")
    sys.exit(0 if result["rss_growth"] <= 0.10 else 1)


if __name__ == "__main__":
    main()
