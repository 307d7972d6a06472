"""Magnitude-preserving nonlinearities: ``‖f(y)‖ = ‖y‖`` for every record.

Activation learning cascades layers whose activation ``‖y‖²`` is a typicality
score, so the nonlinearity between layers must not change a record's
magnitude (paper §III-A). Each activation here is a small ``torch.nn.Module``
whose state (running statistics) lives in buffers, so it travels with
``state_dict`` and ``.to(device)``.

Examples
--------
>>> import torch
>>> y = torch.tensor([[3.0, -4.0]])
>>> Abs()(y)
tensor([[3., 4.]])
>>> float(torch.linalg.vector_norm(LayerNormAbs()(y)))
5.0
"""

from __future__ import annotations

import torch
from torch import nn

NORM_EPS = 1e-12
"""Floor of a norm that is divided by (a row of zeros stays zeros)."""
VAR_EPS = 1e-8
"""Added to the running variance of ``std_abs`` before its square root."""


def _rescale(z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Scale each row of ``z`` to the norm of the same row of ``like``."""
    target = torch.linalg.vector_norm(like, dim=1, keepdim=True)
    current = torch.linalg.vector_norm(z, dim=1, keepdim=True)
    return z * (target / current.clamp_min(NORM_EPS))


class Abs(nn.Module):
    """``f(y) = |y|``: folds every feature vector into the positive orthant.

    >>> import torch
    >>> Abs()(torch.tensor([[3.0, -4.0]]))
    tensor([[3., 4.]])
    """

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y.abs()

    def update(self, y: torch.Tensor) -> None:
        """Stateless: nothing to learn."""


class LayerNormAbs(nn.Module):
    """``|y|`` minus its mean over the layer, rescaled to ``‖y‖`` (paper §III-A).

    A per-record standardisation: simpler than :class:`StdAbs` and stateless.

    >>> import torch
    >>> y = torch.tensor([[3.0, -4.0, 0.0]])
    >>> f = LayerNormAbs()(y)
    >>> f
    tensor([[ 1.1323,  2.8307, -3.9630]])
    >>> bool(torch.isclose(f.norm(), y.norm()))  # ‖f(y)‖ = ‖y‖
    True
    """

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        a = y.abs()
        return _rescale(a - a.mean(dim=1, keepdim=True), y)

    def update(self, y: torch.Tensor) -> None:
        """Stateless: nothing to learn."""


class StdAbs(nn.Module):
    """``std_abs(y) = β · (|y| − μ) / σ`` with running per-unit ``μ``, ``σ`` (eq. 7).

    ``μ`` and ``σ²`` are exponential moving averages of the batch statistics
    of ``|y|`` over learnt micro-batches (``decay`` is the weight kept by the
    old value); ``β`` is chosen per record so that ``‖f(y)‖ = ‖y‖``. Scoring
    reads the running statistics and never changes them.

    Parameters
    ----------
    size
        Number of units.
    decay
        Weight of the previous statistics at each update, in ``[0, 1)``.

    Examples
    --------
    >>> import torch
    >>> f = StdAbs(2, decay=0.0)
    >>> y = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    >>> f.update(y)
    >>> f.mean
    tensor([2.0000, 1.5000])
    >>> torch.allclose(f(y).norm(dim=1), y.norm(dim=1))
    True
    """

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, size: int, decay: float = 0.99):
        super().__init__()
        self.decay = decay
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("var", torch.ones(size))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        a = y.abs()
        z = (a - self.mean) / torch.sqrt(self.var + VAR_EPS)
        return _rescale(z, y)

    @torch.no_grad()
    def update(self, y: torch.Tensor) -> None:
        """Fold the statistics of ``|y|`` of a learnt micro-batch into the running ones.

        The first batch sets the statistics outright, so that early records are
        not standardised against the arbitrary initial values.
        """
        a = y.abs()
        batch_mean = a.mean(dim=0)
        batch_var = a.var(dim=0, unbiased=False)
        first = int(self.count) == 0
        keep = 0.0 if first else self.decay
        if first and a.shape[0] == 1:
            batch_var = torch.ones_like(batch_var)
        self.mean.mul_(keep).add_((1 - keep) * batch_mean)
        self.var.mul_(keep).add_((1 - keep) * batch_var)
        self.count.add_(a.shape[0])


ACTIVATIONS = {"abs": Abs, "std_abs": StdAbs, "layer_norm_abs": LayerNormAbs}


def make_activation(name: str, size: int, decay: float = 0.99) -> nn.Module:
    """Build the activation called ``name`` (``abs``, ``std_abs``, ``layer_norm_abs``).

    Examples
    --------
    >>> make_activation("abs", 4)
    Abs()
    """
    if name == "std_abs":
        return StdAbs(size, decay=decay)
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()
