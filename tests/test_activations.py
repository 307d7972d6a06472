"""Magnitude-preserving activations: ‖f(y)‖ = ‖y‖, running statistics of std_abs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from streamal.activations import Abs, LayerNormAbs, StdAbs, make_activation


def _trained_std_abs(size, seed=0):
    f = StdAbs(size, decay=0.9)
    g = torch.Generator().manual_seed(seed)
    for _ in range(3):
        f.update(torch.randn(16, size, generator=g) * 2 + 1)
    return f


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 8),
    size=st.integers(2, 12),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
def test_every_activation_preserves_the_norm(seed, batch, size, scale):
    g = torch.Generator().manual_seed(seed)
    y = scale * torch.randn(batch, size, generator=g)
    y[0] = 0.0  # a zero record stays zero, without NaN
    for f in (Abs(), LayerNormAbs(), StdAbs(size), _trained_std_abs(size, seed)):
        out = f(y)
        assert out.shape == y.shape
        assert bool(torch.isfinite(out).all())
        assert torch.allclose(out.norm(dim=1), y.norm(dim=1), rtol=1e-4, atol=1e-6 * scale)
        assert torch.equal(out[0], torch.zeros(size))


def test_abs_and_layer_norm_abs_values():
    y = torch.tensor([[3.0, -4.0], [1.0, -3.0]])
    assert torch.equal(Abs()(y), y.abs())
    out = LayerNormAbs()(y)
    # |y| − mean: [-0.5, 0.5] and [-1, 1], rescaled to norms 5 and √10
    expected = torch.tensor([[-1.0, 1.0], [-1.0, 1.0]]) / 2**0.5
    expected *= y.norm(dim=1, keepdim=True)
    assert torch.allclose(out, expected)


def test_std_abs_standardises_with_running_statistics():
    f = StdAbs(2, decay=0.0)
    y = torch.tensor([[1.0, 2.0], [3.0, -1.0], [2.0, 0.0]])
    f.update(y)
    z = (y.abs() - y.abs().mean(0)) / y.abs().std(0, unbiased=False)
    expected = z * (y.norm(dim=1) / z.norm(dim=1)).unsqueeze(1)
    assert torch.allclose(f(y), expected, atol=1e-5)


def test_std_abs_running_statistics_decay():
    f = StdAbs(3, decay=0.75)
    a = torch.tensor([[1.0, -2.0, 0.0], [3.0, 2.0, 4.0]])
    b = torch.tensor([[0.0, 1.0, -1.0], [2.0, -5.0, 1.0], [1.0, 0.0, 1.0]])
    f.update(a)  # the first batch sets the statistics outright
    assert torch.allclose(f.mean, a.abs().mean(0))
    assert torch.allclose(f.var, a.abs().var(0, unbiased=False))
    f.update(b)
    assert torch.allclose(f.mean, 0.75 * a.abs().mean(0) + 0.25 * b.abs().mean(0))
    expected_var = 0.75 * a.abs().var(0, unbiased=False) + 0.25 * b.abs().var(0, unbiased=False)
    assert torch.allclose(f.var, expected_var)
    assert int(f.count) == 5


def test_std_abs_single_first_record_keeps_unit_variance():
    f = StdAbs(3)
    f.update(torch.tensor([[1.0, -2.0, 3.0]]))
    assert torch.equal(f.var, torch.ones(3))
    assert torch.allclose(f.mean, torch.tensor([1.0, 2.0, 3.0]))


def test_scoring_never_changes_the_statistics():
    f = _trained_std_abs(5)
    before = {k: v.clone() for k, v in f.state_dict().items()}
    for _ in range(3):
        f(torch.randn(7, 5))
    for key, value in f.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_stateless_update_is_a_no_op():
    y = torch.randn(4, 3)
    for f in (Abs(), LayerNormAbs()):
        f.update(y)
        assert f.state_dict() == {}


def test_make_activation():
    assert isinstance(make_activation("abs", 3), Abs)
    assert isinstance(make_activation("layer_norm_abs", 3), LayerNormAbs)
    f = make_activation("std_abs", 3, decay=0.5)
    assert isinstance(f, StdAbs) and f.decay == 0.5 and f.mean.shape == (3,)
    with pytest.raises(ValueError, match="unknown activation"):
        make_activation("relu", 3)
