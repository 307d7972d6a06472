"""Check that streamal's NAB scorer reproduces NAB's own numbers.

Reads the published detector outputs and ``expected_scores.json`` of the shared NAB
subset (default ``../shared/data/nab`` relative to the repository root), scores every
detector under the three profiles in both modes (``swept``: threshold optimised over the
18 series; ``stored``: NAB's stored threshold), prints ours next to the expected values,
also checks the hand-made cases, and exits with status 1 on any mismatch.

Usage (from the repository root)::

    python bench/nab_scorer_check.py [--data ../shared/data/nab] [--verbose]

Tolerances are those suggested by the data's README: 1e-9 on raw scores, 1e-7 on
normalised scores; thresholds and TP/FP/FN/TN counts must match exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from streamal.evaluation.nab import NabResult, nab_score, windows_from_labels

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path("..") / "shared" / "data" / "nab"
RAW_TOL = 1e-9
NORM_TOL = 1e-7
COUNTS = ("tp", "fp", "fn", "tn", "total")


def load_detector(data_dir: Path, detector: str, series: list[str]) -> dict[str, pd.DataFrame]:
    """Published ``timestamp``/``anomaly_score`` columns of one detector, per series."""
    out = {}
    for name in series:
        folder, file = name.split("/")
        path = data_dir / "published_results" / detector / folder / f"{detector}_{file}.gz"
        frame = pd.read_csv(
            path,
            usecols=["timestamp", "anomaly_score"],
            compression="gzip",
        )
        frame["timestamp"] = pd.to_datetime(frame["timestamp"])
        out[name] = frame
    return out


def compare(label: str, ours: NabResult, expected: dict, verbose: bool) -> list[str]:
    """List of mismatch messages between a NabResult and one expected entry."""
    errors = []
    if ours.threshold != expected["threshold"]:
        errors.append(f"{label}: threshold {ours.threshold!r} != {expected['threshold']!r}")
    for key, tol in (
        ("raw_score", RAW_TOL),
        ("null_raw_score", RAW_TOL),
        ("perfect_raw_score", RAW_TOL),
        ("normalized_score", NORM_TOL),
    ):
        attr = {"null_raw_score": "null_score", "perfect_raw_score": "perfect_score"}.get(key, key)
        got = getattr(ours, attr)
        if abs(got - expected[key]) > tol:
            errors.append(f"{label}: {key} {got!r} != {expected[key]!r}")
    for key in COUNTS:
        if getattr(ours, key) != expected[key]:
            errors.append(f"{label}: {key} {getattr(ours, key)} != {expected[key]}")
    for name, exp in expected["per_series"].items():
        got = ours.per_series[name]
        if abs(got.raw_score - exp["raw_score"]) > RAW_TOL:
            errors.append(f"{label} {name}: raw {got.raw_score!r} != {exp['raw_score']!r}")
        for key in COUNTS:
            if getattr(got, key) != exp[key]:
                errors.append(f"{label} {name}: {key} {getattr(got, key)} != {exp[key]}")
    sweep_exp = expected.get("sweep")
    sw = ours.sweep
    if sweep_exp is not None and sw is None:
        errors.append(f"{label}: no sweep returned")
    elif sweep_exp is not None and sw is not None:
        if sw.n_candidates != sweep_exp["n_candidate_thresholds"]:
            errors.append(
                f"{label}: {sw.n_candidates} candidates != {sweep_exp['n_candidate_thresholds']}"
            )
        if list(sw.tied_thresholds) != list(sweep_exp["thresholds_tied_at_max"]):
            errors.append(
                f"{label}: tied thresholds {sw.tied_thresholds} != "
                f"{sweep_exp['thresholds_tied_at_max']}"
            )
        if abs(sw.best_raw_score - sweep_exp["pooled_max_raw_score"]) > RAW_TOL:
            errors.append(f"{label}: pooled max {sw.best_raw_score!r}")
    if verbose and not errors:
        print(f"  ok {label}: per-series, counts, sweep")
    return errors


def check_hand_cases(cases: list[dict]) -> list[str]:
    """Score the README's tiny single-series cases."""
    errors = []
    for case in cases:
        n = case["n_rows"]
        times = pd.date_range(
            case["timestamp_start"], periods=n, freq=f"{case['timestamp_step_seconds']}s"
        )
        windows = {"case": [tuple(pd.Timestamp(t) for t in case["window_timestamps"])]}
        res = nab_score(
            {"case": (times, case["anomaly_scores"])},
            windows,
            profile=case["profile"],
            threshold=case["threshold"],
        )
        exp = case["expected"]
        ok = abs(res.raw_score - exp["raw_score"]) <= RAW_TOL and all(
            getattr(res, k) == exp[k] for k in COUNTS
        )
        ok = ok and abs(res.normalized_score - exp["normalized_score_single_file"]) <= NORM_TOL
        print(
            f"hand case {case['name']:<30} raw ours {res.raw_score:.12f} "
            f"expected {exp['raw_score']:.12f}  {'OK' if ok else 'MISMATCH'}"
        )
        if not ok:
            errors.append(f"hand case {case['name']}: {res}")
    return errors


def main(argv: list[str] | None = None) -> int:
    """Run the check; return the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="NAB subset folder (relative paths are taken from the repository root)",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    data_dir = args.data if args.data.is_absolute() else REPO_ROOT / args.data
    expected_path = data_dir / "published_results" / "expected_scores.json"
    if not expected_path.exists():
        print(f"NAB data not found under {args.data}; nothing checked", file=sys.stderr)
        return 2
    expected = json.loads(expected_path.read_text(encoding="utf-8"))
    labels = json.loads((data_dir / "labels.json").read_text(encoding="utf-8"))
    series = list(expected["series"]) if "series" in expected else sorted(labels)
    windows = windows_from_labels({name: labels[name] for name in series})

    errors = check_hand_cases(expected.get("hand_cases", []))
    header = (
        f"{'detector':<17}{'profile':<20}{'mode':<7}{'threshold':>22}"
        f"{'ours':>12}{'expected':>12}{'|diff|':>10}  status"
    )
    print(header)
    print("-" * len(header))
    start = time.perf_counter()
    for detector, by_profile in expected["results"].items():
        outputs = load_detector(data_dir, detector, series)
        for profile, by_mode in by_profile.items():
            for mode, exp in by_mode.items():
                threshold = None if mode == "swept" else exp["threshold"]
                res = nab_score(outputs, windows, profile=profile, threshold=threshold)
                label = f"{detector}/{profile}/{mode}"
                errs = compare(label, res, exp, args.verbose)
                errors += errs
                diff = abs(res.normalized_score - exp["normalized_score"])
                print(
                    f"{detector:<17}{profile:<20}{mode:<7}{res.threshold!r:>22}"
                    f"{res.normalized_score:>12.4f}{exp['normalized_score']:>12.4f}"
                    f"{diff:>10.1e}  {'OK' if not errs else 'MISMATCH'}"
                )
    elapsed = time.perf_counter() - start
    for err in errors:
        print("MISMATCH", err, file=sys.stderr)
    print(
        f"{'all match' if not errors else f'{len(errors)} mismatches'} "
        f"(raw tol {RAW_TOL:g}, normalised tol {NORM_TOL:g}; scoring took {elapsed:.1f} s)"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
