"""The compiled CPU fast path of small networks against the torch path it replaces."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import streamal.network as network_module
from streamal import ActivationDetector
from streamal.encoding import RunningMoments
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


def _stream(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2))
    frame = pd.DataFrame(
        latent @ rng.normal(size=(2, 5)) * [1, 10, 100, 0.1, 1], columns=list("abcde")
    )
    frame.iloc[::9, 1] = np.nan  # missing values: masked inputs
    return frame


def test_detector_learning_matches_the_torch_path(monkeypatch):
    frame = _stream(400, 1)
    fast = ActivationDetector(hidden=(16, 8), batch_size=8, seed=0)
    fast.learn_many(frame)
    monkeypatch.setattr(network_module, "FAST_PATH_MAX_WEIGHTS", -1)
    slow = ActivationDetector(hidden=(16, 8), batch_size=8, seed=0)
    slow.learn_many(frame)
    assert fast._network is not None and slow._network is not None
    assert slow._network.kernel_state() is None
    np.testing.assert_array_equal(fast._moments.mean, slow._moments.mean)
    for (name, a), (_, b) in zip(
        fast._network.state_dict().items(), slow._network.state_dict().items(), strict=True
    ):
        assert a.dtype == b.dtype
        assert torch.allclose(a.double(), b.double(), atol=1e-4), name
    probe = _stream(50, 2)
    np.testing.assert_allclose(fast.score_many(probe), slow.score_many(probe), atol=1e-4)


@pytest.mark.parametrize(
    "value, message",
    [
        (float("nan"), "'b' is not finite"),
        (float("-inf"), "'b' is not finite"),
        (1e150, "'b' is too large"),
        (10**120, "'b' is too large"),
        (10**400, "'b' is too large"),
        ("1.5", "'b' is not a number"),
        (None, None),  # missing: accepted by both methods
    ],
)
def test_records_in_schema_order_are_checked_like_any_other(value, message):
    model = ActivationDetector(hidden=(4,), batch_size=4, seed=0)
    model.learn_many(_stream(30, 3))
    model.learn_one({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0})  # one pending
    record = {"a": 1.0, "b": value, "c": 3.0, "d": 4.0, "e": 5.0}
    arrays, meta = model._export_state()
    if message is None:
        assert 0.0 <= model.score_one(record) <= 1.0
        return
    with pytest.raises(ValueError, match=message):
        model.score_one(record)
    with pytest.raises(ValueError, match=message):
        model.learn_one(record)
    after, after_meta = model._export_state()
    assert after_meta == meta
    for name in arrays:
        np.testing.assert_array_equal(after[name], arrays[name], err_msg=name)


def test_integers_and_booleans_score_as_floats():
    model = ActivationDetector(hidden=(4,), batch_size=4, seed=0)
    model.learn_many(_stream(30, 4))
    as_floats = {"a": 1.0, "b": 0.0, "c": 3.0, "d": 1.0, "e": 5.0}
    mixed = {"a": 1, "b": False, "c": 3.0, "d": True, "e": 5}
    assert model.score_one(mixed) == model.score_one(as_floats)


def test_running_moments_match_numpy():
    rng = np.random.default_rng(6)
    moments = RunningMoments(3)
    batches = [rng.normal(size=(n, 3)) * [1, 1e3, 1e-3] + [0, 5e3, 1] for n in (1, 7, 32)]
    batches[1][2:5, 0] = np.nan
    for batch in batches:
        moments.update(batch)
    values = np.concatenate(batches)
    np.testing.assert_array_equal(moments.count, (~np.isnan(values)).sum(axis=0))
    np.testing.assert_allclose(moments.mean, np.nanmean(values, axis=0), rtol=1e-12)
    np.testing.assert_allclose(moments.var, np.nanvar(values, axis=0), rtol=1e-10)
    np.testing.assert_allclose(moments.current()[3], moments.scale, rtol=1e-15)


def test_kernel_views_follow_the_network_buffers(monkeypatch):
    net = ActivationNetwork.dense(6, [5, 4], lr=0.1, seed=0)
    x = F.normalize(torch.randn(8, 6, generator=torch.Generator().manual_seed(7)), dim=1)
    assert net.fast_path(x)
    copy_ = copy.deepcopy(net)  # its own buffers: learning there leaves net alone
    before = net.layers[0].weight.clone()
    copy_.learn(x)
    assert torch.equal(net.layers[0].weight, before)
    assert not torch.equal(copy_.layers[0].weight, before)
    net.layers[1].weight = torch.ones(5, 4)  # a replaced buffer is seen at once
    slow = copy.deepcopy(net)
    fast_activation = net.activation(x)
    net.learn(x)
    monkeypatch.setattr(network_module, "FAST_PATH_MAX_WEIGHTS", -1)
    assert not slow.fast_path(x)
    assert torch.allclose(fast_activation, slow.activation(x), atol=1e-5)
    slow.learn(x)
    assert torch.allclose(net.layers[1].weight, slow.layers[1].weight, atol=1e-5)
