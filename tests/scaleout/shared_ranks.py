"""One rank of the SharedLearner checks; run by test_distributed.py as two processes.

Usage: ``RANK=r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=p python shared_ranks.py OUT``.
Writes a JSON report of what it saw to ``OUT``.
"""

from __future__ import annotations

import json
import random
import sys

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from streamal import ActivationClassifier, ActivationDetector
from streamal.distributed import Collective, SharedLearner, init_from_env, state_digest


def frame(rows: list[dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, dtype=float) if rows else pd.DataFrame()


def weights(model) -> dict[str, list]:
    arrays, _ = model._export_state()
    return {k: v.tolist() for k, v in arrays.items() if k.startswith("network.")}


def main(out: str) -> None:
    torch.set_num_threads(1)
    init_from_env("gloo", timeout=60)
    c = Collective()
    rank, rng = c.rank, random.Random(c.rank)
    report: dict[str, object] = {"rank": rank}

    # 1. rank 1 never has records: rank 0's model is a plain estimator's, exactly
    shared = SharedLearner(ActivationDetector(hidden=(4, 3), batch_size=8, seed=0), c)
    shared.broadcast()
    plain = ActivationDetector(hidden=(4, 3), batch_size=8, seed=0)
    data = random.Random(7)
    for _ in range(20):
        rows = [{"a": data.gauss(0, 1), "b": data.gauss(5, 2)} for _ in range(8)]
        shared.step(frame(rows) if rank == 0 else frame([]))
        plain.learn_many(frame(rows))
    report["alone_equal"] = state_digest(shared.model) == state_digest(plain)

    # 2./3. the same micro-batch on both ranks: "sum" = one worker with 2*lr, "mean" = lr
    for scale, factor in (("sum", 2.0), ("mean", 1.0)):
        shared = SharedLearner(ActivationDetector(hidden=(3,), batch_size=8, seed=1), c,
                               delta_scale=scale)
        shared.broadcast()
        plain = ActivationDetector(hidden=(3,), lr=0.5 * factor, batch_size=8, seed=1)
        rows = [{"a": float(i), "b": float(i * i % 5)} for i in range(8)]
        shared.step(frame(rows))
        plain.learn_many(frame(rows))
        diff = max(float(np.max(np.abs(np.array(w) - np.array(weights(plain)[k]))))
                   for k, w in weights(shared.model).items())
        report[f"{scale}_diff"] = diff

    # 4. different data, features and classes appearing on one rank only, feedback learning,
    #    uneven micro-batches: every worker's whole state is identical after every step
    for make in (lambda: ActivationDetector(hidden=(4, 3), batch_size=8),  # seed None
                 lambda: ActivationClassifier(hidden=(6, 4), batch_size=8, feedback=True)):
        shared = SharedLearner(make(), c, check_every=1)
        shared.broadcast()
        for step in range(30):
            n = rng.randint(0, 8)
            rows = [{"a": rng.gauss(0, 1), "b": rng.gauss(5, 2)} for _ in range(n)]
            if rank == 1 and step >= 10:
                for r in rows:
                    r["c"] = rng.gauss(-3, 1)  # a feature only rank 1 sees
            labels = [rng.choice(["x", "y"] + (["z"] if rank == 0 and step > 15 else []))
                      if rng.random() < 0.7 else None for _ in range(n)]
            notes = shared.step(frame(rows), labels if isinstance(shared.model,
                                                                  ActivationClassifier) else None,
                                note={"rank": rank, "step": step})
            assert [m["rank"] for m in notes] == [0, 1] and notes[0]["step"] == step
        report.setdefault("checks", []).append(shared.checks)
        report.setdefault("schemas", []).append(list(shared.model._schema.names))
        report.setdefault("classes", []).append(list(getattr(shared.model, "classes", [])))
        report.setdefault("digests", []).append(shared.digest)
        report.setdefault("n_learnt", []).append(shared.model._n_learnt)
    # 5. a trained two-layer model (std_abs statistics, 0-d buffers) reaches a fresh one intact
    model = ActivationDetector(hidden=(4, 3), batch_size=8, seed=rank)
    if rank == 0:
        model.learn_many(frame([{"a": rng.gauss(0, 1), "b": rng.gauss(5, 2)} for _ in range(40)]))
    shared = SharedLearner(model, c)
    shared.broadcast()
    report["broadcast_digest"] = shared.digest
    report["broadcast_learnt"] = shared.model._n_learnt
    dist.destroy_process_group()
    with open(out, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(sys.argv[1])
