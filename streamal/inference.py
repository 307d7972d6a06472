"""Inference on an :class:`~streamal.network.ActivationNetwork`: fill in missing units.

The missing units ``z`` of a record are those that, with its known units ``a``,
make the output activation ``‖y(a, z)‖²`` largest (paper §III-B, eq. 10):
:func:`candidate_activations` enumerates candidate blocks (labels),
:func:`complete` ascends the gradient with the record normalised jointly
(eq. 17), and :func:`generate` grows a unit-norm block from a random start
(eq. 11, 15, 16). None changes the network: weights are buffers without
gradients, running statistics are only read, ``learn`` is never called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch

from streamal.layers import DenseLayer
from streamal.network import ActivationNetwork, Layer

_EPS = 1e-12


def _draw(
    sampler: Callable[..., torch.Tensor],
    x: torch.Tensor,
    generator: torch.Generator | None,
    *size: int,
) -> torch.Tensor:
    """Draw on the generator's device (for the same numbers everywhere), then move to ``x``'s."""
    device = generator.device if generator is not None else x.device
    return sampler(*size, generator=generator, dtype=x.dtype, device=device).to(x.device)


def _from_bottom(network: ActivationNetwork, y: torch.Tensor) -> torch.Tensor:
    """Run the layers above the bottom one on the bottom layer's output ``y``."""
    for f, layer in zip(network.activations, network.layers[1:], strict=True):
        y = layer(f(y))
    return y


def candidate_activations(
    network: ActivationNetwork, x: torch.Tensor, label_units: slice, candidates: torch.Tensor
) -> torch.Tensor:
    """The output activation of every record combined with every candidate block.

    Parameters
    ----------
    network
        A trained network.
    x
        ``(B, n)`` records; their values at ``label_units`` are replaced by each
        candidate (they are normally zero).
    label_units
        The slice of the ``n`` input units that holds the label block.
    candidates
        ``(K, w)`` label-block vectors, ``w`` the width of ``label_units``.

    Returns
    -------
    torch.Tensor
        ``(B, K)``: ``‖y_top‖²`` of record ``b`` with candidate ``k``.

    With a dense bottom layer the record part ``x W₀`` is computed once and
    each candidate adds ``c W₀[label_units]``; only the layers above see the
    ``(B·K, m)`` batch. Other bottom layers get the ``(B·K, n)`` batch.

    Examples
    --------
    Two records, each with its label in the last two units:

    >>> import torch
    >>> net = ActivationNetwork.dense(4, [2], lr=0.1, seed=0)
    >>> data = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 1]]) / 2**0.5
    >>> for _ in range(300):
    ...     _ = net.learn(data)
    >>> x = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0]]) / 2**0.5
    >>> candidate_activations(net, x, slice(2, 4), torch.eye(2) / 2**0.5).argmax(dim=1)
    tensor([0, 1])
    """
    batch, k = x.shape[0], candidates.shape[0]
    bottom = network.layers[0]
    with torch.no_grad():
        if isinstance(bottom, DenseLayer):
            rows = bottom.weight[label_units]
            base = x @ bottom.weight - x[:, label_units] @ rows
            y = (base.unsqueeze(1) + (candidates @ rows).unsqueeze(0)).reshape(batch * k, -1)
            top = _from_bottom(network, y)
        else:
            combined = x.unsqueeze(1).repeat(1, k, 1)
            combined[:, :, label_units] = candidates
            top = network(combined.reshape(batch * k, -1))[-1]
    return top.square().sum(dim=1).reshape(batch, k)


def _ascend(
    objective: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    steps: int,
    step_size: float,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.Tensor:
    """Maximise ``objective(z).sum()`` over ``z`` by Adam from ``start``; return ``z``.

    Written out (a few lines) rather than ``torch.optim.Adam``, whose first step
    imports the compiler stack and costs seconds on a record's first inference.
    """
    z = start.clone()
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    for t in range(1, steps + 1):
        with torch.enable_grad():
            z.requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(z).sum(), z)
        z = z.detach()
        m.mul_(betas[0]).add_(grad, alpha=1 - betas[0])
        v.mul_(betas[1]).addcmul_(grad, grad, value=1 - betas[1])
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        z += step_size * m_hat / (v_hat.sqrt() + 1e-8)
    return z


