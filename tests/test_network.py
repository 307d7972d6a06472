"""The network against the paper's appendix A, on seeded synthetic Gaussian data."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from streamal.layers import DenseLayer, LocallyConnectedLayer
from streamal.network import ActivationNetwork

D, M = 12, 4
SPECTRUM = [4.0, 3.0, 2.0, 1.5] + [0.2] * (D - M)  # a gap after the M-th eigenvalue


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matrices: intra-op threads only cost time, badly so on a busy 2-core runner."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Gaussian:
    """Zero-mean anisotropic Gaussian in ``D`` dimensions with a random rotation."""

    def __init__(self, seed: int = 0):
        self.g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(D, D, generator=self.g, dtype=torch.float64))
        self.factor = torch.tensor(SPECTRUM, dtype=torch.float64).sqrt().unsqueeze(1) * q.T

    def sample(self, n: int) -> torch.Tensor:
        return torch.randn(n, D, generator=self.g, dtype=torch.float64) @ self.factor


@pytest.fixture(scope="module")
def single_layer():
    """One layer of ``M`` units trained on the Gaussian, with a held-out sample."""
    data = Gaussian()
    net = ActivationNetwork.dense(D, [M], lr=0.02, seed=0, dtype=torch.float64)
    for step in range(1500):
        if step == 1000:
            net.lr = 0.005  # anneal: the end point is a stable solution, not a noisy one
        net.learn(data.sample(256))
    return net, data.sample(20000)


def test_weight_norm_converges_to_the_number_of_units(single_layer):
    """Property 3: ‖W‖²_F → m without any normalisation in the rule."""
    net, _ = single_layer
    norm2 = float(net.layers[0].weight.square().sum())
    assert abs(norm2 - M) / M < 0.05


def test_reconstruction_error_matches_pca(single_layer):
    """Properties 1-2: E‖x − W Wᵀx‖² equals the error of PCA with m components."""
    net, x = single_layer
    w = net.layers[0].weight
    error = float((x - x @ w @ w.T).square().sum(dim=1).mean())
    eigenvalues = torch.linalg.eigh(x.T @ x / x.shape[0]).eigenvalues  # ascending
    pca = float(eigenvalues[: D - M].sum())
    assert abs(error - pca) / pca < 0.02
    assert float(net.activation(x).mean()) == pytest.approx(float(eigenvalues[D - M :].sum()), 0.02)


def test_activation_is_bounded_by_the_input_strength(single_layer):
    """Property 4: ‖y‖² ≤ ‖x‖² on inputs like the training data."""
    net, x = single_layer
    ratio = net.activation(x) / x.square().sum(dim=1)
    assert float(ratio.max()) <= 1.0 + 1e-2


def _subspace(seed: int, dim: int = 16, rank: int = 3):
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, rank, generator=g))

    def in_pattern(n: int) -> torch.Tensor:
        return F.normalize(torch.randn(n, rank, generator=g) @ basis.T, dim=1)

    def off_pattern(n: int) -> torch.Tensor:
        return F.normalize(torch.randn(n, dim, generator=g), dim=1)

    return in_pattern, off_pattern


@pytest.mark.parametrize("hidden", [[6], [6, 4]], ids=["1-layer", "2-layer"])
@pytest.mark.parametrize("activation", ["abs", "std_abs", "layer_norm_abs"])
def test_in_pattern_inputs_activate_more(activation, hidden):
    """Property 5: on the unit sphere, activation measures typicality."""
    in_pattern, off_pattern = _subspace(seed=0)
    net = ActivationNetwork.dense(16, hidden, activation=activation, lr=0.1, seed=1)
    for _ in range(400):
        net.learn(in_pattern(64))
    held_out, random = net.activation(in_pattern(500)), net.activation(off_pattern(500))
    assert float(held_out.max()) <= 1.0 + 1e-3
    assert float(held_out.mean()) > 0.7
    assert float(held_out.mean()) > 3 * float(random.mean())


def test_mask_never_changes_the_masked_rows():
    net = ActivationNetwork.dense(6, [4, 3], lr=0.1, seed=0)
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(8, 6)
    mask[:, [1, 4]] = 0.0
    before = net.layers[0].weight.clone()
    for _ in range(20):
        net.learn(torch.randn(8, 6, generator=g), mask=mask)
    after = net.layers[0].weight
    assert torch.equal(after[[1, 4]], before[[1, 4]])
    assert not torch.equal(after[[0, 2, 3, 5]], before[[0, 2, 3, 5]])


def test_learn_returns_the_outputs_before_the_update():
    net = ActivationNetwork.dense(5, [4, 3], lr=0.1, seed=0)
    x = torch.randn(3, 5)
    expected = [y.clone() for y in net(x)]
    returned = net.learn(x)
    assert all(torch.equal(a, b) for a, b in zip(returned, expected, strict=True))


def test_negative_rate_does_not_move_the_statistics():
    net = ActivationNetwork.dense(5, [4, 3], lr=0.1, seed=0)
    net.learn(torch.randn(3, 5))
    stats = copy.deepcopy(net.activations[0].state_dict())
    net.learn(torch.randn(3, 5), rate=-0.5 * torch.ones(3))
    for key, value in net.activations[0].state_dict().items():
        assert torch.equal(value, stats[key]), key


def test_mismatched_layer_sizes_raise():
    with pytest.raises(ValueError, match="do not chain"):
        ActivationNetwork([DenseLayer(4, 3), DenseLayer(2, 2)])
    with pytest.raises(ValueError, match="do not chain"):
        ActivationNetwork([LocallyConnectedLayer(3, 3, 1, 2, 3), DenseLayer(9, 2)])
    with pytest.raises(ValueError):
        ActivationNetwork.dense(4, [])


def test_network_accepts_a_local_bottom_layer():
    local = LocallyConnectedLayer(4, 4, 1, 2, 3, generator=torch.Generator().manual_seed(0))
    net = ActivationNetwork([local, DenseLayer(32, 5)], lr=0.05)
    x = F.normalize(torch.randn(10, 16, generator=torch.Generator().manual_seed(1)))
    for _ in range(5):
        net.learn(x)
    assert net.activation(x).shape == (10,)


def _train_copy(net: ActivationNetwork, device: str) -> torch.Tensor:
    net = copy.deepcopy(net).to(device)
    g = torch.Generator().manual_seed(5)
    for _ in range(50):
        x = F.normalize(torch.randn(32, 10, generator=g), dim=1)
        net.learn(x.to(device), rate=torch.ones(32, device=device))
    probe = F.normalize(torch.randn(64, 10, generator=g), dim=1)
    return net.activation(probe.to(device)).cpu()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_give_the_same_activations():
    torch.backends.cuda.matmul.allow_tf32 = False
    net = ActivationNetwork.dense(10, [8, 6], lr=0.05, seed=0)
    cpu, cuda = _train_copy(net, "cpu"), _train_copy(net, "cuda")
    assert torch.allclose(cpu, cuda, atol=1e-4)


def test_max_row_norm_bounds_every_row_after_each_step():
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(32, 6, generator=g))
    bounded = ActivationNetwork.dense(6, [4, 3], lr=0.5, seed=0)
    free = copy.deepcopy(bounded)
    bounded.max_row_norm = 1.0
    with torch.no_grad():  # rows near unit length, where unlearning grows them fastest
        for mine, theirs in zip(bounded.stack, free.stack):
            mine.weight.copy_(0.9 * F.normalize(torch.randn(mine.weight.shape, generator=g)))
            theirs.weight.copy_(mine.weight)
    for _ in range(5):  # unlearning only: the rule's decay term becomes growth
        for net in (bounded, free):
            net.learn(x, rate=-torch.ones(32))
    assert float(torch.linalg.vector_norm(free.stack[0].weight, dim=1).max()) > 1.5
    for layer in bounded.stack:
        norms = torch.linalg.vector_norm(layer.weight, dim=1)
        assert torch.isfinite(norms).all() and float(norms.max()) <= 1.0 + 1e-5
