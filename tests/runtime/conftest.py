"""Streams and pipeline builders shared by the runtime tests."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import numpy as np
import pytest
import torch

from streamal import ActivationClassifier, ActivationDetector
from streamal.connectors import MemorySink, MemorySource
from streamal.runtime import Pipeline, RecordDecoder

SINKS = ("scores", "predictions", "alerts", "drift", "dead_letter")


def sensor_rows(n: int, seed: int = 0, shift_at: int | None = None) -> list[bytes]:
    """JSON sensor readings; from ``shift_at`` on, sensor ``c`` jumps to a new level."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        shifted = shift_at is not None and i >= shift_at
        a = rng.gauss(0.0, 1.0)
        row = {"sensor": f"s{i % 3}", "a": a, "b": -0.5 * a + rng.gauss(5.0, 0.3),
               "c": rng.gauss(12.0 if shifted else 0.0, 1.0)}
        rows.append(json.dumps(row).encode())
    return rows


def labelled_rows(n: int, seed: int = 0, label_every: int = 2) -> list[bytes]:
    """Two Gaussian classes; every ``label_every``-th record carries its label."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        y = rng.choice(["low", "high"])
        centre = 2.0 if y == "high" else -2.0
        row = {"a": rng.gauss(centre, 1.0), "b": rng.gauss(-centre, 1.0)}
        if i % label_every == 0:
            row["y"] = y
        rows.append(json.dumps(row).encode())
    return rows


def detector() -> ActivationDetector:
    return ActivationDetector(batch_size=8, seed=0)


def classifier() -> ActivationClassifier:
    return ActivationClassifier(hidden=(6, 4), batch_size=8, seed=0)


def model_weights(model) -> dict[str, np.ndarray]:
    arrays, _ = model._export_state()
    return arrays


def max_weight_diff(a, b) -> float:
    wa, wb = model_weights(a), model_weights(b)
    assert wa.keys() == wb.keys()
    diffs = [np.nanmax(np.abs(wa[k] - wb[k]), initial=0.0) for k in wa
             if wa[k].dtype.kind == "f" and wa[k].size]
    for k in wa:
        assert wa[k].shape == wb[k].shape, k
    return float(max(diffs))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny micro-batches run faster on one thread, and much faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def build() -> Callable[..., tuple[Pipeline, dict[str, MemorySink]]]:
    """``build(values, **pipeline_kwargs)`` → a pipeline over MemorySource and MemorySinks."""

    def make(values, sinks=SINKS, model_factory=detector, decoder=None, source=None, **kwargs):
        outs = {name: MemorySink() for name in sinks}
        pipe = Pipeline(source or MemorySource(values), outs, model_factory,
                        decoder or RecordDecoder(exclude=["sensor"]), **kwargs)
        return pipe, outs

    return make