def complete(
    network: ActivationNetwork,
    x: torch.Tensor,
    free: torch.Tensor,
    *,
    steps: int = 200,
    step_size: float = 0.05,
    l1: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill the free units of each record to maximise the output activation (eq. 10, 17).

    The record ``(known, free)`` is normalised jointly to ``‖x‖`` before it
    enters the network; the free units start from their values in ``x``
    (plus a small jitter from ``generator`` when one is given) and follow Adam
    on ``‖y‖² − l1·‖z‖₁``, ``z`` the free part of the normalised record
    (eq. 15). The known units are never optimised.

    Parameters
    ----------
    network
        A trained network.
    x
        ``(B, n)`` records.
    free
        ``(B, n)`` boolean (or 0/1) mask of the units to fill in.
    steps, step_size
        Number and size (Adam's learning rate) of the ascent steps.
    l1
        Weight of the sparsity term ``−l1·‖z‖₁``.
    generator
        If given, draws an ``N(0, 10⁻⁶)`` jitter added to the starting free units.

    Returns
    -------
    torch.Tensor
        ``(B, n)`` completed records, each scaled to the norm of its row of ``x``.

    Examples
    --------
    >>> import torch
    >>> net = ActivationNetwork.dense(3, [1], lr=0.1, seed=0)
    >>> data = torch.nn.functional.normalize(torch.tensor([[1.0, 1.0, 0.0]]))
    >>> for _ in range(300):
    ...     _ = net.learn(data)
    >>> x = torch.tensor([[1.0, 0.0, 0.0]])
    >>> complete(net, x, torch.tensor([[False, True, True]]))[:, :2].round(decimals=2)
    tensor([[0.7100, 0.7100]])
    """
    x, free = x.detach(), free.to(torch.bool)
    target = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    start = x.clone()
    if generator is not None:
        start = start + 1e-3 * _draw(torch.randn, x, generator, *x.shape) * free

    def record(z: torch.Tensor) -> torch.Tensor:
        v = torch.where(free, z, x)
        return v * (target / torch.linalg.vector_norm(v, dim=1, keepdim=True).clamp_min(_EPS))

    def objective(z: torch.Tensor) -> torch.Tensor:
        v = record(z)
        gain = network(v)[-1].square().sum(dim=1)
        return gain - l1 * (v * free).abs().sum(dim=1) if l1 else gain

    with torch.no_grad():
        return record(_ascend(objective, start, steps, step_size))


def generate(
    network: ActivationNetwork,
    x: torch.Tensor,
    free: torch.Tensor,
    *,
    block_norm: float = 1.0,
    l1: float = 0.003,
    output_noise: float = 0.03,
    steps: int = 300,
    step_size: float = 0.05,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Generate the free block of each record from a random start (eq. 11, 15, 16).

    The free block ``z`` starts uniform random (scaled to unit norm) and enters
    the network as ``z/‖z‖·block_norm`` next to the known units of ``x``.
    Adam maximises ``Σ_i (1+δ_i) y_i² − l1·‖z‖₁ − (‖z‖²−1)²``, with output
    noise ``δ_i ~ N(0, output_noise²)`` drawn once per record, which makes
    records with the same known units differ.

    Parameters
    ----------
    network
        A trained network.
    x
        ``(B, n)`` records; the free units' values are ignored.
    free
        ``(B, n)`` boolean (or 0/1) mask of the generated block.
    block_norm
        Norm of the generated block.
    l1
        Weight of the sparsity term (``β`` of eq. 15).
    output_noise
        Standard deviation of the per-record output gains ``δ``.
    steps, step_size
        Number and size (Adam's learning rate) of the ascent steps.
    generator
        Source of the random start and of ``δ``.

    Returns
    -------
    torch.Tensor
        ``(B, n)``: the known units of ``x`` and a generated block of norm ``block_norm``.

    Examples
    --------
    >>> import torch
    >>> net = ActivationNetwork.dense(6, [4, 3], seed=0)
    >>> free = torch.tensor([[False, False, True, True, True, True]])
    >>> out = generate(net, torch.tensor([[1.0, 0.0, 0, 0, 0, 0]]), free, steps=20,
    ...                generator=torch.Generator().manual_seed(0))
    >>> round(float(out[0, 2:].norm()), 4), out[0, :2].tolist()
    (1.0, [1.0, 0.0])
    """
    x, free = x.detach(), free.to(torch.bool)
    start = _draw(torch.rand, x, generator, *x.shape) * free
    start = start / torch.linalg.vector_norm(start, dim=1, keepdim=True).clamp_min(_EPS)
    top = cast(Layer, network.layers[-1]).out_features
    gains = 1.0 + output_noise * _draw(torch.randn, x, generator, x.shape[0], top)

    def record(z: torch.Tensor) -> torch.Tensor:
        z = z * free
        block = z * (block_norm / torch.linalg.vector_norm(z, dim=1, keepdim=True).clamp_min(_EPS))
        return torch.where(free, block, x)

    def objective(z: torch.Tensor) -> torch.Tensor:
        z_free = z * free
        gain = (gains * network(record(z))[-1].square()).sum(dim=1)
        norm2 = z_free.square().sum(dim=1)
        return gain - l1 * z_free.abs().sum(dim=1) - (norm2 - 1.0).square()

    with torch.no_grad():
        return record(_ascend(objective, start, steps, step_size))
