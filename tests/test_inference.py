"""Inference: enumerate candidates, complete missing units, generate a block."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from streamal.inference import candidate_activations, complete, generate
from streamal.layers import DenseLayer, LocallyConnectedLayer
from streamal.network import ActivationNetwork

D, RANK = 12, 3


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matrices: intra-op threads only cost time, badly so on a busy 2-core runner."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pattern(seed: int = 0):
    """Unit vectors from a ``RANK``-dimensional subspace of ``D`` dimensions."""
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(D, RANK, generator=g, dtype=torch.float64))

    def sample(n: int) -> torch.Tensor:
        return F.normalize(torch.randn(n, RANK, generator=g, dtype=torch.float64) @ basis.T)

    return sample


# (hidden sizes, activation, completion error allowed as a fraction of leaving zero).
# One layer learns the subspace exactly; a second layer reshapes the typical region
# inside it, so its activation peaks near, not at, the true value (a grid search over
# the missing coordinate finds the same peak as `complete`).
NETWORKS = {
    "1-layer": ([8], "abs", 0.01),
    "2-layer-abs": ([8, 6], "abs", 0.5),
    "2-layer-std_abs": ([8, 6], "std_abs", 0.7),
}


@pytest.fixture(scope="module", params=list(NETWORKS))
def trained(request):
    hidden, activation, tolerance = NETWORKS[request.param]
    sample = _pattern()
    net = ActivationNetwork.dense(
        D, hidden, activation=activation, lr=0.1, seed=1, dtype=torch.float64
    )
    for _ in range(400):
        net.learn(sample(64))
    return net, sample, tolerance


def _state(net: ActivationNetwork) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def _assert_unchanged(net: ActivationNetwork, before: dict[str, torch.Tensor]) -> None:
    after = net.state_dict()
    assert after.keys() == before.keys()
    for key, value in after.items():
        assert torch.equal(value, before[key]), key


def _generic(net, x, label_units, candidates):
    """The (B·K, n) computation: every record with every candidate, through the whole net."""
    rows = []
    for record in x:
        batch = record.repeat(candidates.shape[0], 1)
        batch[:, label_units] = candidates
        rows.append(net.activation(batch))
    return torch.stack(rows)


@pytest.mark.parametrize("activation", ["abs", "std_abs", "layer_norm_abs"])
@pytest.mark.parametrize("hidden", [[5], [7, 5], [7, 6, 4]])
def test_candidate_activations_equal_the_generic_computation(activation, hidden):
    net = ActivationNetwork.dense(9, hidden, activation=activation, lr=0.1, seed=0)
    g = torch.Generator().manual_seed(2)
    for _ in range(20):
        net.learn(F.normalize(torch.randn(16, 9, generator=g)))
    x = F.normalize(torch.randn(5, 9, generator=g))
    x[:, 6:] = 0.0
    candidates = torch.eye(3) / 3**0.5
    before = _state(net)
    fast = candidate_activations(net, x, slice(6, 9), candidates)
    assert fast.shape == (5, 3)
    assert torch.allclose(fast, _generic(net, x, slice(6, 9), candidates), rtol=1e-5, atol=1e-7)
    _assert_unchanged(net, before)


def test_candidate_activations_replace_a_nonzero_label_block():
    net = ActivationNetwork.dense(6, [5, 4], seed=0, dtype=torch.float64)
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    candidates = torch.eye(2, dtype=torch.float64)
    expected = _generic(net, x, slice(1, 3), candidates)
    assert torch.allclose(candidate_activations(net, x, slice(1, 3), candidates), expected)


def test_candidate_activations_with_a_local_bottom_layer():
    local = LocallyConnectedLayer(3, 3, 1, 2, 3, generator=torch.Generator().manual_seed(0))
    net = ActivationNetwork([local, DenseLayer(18, 4)], lr=0.1)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        net.learn(F.normalize(torch.randn(8, 9, generator=g)))
    x = F.normalize(torch.randn(4, 9, generator=g))
    x[:, 7:] = 0.0
    candidates = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    before = _state(net)
    fast = candidate_activations(net, x, slice(7, 9), candidates)
    assert torch.allclose(fast, _generic(net, x, slice(7, 9), candidates), atol=1e-7)
    _assert_unchanged(net, before)


def test_complete_recovers_a_missing_coordinate(trained):
    net, sample, tolerance = trained
    truth = sample(40)
    free = torch.zeros_like(truth, dtype=torch.bool)
    free[:, 4] = True
    x = truth.masked_fill(free, 0.0)
    before = _state(net)
    with torch.no_grad():  # inference must work even when the caller disabled autograd
        out = complete(net, x, free, steps=300, step_size=0.05)
    _assert_unchanged(net, before)
    assert torch.allclose(out.norm(dim=1), x.norm(dim=1))
    scale = out[:, 0] / x[:, 0]  # the record is rescaled as a whole
    assert torch.allclose(out[~free], (x * scale.unsqueeze(1))[~free])
    recovered = out[:, 4] / scale
    error = (recovered - truth[:, 4]).abs().mean()
    baseline = truth[:, 4].abs().mean()  # leaving the coordinate at zero
    assert float(error) < tolerance * float(baseline)
    assert float(net.activation(out).mean()) > float(net.activation(x).mean())


def test_complete_with_l1_and_jitter_is_seeded(trained):
    net, sample, _ = trained
    x = sample(6)
    free = torch.zeros_like(x, dtype=torch.bool)
    free[:, 8:] = True
    x = x.masked_fill(free, 0.0)
    runs = [
        complete(net, x, free, steps=30, l1=0.01, generator=torch.Generator().manual_seed(s))
        for s in (0, 0, 1)
    ]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])
    assert torch.allclose(runs[0].norm(dim=1), x.norm(dim=1))


def test_generate_fills_a_unit_norm_block(trained):
    net, sample, _ = trained
    known = sample(5)
    free = torch.zeros_like(known, dtype=torch.bool)
    free[:, 6:] = True
    before = _state(net)
    out = generate(net, known, free, steps=100, generator=torch.Generator().manual_seed(0))
    _assert_unchanged(net, before)
    assert torch.equal(out[~free], known[~free])
    block = out.masked_fill(~free, 0.0)
    assert torch.allclose(block.norm(dim=1), torch.ones(5, dtype=torch.float64))
    wide = generate(net, known, free, block_norm=2.0, steps=20, generator=torch.Generator())
    assert torch.allclose(wide.masked_fill(~free, 0.0).norm(dim=1), torch.full((5,), 2.0).double())


def test_generate_is_seeded_and_diverse(trained):
    net, _, _ = trained
    x = torch.zeros(4, D, dtype=torch.float64)
    free = torch.ones_like(x, dtype=torch.bool)

    def run(seed: int, noise: float = 0.03) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return generate(net, x, free, output_noise=noise, steps=150, generator=g)

    first = run(0)
    assert torch.equal(first, run(0))
    assert not torch.allclose(first, run(1), atol=1e-3)
    assert not torch.allclose(first, run(0, noise=0.0), atol=1e-6)
    # Generated records lie near the learnt pattern: they activate like the data do.
    assert float(net.activation(first).min()) > 0.5


def test_inference_does_not_touch_a_fresh_network():
    net = ActivationNetwork.dense(6, [4, 3], seed=0)
    snapshot = copy.deepcopy(net.state_dict())
    x = F.normalize(torch.randn(2, 6, generator=torch.Generator().manual_seed(0)))
    free = torch.zeros(2, 6, dtype=torch.bool)
    free[:, :2] = True
    complete(net, x, free, steps=5)
    generate(net, x, free, steps=5)
    candidate_activations(net, x, slice(0, 2), torch.eye(2))
    _assert_unchanged(net, snapshot)
    assert all(not t.requires_grad for t in net.state_dict().values())
