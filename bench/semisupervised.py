"""Semi-supervised prequential accuracy: ActivationClassifier next to river's classifiers.

Each record is predicted, then learnt; its label is revealed to the models only
on the records a *label mask* chooses. With 100 %, 10 % and 1 % of the labels,
each mask (seeds 0, 1, 2) reveals exactly ``round(frac · n)`` records drawn
uniformly without replacement (``numpy.random.default_rng(seed)``). The
ActivationClassifier learns every record (``y=None`` where the label is hidden,
the model's seed = the mask's seed); river's models learn only the revealed
records. A record a model cannot predict yet (no class seen) counts as wrong.

Data: sklearn's ``load_digits`` (1 797 records, 64 pixels, shuffled with
``sklearn.utils.shuffle(random_state=0)``) and river's ``ImageSegments``
(2 310 records, 18 features, 7 classes), each in its stored order.

River's models, default settings: ``GaussianNB``, ``StandardScaler |
OneVsRestClassifier(LogisticRegression)``, ``HoeffdingTreeClassifier``,
``KNNClassifier``. They are deterministic, so with 100 % of the labels (where
the three masks are the same) they run once.

Usage (from the repository root)::

    python bench/semisupervised.py                    # the BENCHMARKS.md table
    python bench/semisupervised.py --quick            # smoke: 300 records, one mask
    python bench/semisupervised.py --params '{"replay": 0}' --only ours   # a variant
    python bench/semisupervised.py --seeds 3 4 5       # other masks, as a check
    python bench/semisupervised.py --json bench/out/semisupervised.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

FRACTIONS = (1.0, 0.1, 0.01)
SEEDS = (0, 1, 2)
RIVER = ("GaussianNB", "LogReg OvR", "HoeffdingTree", "KNN")
OURS = "Activation"
TARGET_MARGIN = 0.05  # the issue's target: beat river's best by 5 points at 10 % and 1 %
ISSUE_RIVER_BEST = {  # river's best as quoted in the issue (another run, other masks)
    ("digits", 0.1): 0.731,
    ("digits", 0.01): 0.296,
    ("ImageSegments", 0.1): 0.749,
    ("ImageSegments", 0.01): 0.464,
}


# ---- data -------------------------------------------------------------------------------
def load(name: str) -> list[tuple[dict[str, float], Any]]:
    if name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.utils import shuffle

        digits = load_digits()
        X, y = shuffle(digits.data, digits.target, random_state=0)
        return [({f"p{j}": float(v) for j, v in enumerate(row)}, int(t)) for row, t in zip(X, y)]
    from river import datasets

    return list(datasets.ImageSegments())


def label_mask(n: int, frac: float, seed: int) -> np.ndarray:
    """Exactly ``round(frac·n)`` revealed records (at least one), drawn without replacement."""
    revealed = np.zeros(n, dtype=bool)
    chosen = np.random.default_rng(seed).choice(n, max(1, round(frac * n)), replace=False)
    revealed[chosen] = True
    return revealed


# ---- models -----------------------------------------------------------------------------
def river_model(name: str):
    from river import linear_model, multiclass, naive_bayes, neighbors, preprocessing, tree

    makers: dict[str, Callable[[], Any]] = {
        "GaussianNB": naive_bayes.GaussianNB,
        "LogReg OvR": lambda: (
            preprocessing.StandardScaler()
            | multiclass.OneVsRestClassifier(linear_model.LogisticRegression())
        ),
        "HoeffdingTree": tree.HoeffdingTreeClassifier,
        "KNN": neighbors.KNNClassifier,
    }
    return makers[name]()


def prequential(job: tuple[str, str, float, int, dict[str, Any], int | None]) -> float:
    """Accuracy of one model on one stream under one mask (runs in a worker process)."""
    model_name, data_name, frac, seed, params, limit = job
    import torch

    torch.set_num_threads(1)  # one process per core: more threads only contend
    data = load(data_name)[:limit]
    revealed = label_mask(len(data), frac, seed)
    if model_name == OURS:
        from streamal import ActivationClassifier

        model = ActivationClassifier(seed=seed, **params)
    else:
        model = river_model(model_name)
    hits = 0
    for i, (x, y) in enumerate(data):
        hits += model.predict_one(x) == y
        if model_name == OURS:
            model.learn_one(x, y if revealed[i] else None)
        elif revealed[i]:
            model.learn_one(x, y)
    return hits / len(data)


# ---- report -----------------------------------------------------------------------------
def table(
    results: dict[tuple[str, str, float], list[float]],
    datasets: list[str],
    models: list[str],
    fractions: list[float],
) -> str:
    head = "| data | labels | " + " | ".join(models) + " | ours − best river | target |"
    lines = [head, "|" + "---|" * (len(models) + 4)]
    for data_name in datasets:
        for frac in fractions:
            means = {}
            cells = []
            for m in models:
                accs = results.get((m, data_name, frac))
                if not accs:
                    cells.append("–")
                    continue
                means[m] = statistics.fmean(accs)
                spread = f" ± {statistics.stdev(accs):.3f}" if len(set(accs)) > 1 else ""
                cells.append(f"{means[m]:.3f}{spread}")
            river_best = max((v for k, v in means.items() if k != OURS), default=None)
            if OURS in means and river_best is not None:
                best = max(means, key=means.__getitem__)
                cells[models.index(best)] = f"**{cells[models.index(best)]}**"
                margin = means[OURS] - river_best
                gap = f"{margin:+.3f}"
                target = ""
                if frac < 1.0:
                    target = "met" if margin >= TARGET_MARGIN - 1e-9 else "not met"
            else:
                gap, target = "", ""
            lines.append(
                f"| {data_name} | {frac:.0%} | " + " | ".join(cells) + f" | {gap} | {target} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--params", default="{}", help="JSON overrides of the classifier")
    parser.add_argument("--only", choices=("ours", "river"), help="run one side only")
    parser.add_argument("--data", nargs="+", default=["digits", "ImageSegments"])
    parser.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS))
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=list(SEEDS), help="label masks (and model seeds)"
    )
    parser.add_argument("--quick", action="store_true", help="300 records, one mask")
    parser.add_argument("--json", help="also write the accuracies to this file")
    args = parser.parse_args(argv)
    params = json.loads(args.params)
    if "hidden" in params and params["hidden"] is not None:
        params["hidden"] = tuple(params["hidden"])
    seeds = args.seeds[:1] if args.quick else args.seeds
    limit = 300 if args.quick else None
    models = ([] if args.only == "river" else [OURS]) + ([] if args.only == "ours" else list(RIVER))

    jobs = []
    for data_name in args.data:
        for frac in args.fractions:
            for seed in seeds:
                for m in models:
                    if m != OURS and frac == 1.0 and seed != seeds[0]:
                        continue  # the masks are all the same and river's models deterministic
                    jobs.append((m, data_name, frac, seed, params, limit))
    jobs.sort(key=lambda j: (j[0] != OURS, j[0] != "KNN"))  # longest first
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        accuracies = list(pool.map(prequential, jobs))
    elapsed = time.perf_counter() - start

    results: dict[tuple[str, str, float], list[float]] = {}
    for (m, data_name, frac, _seed, _p, _l), acc in zip(jobs, accuracies):
        results.setdefault((m, data_name, frac), []).append(acc)
    print(
        f"prequential accuracy, mean ± sd over label masks {list(seeds)}"
        f"{' (quick: 300 records)' if args.quick else ''}; classifier overrides: {params}"
    )
    print(table(results, args.data, models, args.fractions))
    print(f"{len(jobs)} runs in {elapsed:.0f} s on {args.workers} worker(s)")
    if args.json:
        rows = [
            {"model": m, "data": d, "labels": f, "accuracies": accs}
            for (m, d, f), accs in results.items()
        ]
        with open(args.json, "w") as f:
            json.dump(
                {
                    "params": args.params,
                    "seeds": list(seeds),
                    "elapsed_s": elapsed,
                    "issue_river_best": {f"{d}@{fr}": v for (d, fr), v in ISSUE_RIVER_BEST.items()},
                    "results": rows,
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
