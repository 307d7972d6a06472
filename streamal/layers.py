"""Layers trained by the local competitive rule: dense and locally connected.

A layer holds its weights as a plain buffer (no autograd: learning is local)
and knows three things: its forward map ``y = Wᵀx``, the reconstruction
``W y`` of its input, and the rule's weight change for a micro-batch. Both
kinds give the same numbers as a dense matrix; the locally connected layer
never materialises that mostly-zero matrix.

Examples
--------
>>> import torch
>>> layer = DenseLayer(4, 2, generator=torch.Generator().manual_seed(0))
>>> layer(torch.ones(3, 4)).shape
torch.Size([3, 2])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from streamal.rule import competitive_delta, weighted_residual

INIT_STD = 0.01


class DenseLayer(nn.Module):
    """A fully connected layer, ``y = Wᵀx`` with ``W`` of shape ``(in, out)``.

    Weights start from ``N(0, init_std²)`` drawn from ``generator``.

    >>> import torch
    >>> layer = DenseLayer(3, 2, generator=torch.Generator().manual_seed(0))
    >>> x = torch.tensor([[1.0, 0.0, 0.0]])
    >>> layer(x).shape, layer.reconstruct(layer(x)).shape
    (torch.Size([1, 2]), torch.Size([1, 3]))
    >>> bool(torch.equal(layer(x)[0], layer.weight[0]))  # y = Wᵀx picks the first row
    True
    """

    weight: torch.Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        generator: torch.Generator | None = None,
        init_std: float = INIT_STD,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.init_std = init_std
        w = torch.randn(in_features, out_features, generator=generator, dtype=dtype)
        self.register_buffer("weight", w * init_std)

    @property
    def in_features(self) -> int:
        return self.weight.shape[0]

    @property
    def out_features(self) -> int:
        return self.weight.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight

    def reconstruct(self, y: torch.Tensor) -> torch.Tensor:
        """The input as the layer sees it through its outputs, ``W y``."""
        return y @ self.weight.T

    def delta(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        rate: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The rule's weight change for a micro-batch (see :mod:`streamal.rule`)."""
        return competitive_delta(self.weight, x, y, rate, mask)

    @torch.no_grad()
    def grow_inputs(
        self, extra: int, generator: torch.Generator | None = None, at: int | None = None
    ) -> None:
        """Insert ``extra`` input units (new features) before row ``at`` (default: the end).

        The new rows are drawn like the initial weights; the old rows keep their values.
        """
        at = self.in_features if at is None else at
        new = torch.randn(extra, self.out_features, generator=generator, dtype=self.weight.dtype)
        new = new.to(self.weight.device) * self.init_std
        self.weight = torch.cat([self.weight[:at], new, self.weight[at:]])


class LocallyConnectedLayer(nn.Module):
    """A locally connected layer over an ``H × W × C`` grid (paper §V-A).

    Each output location has ``out_channels`` units connected to a
    ``kernel_size × kernel_size`` window of all input channels around the same
    location ("same" padding, stride 1), with its own weights (no sharing).
    Inputs and outputs are flattened in channel-major (``C, H, W``) order.

    Weights are stored per location, ``(H·W, C_in·k·k, C_out)``, so memory is
    ``H·W·C_in·k²·C_out`` instead of the dense ``(H·W)²·C_in·C_out``. Weights
    that would reach into the zero padding are kept at zero.

    Examples
    --------
    >>> import torch
    >>> layer = LocallyConnectedLayer(5, 5, 1, 2, kernel_size=3)
    >>> layer(torch.ones(4, 25)).shape
    torch.Size([4, 50])
    """

    weight: torch.Tensor
    valid: torch.Tensor

    def __init__(
        self,
        height: int,
        width: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 5,
        generator: torch.Generator | None = None,
        init_std: float = INIT_STD,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.height, self.width = height, width
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = kernel_size
        locations, patch = height * width, in_channels * kernel_size**2
        ones = torch.ones(1, in_channels, height, width, dtype=dtype)
        valid = self._unfold(ones)[0].T  # (locations, patch): 1 where the patch is inside
        w = torch.randn(locations, patch, out_channels, generator=generator, dtype=dtype)
        self.register_buffer("valid", valid)
        self.register_buffer("weight", w * init_std * valid.unsqueeze(2))

    @property
    def in_features(self) -> int:
        return self.in_channels * self.height * self.width

    @property
    def out_features(self) -> int:
        return self.out_channels * self.height * self.width

    def _unfold(self, x: torch.Tensor) -> torch.Tensor:
        grid = x.reshape(-1, self.in_channels, self.height, self.width)
        return F.unfold(grid, self.kernel_size, padding=self.kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self._unfold(x)  # (B, patch, locations)
        y = torch.einsum("bpl,lpc->bcl", patches, self.weight)
        return y.reshape(x.shape[0], -1)

    def reconstruct(self, y: torch.Tensor) -> torch.Tensor:
        """``W y``: each location's reconstruction of its window, summed where windows overlap."""
        grid = y.reshape(y.shape[0], self.out_channels, -1)
        patches = torch.einsum("bcl,lpc->bpl", grid, self.weight)
        size = (self.height, self.width)
        folded = F.fold(patches, size, self.kernel_size, padding=self.kernel_size // 2)
        return folded.reshape(y.shape[0], -1)

    def delta(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        rate: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The rule's weight change, location by location, without a dense matrix."""
        residual = weighted_residual(x - self.reconstruct(y), rate, mask)
        grid = y.reshape(y.shape[0], self.out_channels, -1)
        return torch.einsum("bpl,bcl->lpc", self._unfold(residual), grid) / x.shape[0]

    def to_dense(self) -> torch.Tensor:
        """The equivalent ``(in_features, out_features)`` matrix (for tests and small grids)."""
        eye = torch.eye(self.in_features, dtype=self.weight.dtype, device=self.weight.device)
        return self.forward(eye)
