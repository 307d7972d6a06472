"""The numpy CPU fast path of small networks against the torch path it replaces."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import streamal.network as network_module
from streamal import ActivationDetector
from streamal.network import ActivationNetwork


def _train(net: ActivationNetwork, fast: bool, monkeypatch) -> tuple[ActivationNetwork, list]:
    net = copy.deepcopy(net)
    monkeypatch.setattr(network_module, "FAST_PATH_MAX_WEIGHTS", 1 << 17 if fast else -1)
    g = torch.Generator().manual_seed(5)
    returned = []
    for step in range(60):
        x = F.normalize(torch.randn(16, 10, generator=g), dim=1)
        mask = (torch.rand(16, 10, generator=g) > 0.1).float()
        rate = torch.ones(16) if step % 3 else torch.linspace(-0.5, 1.0, 16)
        assert net.fast_path(x) is fast
        returned.append(net.learn(x, rate=rate, mask=mask))
    probe = F.normalize(torch.randn(64, 10, generator=g), dim=1)
    return net, [net.activation(probe), *returned[-1]]


@pytest.mark.parametrize("activation", ["std_abs", "abs", "layer_norm_abs"])
def test_fast_path_matches_the_torch_path(activation, monkeypatch):
    net = ActivationNetwork.dense(10, [8, 6], activation=activation, lr=0.05, seed=0)
    fast, fast_out = _train(net, True, monkeypatch)
    slow, slow_out = _train(net, False, monkeypatch)
    for a, b in zip(fast_out, slow_out, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-4)
    for (name, a), (_, b) in zip(fast.state_dict().items(), slow.state_dict().items()):
        assert a.dtype == b.dtype
        assert torch.allclose(a.double(), b.double(), atol=1e-4), name


def test_fast_path_is_not_taken_for_autograd_or_large_networks():
    net = ActivationNetwork.dense(10, [8], seed=0)
    assert net.fast_path(torch.zeros(2, 10))
    assert not net.fast_path(torch.zeros(2, 10, requires_grad=True))
    assert not net.fast_path(torch.zeros(2, 10, dtype=torch.float64))
    big = ActivationNetwork.dense(400, [400], seed=0)
    assert not big.fast_path(torch.zeros(2, 400))


def test_fast_path_calls_the_delta_reducer(monkeypatch):
    net = ActivationNetwork.dense(6, [5, 4], lr=0.1, seed=0)
    seen = []

    def double(deltas, learnt):
        seen.append(([d.shape for d in deltas], [y.shape for y in learnt]))
        return [2 * d for d in deltas], learnt

    plain = copy.deepcopy(net)
    net.delta_reducer = double
    x = F.normalize(torch.randn(3, 6, generator=torch.Generator().manual_seed(2)), dim=1)
    net.learn(x, rate=torch.tensor([1.0, -0.5, 1.0]))
    plain.learn(x, rate=torch.tensor([1.0, -0.5, 1.0]))
    assert seen == [([(6, 5), (5, 4)], [(2, 5)])]
    assert not torch.equal(net.layers[0].weight, plain.layers[0].weight)


def test_detector_scores_match_the_torch_path(monkeypatch):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.random((300, 6)), columns=list("abcdef"))
    frame.iloc[::7, 2] = np.nan
    model = ActivationDetector(hidden=(16, 8), batch_size=8, seed=0)
    model.learn_many(frame.iloc[:250])
    fast = model.score_many(frame.iloc[250:])
    rows = [{k: v for k, v in r.items() if v == v} for r in frame.iloc[250:].to_dict("records")]
    assert np.array_equal(fast, [model.score_one(r) for r in rows])
    monkeypatch.setattr(network_module, "FAST_PATH_MAX_WEIGHTS", -1)
    slow = model.score_many(frame.iloc[250:])
    np.testing.assert_allclose(fast, slow, atol=1e-5)
