"""Detection quality on NAB and SKAB: streamal's default detector against river's.

Every detector gets the same features and the same per-series calibration
(:func:`streamal.estimators.detector.series_detector` for NAB's univariate
series, :func:`~streamal.estimators.detector.sensor_detector` for SKAB's
sensor records); only the raw detector inside differs:

- ``streamal``: :class:`~streamal.ActivationDetector` (the presets' defaults);
- ``HalfSpaceTrees``: ``preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees``;
- ``OneClassSVM``: ``preprocessing.StandardScaler() | anomaly.OneClassSVM(nu=0.2)``;
- ``LODA``: ``preprocessing.StandardScaler() | anomaly.LODA``.

Each record is scored, then learnt (prequential), one model per series.

NAB (the 18 series of ``../shared/data/nab`` with ``labels.json``): NAB score
under the standard, reward-low-FP and reward-low-FN profiles, with one
threshold for all series chosen by NAB's own sweep, and point-wise ROC-AUC of
the rows past the probationary period (label: inside a window). Each detector
is told the series' probationary period, as NAB tells its detectors; the
presets use it as calibration window (and a fifth of it as alert hold-off),
and estimate the series' period from its probationary records for the
seasonal check that sits beside the raw detector (the same check for
every detector).

SKAB (``valve1``, 16 files): the first 400 rows of each file are its training
part (always learnt, never scored); F1, FAR and MAR pooled over the test rows
of all files at the presets' alert level (calibrated score >= 0.99), and
point-wise ROC-AUC. The anomaly-free file is not used: SKAB's protocol trains
on each file's own first 400 rows, and its sensors run at other levels.

Usage (from the repository root)::

    python bench/anomaly_quality.py [--jobs 2] [--seed 0] [--datasets nab,skab]
        [--detectors streamal,HalfSpaceTrees,OneClassSVM,LODA] [--json OUT.json]

Runs are seeded (network, trees, projections), so two runs print the same table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from streamal.evaluation import nab_score, probationary_length, read_nab_labels, roc_auc
from streamal.evaluation.anomaly import skab_metrics

DEFAULT_NAB = Path("..") / "shared" / "data" / "nab"
DEFAULT_SKAB = Path("..") / "shared" / "data" / "skab"
DETECTORS = ("streamal", "HalfSpaceTrees", "OneClassSVM", "LODA")
NAB_PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
SKAB_TRAIN_ROWS = 400
SKAB_SENSORS = (
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
)


def raw_detector(name: str, seed: int):
    """The raw detector put inside the shared features and calibration (None: streamal's)."""
    from river import anomaly, preprocessing

    if name == "streamal":
        return None
    if name == "HalfSpaceTrees":
        return preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=seed)
    if name == "OneClassSVM":
        return preprocessing.StandardScaler() | anomaly.OneClassSVM(nu=0.2)
    if name == "LODA":
        return preprocessing.StandardScaler() | anomaly.LODA(seed=seed)
    raise ValueError(f"unknown detector {name!r}; choose from {DETECTORS}")


def run_stream(model, records: list[dict]) -> np.ndarray:
    """Prequential loop: score each record, then learn it."""
    scores = np.empty(len(records))
    for i, x in enumerate(records):
        scores[i] = model.score_one(x)
        model.learn_one(x)
    return scores


def _task(task: tuple) -> tuple:
    """One (dataset, detector, series) run in a worker process."""
    import torch

    from streamal.estimators.detector import sensor_detector, series_detector

    torch.set_num_threads(1)
    dataset, detector, name, records, setting, seed = task
    start = time.perf_counter()
    inner = raw_detector(detector, seed)
    if dataset == "nab":
        model = series_detector(probation=setting, seed=seed, detector=inner)
    else:
        model = sensor_detector(warm_up=setting, seed=seed, detector=inner)
    scores = run_stream(model, records)
    return dataset, detector, name, scores, time.perf_counter() - start


# ---- data -------------------------------------------------------------------------
def load_nab(root: Path) -> tuple[dict[str, pd.DataFrame], dict]:
    windows = read_nab_labels(root / "labels.json")
    series = {}
    for name in sorted(windows):
        frame = pd.read_csv(root / "data" / name)
        frame["timestamp"] = pd.to_datetime(frame["timestamp"])
        series[name] = frame
    return series, windows


def load_skab(root: Path) -> dict[str, pd.DataFrame]:
    files = sorted((root / "valve1").glob("*.csv"), key=lambda p: int(p.stem))
    return {f"valve1/{p.name}": pd.read_csv(p, sep=";") for p in files}


def nab_tasks(series: dict[str, pd.DataFrame], detectors, seed: int) -> list[tuple]:
    tasks = []
    for name, frame in series.items():
        records = [{"value": float(v)} for v in frame["value"].to_numpy()]
        probation = probationary_length(len(frame))
        for det in detectors:
            tasks.append(("nab", det, name, records, probation, seed))
    return tasks


def skab_tasks(files: dict[str, pd.DataFrame], detectors, seed: int) -> list[tuple]:
    tasks = []
    for name, frame in files.items():
        values = frame[list(SKAB_SENSORS)].to_numpy(dtype=float)
        records = [dict(zip(SKAB_SENSORS, row.tolist())) for row in values]
        for det in detectors:
            tasks.append(("skab", det, name, records, SKAB_TRAIN_ROWS, seed))
    return tasks


