"""The local competitive learning rule of activation learning, batched.

One layer maps an input ``x`` (``n`` units) to ``y = Wᵀx`` (``m`` units). The
rule of the paper (eq. 4) changes each weight by

    Δw_ij = η · y_j · (x_i − Σ_k y_k w_ik)

that is, Hebbian growth against the reconstruction ``W y`` of the input, which
makes the receiving units compete. For a micro-batch of ``B`` records this
module applies, in one matrix product,

    ΔW = η · Σ_b r_b · (m_b ⊙ (x_b − W y_b)) y_bᵀ / B

with a signed per-record rate ``r_b`` (``1`` learn, ``-λ`` unlearn, ``0``
skip) and a per-record input mask ``m_b`` (``0`` freezes the weights of an
input unit that is missing from record ``b``).

Examples
--------
>>> import torch
>>> W = torch.zeros(3, 2)
>>> W[0, 0] = 1.0
>>> x = torch.tensor([[1.0, 0.0, 0.0]])
>>> competitive_delta(W, x, x @ W)          # x is already reconstructed: no change
tensor([[0., 0.],
        [0., 0.],
        [0., 0.]])
"""

from __future__ import annotations

import torch


def competitive_delta(
    weight: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    rate: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return the averaged weight change ``Σ_b r_b (m_b ⊙ (x_b − W y_b)) y_bᵀ / B``.

    Parameters
    ----------
    weight
        ``(n, m)`` weights, input units by output units.
    x
        ``(B, n)`` inputs.
    y
        ``(B, m)`` net inputs ``x @ weight``.
    rate
        ``(B,)`` signed per-record rates; ``None`` means all ones.
    mask
        ``(B, n)`` input masks (1 keep, 0 freeze); ``None`` means all ones.

    The learning rate ``η`` is applied by the caller. The cost is two matrix
    products; no ``B × n × m`` tensor is ever formed.

    Examples
    --------
    >>> import torch
    >>> W = torch.tensor([[0.5], [0.0]])
    >>> x = torch.tensor([[1.0, 0.0]])
    >>> competitive_delta(W, x, x @ W)      # (1 - 0.25) * 0.5 on the first weight
    tensor([[0.3750],
            [0.0000]])
    """
    residual = weighted_residual(x - y @ weight.T, rate, mask)
    return residual.T @ y / x.shape[0]


def weighted_residual(
    residual: torch.Tensor, rate: torch.Tensor | None, mask: torch.Tensor | None
) -> torch.Tensor:
    """``r_b · (m_b ⊙ residual_b)`` for each record ``b`` (``None`` means ones).

    Examples
    --------
    >>> import torch
    >>> mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    >>> weighted_residual(torch.ones(2, 2), torch.tensor([1.0, -0.5]), mask)
    tensor([[ 1.0000,  0.0000],
            [-0.5000, -0.5000]])
    """
    if mask is not None:
        residual = residual * mask
    if rate is not None:
        residual = residual * rate.unsqueeze(1)
    return residual


def stable_rate_factor(
    x: torch.Tensor, rate: torch.Tensor, lr: float, bound: float = 0.9
) -> float:
    """The factor (at most 1) by which ``rate`` must shrink for ``lr·λ ≤ bound``.

    ``λ`` is the largest eigenvalue of the micro-batch's rate-weighted second
    moment ``C = Σ_b |r_b| x_b x_bᵀ / B``. Written for a batch, the rule is
    ``ΔW = η (C W − W Wᵀ C W)``; along ``C``'s leading direction a weight
    column ``α v`` moves by ``ηλα(1 − α²)``, whose fixed point ``α = 1`` is
    stable only while ``ηλ < 1`` (the step's slope there is ``1 − 2ηλ``). A
    batch learnt again and again beyond that (one record repeated, several
    passes over the same rows) makes the weights oscillate and can send them
    to infinity; varied records have a far smaller ``λ`` than one record's
    ``‖x‖²``, so the bound rarely acts on them. ``x`` is the masked input.
    The cost is a ``B × B`` Gram matrix and its square: ``(Σλ⁴)^¼ ≥ λ`` is
    checked first, and the eigenvalue is computed only when that check fails.

    Examples
    --------
    >>> import torch
    >>> x = torch.ones(4, 2)                         # one record four times, ‖x‖² = 2
    >>> round(stable_rate_factor(x, torch.ones(4), lr=1.0), 6)  # λ = 2: the step must shrink
    0.45
    >>> stable_rate_factor(torch.eye(4), torch.ones(4), lr=1.0)  # λ = 1/4
    1.0
    """
    weighted = x * rate.abs().sqrt().unsqueeze(1)
    gram = weighted @ weighted.T  # B × B: the same nonzero eigenvalues as C·B
    limit = bound * x.shape[0] / lr
    square = gram @ gram
    if float(torch.linalg.vector_norm(square)) <= limit * limit:  # (Σλ⁴)^¼ ≥ λ·B
        return 1.0
    largest = float(torch.linalg.eigvalsh(gram.double())[-1])
    return min(1.0, limit / largest)


def truncated_linear_gain(gap: torch.Tensor, slope: float = 5.0) -> torch.Tensor:
    """The feedback gain ``γ(g) = min(max(1 − slope·g, 0), 1)`` (paper eq. 13–14).

    ``g`` is the activation gap of eq. 12, correct label minus the strongest
    wrong one. The paper asks for a *non-increasing* γ ("learn more on
    errors"): misclassified records (``g ≤ 0``) learn at the full rate, records
    won by a margin of ``1/slope`` or more are not learnt again, and in between
    the gain falls linearly. (The paper prints the truncated line as
    ``5g + 1``, which increases with ``g``; we follow its stated intent.)

    Examples
    --------
    >>> import torch
    >>> truncated_linear_gain(torch.tensor([-1.0, 0.0, 0.1, 0.3]))
    tensor([1.0000, 1.0000, 0.5000, 0.0000])
    """
    return torch.clamp(1.0 - slope * gap, 0.0, 1.0)
