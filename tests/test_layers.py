"""Dense and locally connected layers: the local layer is a dense layer with a zero pattern."""

from __future__ import annotations

import pytest
import torch

from streamal.layers import DenseLayer, LocallyConnectedLayer
from streamal.rule import competitive_delta

# (height, width, in_channels, out_channels, kernel_size)
GRIDS = [
    (3, 3, 1, 2, 3),
    (4, 5, 2, 3, 3),
    (5, 4, 1, 1, 5),
    (2, 3, 2, 2, 5),  # window larger than the grid
    (3, 4, 3, 2, 1),
]


def _local(grid, seed=0):
    h, w, c_in, c_out, k = grid
    g = torch.Generator().manual_seed(seed)
    return LocallyConnectedLayer(
        h, w, c_in, c_out, k, generator=g, init_std=0.3, dtype=torch.float64
    )


def _dense_form(layer: LocallyConnectedLayer, per_location: torch.Tensor) -> torch.Tensor:
    """The dense ``(in, out)`` matrix of a per-location tensor shaped like ``layer.weight``."""
    saved = layer.weight.clone()
    layer.weight.copy_(per_location)
    dense = layer.to_dense()
    layer.weight.copy_(saved)
    return dense


def _pattern(layer: LocallyConnectedLayer) -> torch.Tensor:
    """1 where an input unit reaches an output unit, else 0."""
    ones = layer.valid.unsqueeze(2).expand_as(layer.weight)
    return (_dense_form(layer, ones) != 0).to(layer.weight.dtype)


def _batch(layer, seed=1, batch=6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, layer.in_features, generator=g, dtype=torch.float64)
    rate = torch.randn(batch, generator=g, dtype=torch.float64)
    mask = (torch.rand(batch, layer.in_features, generator=g) < 0.8).double()
    return x, rate, mask


@pytest.mark.parametrize("grid", GRIDS)
def test_local_forward_and_reconstruct_equal_the_dense_matrix(grid):
    layer = _local(grid)
    dense = layer.to_dense()
    assert dense.shape == (layer.in_features, layer.out_features)
    x, _, _ = _batch(layer)
    y = layer(x)
    assert torch.allclose(y, x @ dense, atol=1e-12)
    assert torch.allclose(layer.reconstruct(y), y @ dense.T, atol=1e-12)


@pytest.mark.parametrize("grid", GRIDS)
def test_local_delta_is_the_dense_delta_on_the_pattern(grid):
    layer = _local(grid)
    dense, pattern = layer.to_dense(), _pattern(layer)
    assert torch.equal(dense * (1 - pattern), torch.zeros_like(dense))
    x, rate, mask = _batch(layer)
    y = layer(x)
    for r, m in [(None, None), (rate, mask)]:
        local = _dense_form(layer, layer.delta(x, y, r, m))
        assert torch.allclose(local, competitive_delta(dense, x, y, r, m) * pattern, atol=1e-12)


@pytest.mark.parametrize("grid", GRIDS)
def test_local_learning_keeps_padding_and_pattern_at_zero(grid):
    layer = _local(grid)
    pattern = _pattern(layer)
    dense = layer.to_dense()
    for step in range(5):
        x, rate, mask = _batch(layer, seed=10 + step)
        y = layer(x)
        layer.weight.add_(layer.delta(x, y, rate, mask), alpha=0.1)
        dense += 0.1 * competitive_delta(dense, x, x @ dense, rate, mask) * pattern
    padded = layer.weight * (1 - layer.valid).unsqueeze(2)
    assert torch.equal(padded, torch.zeros_like(padded))
    assert torch.allclose(layer.to_dense(), dense, atol=1e-10)


def test_local_layer_stores_only_the_windows():
    layer = LocallyConnectedLayer(8, 8, 3, 4, kernel_size=5)
    assert layer.weight.shape == (64, 3 * 25, 4)
    assert (layer.in_features, layer.out_features) == (3 * 64, 4 * 64)


def test_even_kernel_is_rejected():
    with pytest.raises(ValueError, match="odd"):
        LocallyConnectedLayer(4, 4, 1, 1, kernel_size=4)


def test_dense_layer_maps_and_reconstructs():
    layer = DenseLayer(5, 3, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 5)
    assert torch.allclose(layer(x), x @ layer.weight)
    assert torch.allclose(layer.reconstruct(layer(x)), x @ layer.weight @ layer.weight.T)
    assert float(layer.weight.std()) < 0.05  # N(0, 0.01²) start


def test_dense_layer_seed_gives_the_same_weights():
    a = DenseLayer(6, 4, generator=torch.Generator().manual_seed(3))
    b = DenseLayer(6, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.weight, b.weight)


def test_grow_inputs_keeps_old_weights():
    layer = DenseLayer(4, 3, generator=torch.Generator().manual_seed(0), init_std=0.5)
    old = layer.weight.clone()
    layer.grow_inputs(2, generator=torch.Generator().manual_seed(1))
    assert layer.weight.shape == (6, 3)
    assert (layer.in_features, layer.out_features) == (6, 3)
    assert torch.equal(layer.weight[:4], old)
    assert bool((layer.weight[4:] != 0).all())
    assert float(layer.weight[4:].abs().max()) < 5 * 0.5
    assert layer.state_dict()["weight"].shape == (6, 3)  # still a registered buffer
    assert layer(torch.ones(1, 6)).shape == (1, 3)