# ---- metrics ------------------------------------------------------------------------
def nab_metrics(series, windows, scores: dict[str, np.ndarray]) -> dict:
    inputs = {name: (series[name]["timestamp"], scores[name]) for name in series}
    out = {p: nab_score(inputs, windows, profile=p).normalized_score for p in NAB_PROFILES}
    labels, values = [], []
    for name, frame in series.items():
        t = frame["timestamp"].to_numpy()
        inside = np.zeros(len(frame), dtype=bool)
        for start, end in windows[name]:
            inside |= (t >= np.datetime64(start)) & (t <= np.datetime64(end))
        p = probationary_length(len(frame))
        labels.append(inside[p:])
        values.append(scores[name][p:])
    out["roc_auc"] = roc_auc(np.concatenate(labels), np.concatenate(values))
    out["threshold"] = nab_score(inputs, windows).threshold
    return out


def skab_results(files, scores: dict[str, np.ndarray], alert: float) -> dict:
    truth = [files[n]["anomaly"].to_numpy()[SKAB_TRAIN_ROWS:].astype(int) for n in files]
    test = [scores[n][SKAB_TRAIN_ROWS:] for n in files]
    m = skab_metrics(truth, test, threshold=alert)
    return {
        "f1": m.f1,
        "far_percent": m.far_percent,
        "mar_percent": m.mar_percent,
        "roc_auc": roc_auc(np.concatenate(truth), np.concatenate(test)),
    }


# ---- report -------------------------------------------------------------------------
def print_nab(results: dict, seconds: dict) -> None:
    print("\nNAB, 18 series, 25 windows (normalised score, one threshold swept over all series)")
    print(f"| {'detector':15s} | standard | low FP | low FN | ROC-AUC | threshold | CPU s |")
    print("|" + "---|" * 7)
    for det, r in results.items():
        print(
            f"| {det:15s} | {r['standard']:8.2f} | {r['reward_low_FP_rate']:6.2f} | "
            f"{r['reward_low_FN_rate']:6.2f} | {r['roc_auc']:7.3f} | {r['threshold']:9.4f} | "
            f"{seconds[det]:5.0f} |"
        )


def print_skab(results: dict, seconds: dict, alert: float) -> None:
    print(f"\nSKAB valve1, 16 files, test rows pooled, alert at calibrated score >= {alert}")
    print(f"| {'detector':15s} | F1    | FAR %  | MAR %  | ROC-AUC | CPU s |")
    print("|" + "---|" * 6)
    for det, r in results.items():
        print(
            f"| {det:15s} | {r['f1']:.3f} | {r['far_percent']:6.1f} | {r['mar_percent']:6.1f} | "
            f"{r['roc_auc']:7.3f} | {seconds[det]:5.0f} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nab", type=Path, default=DEFAULT_NAB)
    parser.add_argument("--skab", type=Path, default=DEFAULT_SKAB)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", default="nab,skab")
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    datasets = [d for d in args.datasets.split(",") if d]
    detectors = [d for d in args.detectors.split(",") if d]
    for det in detectors:
        raw_detector(det, 0)  # fail fast on a typo

    from streamal.estimators.detector import sensor_detector

    alert = sensor_detector().detector.alert
    tasks: list[tuple] = []
    series = windows = files = None
    if "nab" in datasets:
        series, windows = load_nab(args.nab)
        tasks += nab_tasks(series, detectors, args.seed)
    if "skab" in datasets:
        files = load_skab(args.skab)
        tasks += skab_tasks(files, detectors, args.seed)
    # longest first, so the workers finish together
    tasks.sort(key=lambda t: -len(t[3]) * (3 if t[1] == "LODA" else 1))

    scores: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    seconds: dict[tuple[str, str], float] = {}
    started = time.perf_counter()
    total_rows = sum(len(t[3]) for t in tasks)
    done_rows = 0
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for i, (dataset, det, name, s, secs) in enumerate(pool.imap_unordered(_task, tasks), 1):
            scores.setdefault((dataset, det), {})[name] = s
            seconds[(dataset, det)] = seconds.get((dataset, det), 0.0) + secs
            done_rows += len(s)
            print(
                f"[{i:3d}/{len(tasks)}] {time.perf_counter() - started:6.0f}s "
                f"{100 * done_rows / total_rows:5.1f}% rows  {dataset} {det:15s} {name} "
                f"({len(s)} rows, {secs:.1f}s)",
                flush=True,
            )

    report: dict = {"seed": args.seed}
    if series is not None:
        nab = {d: nab_metrics(series, windows, scores[("nab", d)]) for d in detectors}
        print_nab(nab, {d: seconds[("nab", d)] for d in detectors})
        report["nab"] = nab
    if files is not None:
        skab = {d: skab_results(files, scores[("skab", d)], alert) for d in detectors}
        print_skab(skab, {d: seconds[("skab", d)] for d in detectors}, alert)
        report["skab"] = skab
    print(f"\nwall time {time.perf_counter() - started:.0f}s with {args.jobs} worker(s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
