"""Crash loop and broker restarts: the full-size reliability benchmarks (CI runs small ones).

``--kills K`` (default): a Kafka replay of N sensor records (1 % bad ones mixed in) through
``streamal run sensor_anomaly_kafka``, SIGKILLed at K random points and restarted each time.
``--broker-restarts R``: one ``streamal run`` over the same replay, while the broker (tansu on
its s3 engine, a local moto server) is SIGKILLed and restarted R times at random points.

Both compare against an uninterrupted ``streamal run`` of the same topic and check: every input
has an output (score or dead letter); the final model equals the uninterrupted one (max abs
weight difference); positions and counters equal; duplicates only for records at or after the
checkpoint a restart resumed from (crash loop); each broker outage logged once. The result
goes to ``bench/out/crash_loop-*.json`` and one table row is printed for ``BENCHMARKS.md``.

    python bench/crash_loop.py --records 100000 --kills 20
    python bench/crash_loop.py --records 40000 --broker-restarts 5
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

from harness import (  # noqa: E402
    KINDS,
    BrokerProcess,
    bad_values,
    cli_command,
    create_topics,
    free_port,
    max_weight_diff,
    mix,
    model_arrays,
    outputs,
    produce,
    scrape,
    sensor_overrides,
    sensor_records,
    wait_for,
)

from streamal.checkpoint import CheckpointStore, read_state  # noqa: E402

TOPIC = "sensors"


def records_in(port: int) -> float:
    return scrape(port).get("streamal_records_in_total", 0.0)


def start(overrides: list[str], log: Path, port: int) -> subprocess.Popen:
    with open(log, "a") as stderr:
        return subprocess.Popen(cli_command(overrides + [f"observability.metrics_port={port}"]),
                                stdout=subprocess.DEVNULL, stderr=stderr)


def reference_run(bootstrap: str, work: Path, total: int, every: int,
                  outputs: bool = True) -> dict[str, Any]:
    """The uninterrupted run; without ``outputs`` in this process, writing none (on the s3
    engine every output batch is an object of the local S3 server, and reading them back
    slows down with their number)."""
    create_topics(bootstrap, *[f"reference-{kind}" for kind in KINDS])
    overrides = sensor_overrides(bootstrap, TOPIC, "reference", work / "reference", **{
        "checkpoint.every_records": every, "run.max_records": total})
    started = time.monotonic()
    if outputs:
        done = subprocess.run(cli_command(overrides), capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the reference run failed:\n{done.stderr[-3000:]}")
    else:
        import torch

        from streamal.pipelines import build_pipeline, load_spec

        torch.set_num_threads(1)
        build_pipeline(load_spec("sensor_anomaly_kafka", overrides), sinks={}).run(
            max_records=total)
    return {"seconds": time.monotonic() - started, "checkpoints": work / "reference"}


def crash_loop(bootstrap: str, work: Path, total: int, kills: int, every: int,
               rng: random.Random) -> dict[str, Any]:
    create_topics(bootstrap, *[f"crash-{kind}" for kind in KINDS])
    checkpoints = work / "crash"
    overrides = sensor_overrides(bootstrap, TOPIC, "crash", checkpoints, **{
        "checkpoint.every_records": every, "run.max_records": total})
    store = CheckpointStore(checkpoints)
    points = sorted(rng.sample(range(every, total - every), kills))
    resumed_at, killed_at = [], []
    started = time.monotonic()
    for point in points:
        found = store.load_latest()
        resumed_at.append(found[1]["positions"][f"{TOPIC}:0"] if found else 0)
        port = free_port()
        process = start(overrides + [f"run.max_records={total - resumed_at[-1]}"],
                        work / "crash.log", port)
        wait_for(lambda p=point, port=port: records_in(port) >= p, 600,
                 f"records_in {point}", process, interval=0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at.append(point)
        print(f"  killed at ~{point} (resumed from {resumed_at[-1]})", flush=True)
    found = store.load_latest()
    resumed_at.append(found[1]["positions"][f"{TOPIC}:0"] if found else 0)
    process = start(overrides + [f"run.max_records={total - resumed_at[-1]}"],
                    work / "crash.log", free_port())
    if process.wait() != 0:
        raise SystemExit(f"the last run failed; see {work / 'crash.log'}")
    return {"seconds": time.monotonic() - started, "checkpoints": checkpoints,
            "resumed_at": resumed_at, "killed_at": killed_at, "name": "crash"}


def broker_restarts(broker: BrokerProcess, work: Path, total: int, restarts: int, every: int,
                    outage: float, rng: random.Random) -> dict[str, Any]:
    bootstrap = broker.bootstrap
    assert bootstrap is not None
    create_topics(bootstrap, *[f"restarts-{kind}" for kind in KINDS])
    checkpoints = work / "restarts"
    overrides = sensor_overrides(bootstrap, TOPIC, "restarts", checkpoints, **{
        "checkpoint.every_records": every, "run.max_records": total})
    port = free_port()
    log = work / "restarts.log"
    started = time.monotonic()
    process = start(overrides, log, port)
    gap = total // (restarts + 1)  # spread out: each outage is over before the next
    points = [(k + 1) * gap + rng.randrange(-gap // 5, gap // 5) for k in range(restarts)]
    for k, point in enumerate(points):
        wait_for(lambda p=point: records_in(port) >= p, 600, f"records_in {point}", process)
        broker.kill()
        time.sleep(outage)
        broker.start()
        # the next outage only once this one is over (else the two are one outage)
        wait_for(lambda k=k: len(re.findall("kafka client works again", log.read_text())) > k,
                 300, f"the end of outage {k + 1} in the log", process)
        print(f"  broker restarted at ~{point}", flush=True)
    if process.wait() != 0:
        raise SystemExit(f"the run failed; see {log}")
    text = log.read_text()
    return {"seconds": time.monotonic() - started, "checkpoints": checkpoints,
            "name": "restarts", "killed_at": points,
            "outage_lines": len(re.findall("kafka client trouble", text)),
            "recovery_lines": len(re.findall("kafka client works again", text)),
            "outage_seconds": [float(x) for x in re.findall(r"works again after ([\d.]+) s",
                                                            text)],
            "log_lines": len(text.splitlines())}


def check(bootstrap: str, ids: dict[str, Any], run: dict[str, Any],
          reference: dict[str, Any]) -> dict[str, Any]:
    out = outputs(bootstrap, run["name"])
    counts = collections.Counter(r["id"] for r in out["scores"] + out["dead_letter"])
    missing = set(ids) - set(counts)
    duplicated = {i: c for i, c in counts.items() if c > 1}
    late = []
    for record_id, count in duplicated.items():  # only after a resume point, once per resume
        offset = int(record_id.rsplit("@", 1)[1])
        allowed = 1 + sum(1 for p in run.get("resumed_at", [])[1:] if p <= offset)
        if "resumed_at" in run and count > allowed:
            late.append(record_id)
    diff = max_weight_diff(model_arrays(run["checkpoints"]),
                           model_arrays(reference["checkpoints"]))
    _, meta = read_state(CheckpointStore(run["checkpoints"]).list()[-1])
    _, ref = read_state(CheckpointStore(reference["checkpoints"]).list()[-1])
    skip = {"checkpoints"}
    same_counters = ({k: v for k, v in meta["counters"].items() if k not in skip}
                     == {k: v for k, v in ref["counters"].items() if k not in skip})
    return {"inputs": len(ids), "missing": len(missing), "duplicates": sum(duplicated.values())
            - len(duplicated), "duplicates_before_resume_point": len(late),
            "max_weight_diff": diff, "positions_equal": meta["positions"] == ref["positions"],
            "counters_equal": same_counters}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="good records")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--broker-restarts", type=int, default=0,
                        help="restart the broker this many times instead of killing streamal")
    parser.add_argument("--outage", type=float, default=2.0, help="seconds the broker is away")
    parser.add_argument("--every", type=int, default=2000, help="checkpoint.every_records")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="streamal-crash-loop-"))
    storage = "s3" if args.broker_restarts else "memory"
    broker = BrokerProcess(work / "broker", storage=storage)
    bootstrap = broker.start()
    try:
        items = mix(sensor_records(args.records, seed=args.seed + 1),
                    bad_values(args.records // 100, seed=args.seed + 2), seed=args.seed + 3)
        ids = produce(bootstrap, TOPIC, items, partitions=1)
        print(f"{len(ids)} records in {TOPIC} ({storage} broker); reference run ...", flush=True)
        reference = reference_run(bootstrap, work, len(items), args.every,
                                  outputs=not args.broker_restarts)
        print(f"  {reference['seconds']:.1f} s", flush=True)
        if args.broker_restarts:
            run = broker_restarts(broker, work, len(items), args.broker_restarts, args.every,
                                  args.outage, rng)
        else:
            run = crash_loop(bootstrap, work, len(items), args.kills, args.every, rng)
        result = {**check(bootstrap, ids, run, reference),
                  **{k: v for k, v in run.items() if k != "checkpoints"},
                  "reference_seconds": reference["seconds"], "args": vars(args)}
    finally:
        broker.stop()
    kind = f"restarts{args.broker_restarts}" if args.broker_restarts else f"kills{args.kills}"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / f"crash_loop-{kind}-{args.records}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    faults = args.broker_restarts or args.kills
    what = "broker restarts" if args.broker_restarts else "SIGKILLs of streamal run"
    print(f"| {len(ids)} | {faults} {what} | {result['missing']} | {result['duplicates']} "
          f"| {result['duplicates_before_resume_point']} | {result['max_weight_diff']:.1e} "
          f"| {result['positions_equal'] and result['counters_equal']} "
          f"| {run['seconds']:.0f} s (uninterrupted {reference['seconds']:.0f} s) |")
    if args.broker_restarts:
        print(f"outage lines {run['outage_lines']}, recovery lines {run['recovery_lines']} "
              f"(outages {run['outage_seconds']} s, broker away {args.outage} s), "
              f"log lines {run['log_lines']}")
    print(f"details: {path}")
    ok = (result["missing"] == 0 and result["max_weight_diff"] <= 1e-6
          and result["duplicates_before_resume_point"] == 0 and result["positions_equal"]
          and result["counters_equal"])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
