"""The local competitive rule (paper eq. 4) and the feedback gain (eq. 13-14)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from streamal.rule import competitive_delta, truncated_linear_gain


def _loop_delta(w, x, y, rate, mask):
    """Eq. 4 written weight by weight: Δw_ij = y_j (x_i − Σ_k y_k w_ik), averaged over records."""
    n, m = w.shape
    batch = x.shape[0]
    out = torch.zeros(n, m, dtype=torch.float64)
    for b in range(batch):
        for i in range(n):
            feedback = sum(y[b, k] * w[i, k] for k in range(m))
            for j in range(m):
                out[i, j] += rate[b] * mask[b, i] * y[b, j] * (x[b, i] - feedback)
    return out / batch


def _random_case(seed, batch, n, m):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, m, generator=g, dtype=torch.float64)
    x = torch.randn(batch, n, generator=g, dtype=torch.float64)
    rate = torch.randn(batch, generator=g, dtype=torch.float64)
    mask = (torch.rand(batch, n, generator=g) < 0.7).double()
    return w, x, x @ w, rate, mask


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 5),
    n=st.integers(1, 6),
    m=st.integers(1, 5),
)
def test_competitive_delta_equals_the_double_loop(seed, batch, n, m):
    w, x, y, rate, mask = _random_case(seed, batch, n, m)
    expected = _loop_delta(w, x, y, rate, mask)
    assert torch.allclose(competitive_delta(w, x, y, rate, mask), expected, atol=1e-12)


def test_defaults_are_unit_rate_and_full_mask():
    w, x, y, _, _ = _random_case(3, 4, 5, 3)
    ones = torch.ones(4, dtype=torch.float64)
    full = torch.ones(4, 5, dtype=torch.float64)
    expected = _loop_delta(w, x, y, ones, full)
    assert torch.allclose(competitive_delta(w, x, y), expected, atol=1e-12)


def test_masked_rows_contribute_exactly_zero():
    w, x, y, rate, mask = _random_case(7, 6, 5, 3)
    mask[:, 2] = 0.0  # unit 2 missing from every record
    delta = competitive_delta(w, x, y, rate, mask)
    assert torch.equal(delta[2], torch.zeros(3, dtype=torch.float64))
    # A record masked at unit 1 adds nothing to row 1: dropping it changes nothing there.
    mask[0, 1] = 0.0
    delta = competitive_delta(w, x, y, rate, mask)
    rest = competitive_delta(w, x[1:], y[1:], rate[1:], mask[1:]) * 5 / 6
    assert torch.allclose(delta[1], rest[1], atol=1e-14)


def test_zero_rate_skips_a_record():
    w, x, y, rate, mask = _random_case(11, 3, 4, 2)
    rate[1] = 0.0
    full = competitive_delta(w, x, y, rate, mask)
    kept = [0, 2]
    without = competitive_delta(w, x[kept], y[kept], rate[kept], mask[kept]) * 2 / 3
    assert torch.allclose(full, without, atol=1e-14)


def _activation_after_step(w, x, rate, eta=1e-3):
    y = x @ w
    w_new = w + eta * competitive_delta(w, x, y, torch.tensor([rate], dtype=x.dtype))
    return float((x @ w_new).square().sum())


def test_signed_rate_moves_the_activation_of_a_record():
    g = torch.Generator().manual_seed(0)
    w = 0.1 * torch.randn(8, 4, generator=g, dtype=torch.float64)
    x = torch.nn.functional.normalize(torch.randn(1, 8, generator=g, dtype=torch.float64))
    before = float((x @ w).square().sum())
    assert before < 1.0  # below the bound ‖x‖², where learning raises ‖y‖² (eq. 28)
    assert _activation_after_step(w, x, 1.0) > before
    assert _activation_after_step(w, x, -0.9) < before


def test_learning_lowers_an_activation_above_the_bound():
    """Property 4: once ‖y‖² > ‖x‖², a positive step lowers ‖y‖²."""
    g = torch.Generator().manual_seed(1)
    w = 3.0 * torch.randn(8, 4, generator=g, dtype=torch.float64)
    x = torch.nn.functional.normalize(torch.randn(1, 8, generator=g, dtype=torch.float64))
    before = float((x @ w).square().sum())
    assert before > 1.0
    assert _activation_after_step(w, x, 1.0, eta=1e-4) < before


def test_truncated_linear_gain_values():
    gap = torch.tensor([-2.0, -0.1, 0.0, 0.05, 0.1, 0.15, 0.2, 1.0])
    expected = torch.tensor([1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0])
    assert torch.allclose(truncated_linear_gain(gap), expected)
    assert torch.allclose(
        truncated_linear_gain(torch.tensor([0.25]), slope=2.0), torch.tensor([0.5])
    )


@settings(deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=2, max_size=20))
def test_truncated_linear_gain_is_non_increasing_in_unit_range(values):
    gap = torch.tensor(sorted(values), dtype=torch.float64)
    gain = truncated_linear_gain(gap)
    assert bool(((gain >= 0) & (gain <= 1)).all())
    assert bool((gain[1:] <= gain[:-1]).all())
