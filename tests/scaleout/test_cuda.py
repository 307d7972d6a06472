"""The shared model on CUDA with NCCL (a world of one process: one GPU is enough)."""

from __future__ import annotations

import random

import pandas as pd
import pytest
import torch
import torch.distributed as dist

from streamal import ActivationClassifier, ActivationDetector
from streamal.distributed import Collective, SharedLearner, state_digest

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available() or not dist.is_nccl_available(),
                       reason="needs a CUDA device and NCCL"),
]


@pytest.fixture
def nccl():
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", store=dist.HashStore(), rank=0, world_size=1)
    yield Collective()
    dist.destroy_process_group()


@pytest.mark.parametrize("make", [
    lambda: ActivationDetector(hidden=(6, 4), batch_size=8, device="cuda", seed=0),
    lambda: ActivationClassifier(hidden=(8, 4), batch_size=8, device="cuda", seed=0,
                                 feedback=True),
])
def test_nccl_steps_equal_one_cuda_estimator(nccl: Collective, make) -> None:
    assert nccl.device.type == "cuda"
    shared, plain = SharedLearner(make(), nccl, check_every=1), make()
    shared.broadcast()
    rng = random.Random(0)
    labelled = isinstance(plain, ActivationClassifier)
    for step in range(25):
        X = pd.DataFrame([{"a": rng.gauss(0, 1), "b": rng.gauss(3, 2),
                           **({"c": rng.gauss(1, 1)} if step > 10 else {})} for _ in range(8)])
        y = [rng.choice(["u", "v", None]) for _ in range(8)] if labelled else None
        shared.step(X, y)
        if labelled:
            plain.learn_many(X, pd.Series(y, dtype=object))
        else:
            plain.learn_many(X)
    assert shared.checks == 26
    assert state_digest(shared.model) == state_digest(plain)
    assert shared.model._network.stack[0].weight.device.type == "cuda"
