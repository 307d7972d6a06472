"""The per-record kernel calls: past numba's dispatcher, one row at a time, exact."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import streamal.network as network_module
from streamal import ActivationDetector
from streamal.kernel_state import Direct
from streamal.kernels import score_row, score_values
from streamal.network import ActivationNetwork


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2))
    return pd.DataFrame(latent @ rng.normal(size=(2, 6)), columns=list("abcdef"))


def test_direct_calls_the_compiled_function_the_dispatcher_chose():
    kernel = Direct(score_row)
    rng = np.random.default_rng(0)
    weights = (rng.random((4, 3), dtype=np.float32), rng.random((3, 2), dtype=np.float32))
    net = (weights, np.array([1, 0]), (np.zeros(3, np.float32),) * 2, (np.ones(3, np.float32),) * 2)
    mean, scale = np.zeros(3), np.ones(3)
    rows = rng.normal(size=(5, 3))
    first = kernel.call(rows[0], mean, scale, 1.0, 0.5, net)
    assert kernel.call is not kernel.kernel  # resolved: the dispatcher is out of the way
    scores = [first] + [kernel.call(row, mean, scale, 1.0, 0.5, net) for row in rows[1:]]
    expected = np.empty(5)
    score_values(rows, mean, scale, 1.0, 0.5, net, expected)
    np.testing.assert_array_equal(scores, expected)


@pytest.mark.parametrize("activation", ["std_abs", "abs", "layer_norm_abs"])
@pytest.mark.parametrize("hidden", [(5,), (16, 8, 4)])
def test_one_row_scores_equal_the_batch_scores(activation, hidden):
    frame = _frame(300, 1)
    model = ActivationDetector(hidden=hidden, activation=activation, seed=0, deviation=0.3)
    model.learn_many(frame.iloc[:200])
    probe = frame.iloc[200:]
    batch = model.score_many(probe)  # several rows: the batch kernel
    one = [model.score_one(row) for row in probe.to_dict("records")]  # the one-row kernel
    np.testing.assert_array_equal(batch, one)
    assert len(set(one)) > 50


def test_one_row_learning_matches_the_torch_path(monkeypatch):
    frame = _frame(200, 2)
    frame.iloc[::7, 1] = np.nan
    records = [{k: v for k, v in r.items() if v == v} for r in frame.to_dict("records")]
    fast = ActivationDetector(hidden=(8, 4), batch_size=1, seed=0)
    for record in records:  # every 7th without "b": a masked input
        fast.learn_one(record)
    monkeypatch.setattr(network_module, "FAST_PATH_MAX_WEIGHTS", -1)
    slow = ActivationDetector(hidden=(8, 4), batch_size=1, seed=0)
    for record in records:
        slow.learn_one(record)
    assert fast._network is not None and slow._network is not None
    assert slow._network.kernel_state() is None
    for (name, a), (_, b) in zip(
        fast._network.state_dict().items(), slow._network.state_dict().items(), strict=True
    ):
        assert torch.allclose(a.double(), b.double(), atol=1e-4), name


def test_one_row_network_step_matches_the_torch_path(monkeypatch):
    net = ActivationNetwork.dense(7, [6, 5], lr=0.2, seed=0)
    slow = ActivationNetwork.dense(7, [6, 5], lr=0.2, seed=0)
    g = torch.Generator().manual_seed(3)
    rows = [F.normalize(torch.randn(1, 7, generator=g), dim=1) for _ in range(40)]
    for x in rows:
        net.learn(x)
    monkeypatch.setattr(network_module, "FAST_PATH_MAX_WEIGHTS", -1)
    for x in rows:
        slow.learn(x)
    for (name, a), (_, b) in zip(net.state_dict().items(), slow.state_dict().items(), strict=True):
        assert torch.allclose(a.double(), b.double(), atol=1e-5), name


def test_a_replaced_buffer_is_scored_and_learnt_by_the_one_row_kernels(monkeypatch):
    frame = _frame(120, 3)
    model = ActivationDetector(hidden=(6, 4), batch_size=1, seed=0)
    model.learn_many(frame.iloc[:100])
    record = frame.iloc[100].to_dict()
    before = model.score_one(record)
    assert model._network is not None
    top = model._network.layers[1]
    top.weight = torch.full_like(top.weight, 0.3)  # a new tensor: new views
    replaced = top.weight
    after = model.score_one(record)
    model.learn_one(record)  # a batch of one, learnt at once into the new tensor
    assert not torch.equal(replaced, torch.full_like(replaced, 0.3))
    monkeypatch.setattr(network_module, "FAST_PATH_MAX_WEIGHTS", -1)
    reference = ActivationDetector(hidden=(6, 4), batch_size=1, seed=0)
    reference.learn_many(frame.iloc[:100])
    assert reference._network is not None
    reference._network.layers[1].weight = torch.full_like(top.weight, 0.3)
    assert after != before
    assert after == pytest.approx(reference.score_one(record), abs=1e-4)
