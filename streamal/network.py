"""A stack of locally trained layers: the engine behind every estimator.

Each layer maps its input to ``y_l = W_lᵀ h_l``; between layers a
magnitude-preserving activation gives ``h_{l+1} = f(y_l)``. All layers learn
together from a micro-batch, each from its own input and output only. The
activation of a record is the top layer's ``‖y‖²``; on normalised inputs it is
at most about ``‖x‖²`` and larger for more typical records (paper Property 4).

Examples
--------
>>> import torch
>>> net = ActivationNetwork.dense(8, [6, 4], lr=0.05, seed=0)
>>> g = torch.Generator().manual_seed(1)
>>> x = torch.nn.functional.normalize(torch.randn(64, 8, generator=g))
>>> for _ in range(200):
...     _ = net.learn(x)
>>> bool((net.activation(x) <= 1.0 + 1e-3).all())
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, cast

import torch
from torch import nn

from streamal.activations import make_activation
from streamal.layers import DenseLayer, LocallyConnectedLayer

Layer = DenseLayer | LocallyConnectedLayer


class Activation(Protocol):
    def __call__(self, y: torch.Tensor) -> torch.Tensor: ...

    def update(self, y: torch.Tensor) -> None: ...


class ActivationNetwork(nn.Module):
    """Layers trained by the local competitive rule, with activations in between.

    Parameters
    ----------
    layers
        The layers, bottom first; each one's ``in_features`` must match the
        previous one's ``out_features``.
    activation
        ``"std_abs"`` (default), ``"abs"`` or ``"layer_norm_abs"``.
    lr
        The learning rate ``η``.
    decay
        Decay of the running statistics of ``std_abs``.

    Examples
    --------
    >>> import torch
    >>> net = ActivationNetwork.dense(3, [2], lr=0.1, seed=0)
    >>> [y.shape[1] for y in net(torch.ones(1, 3))]
    [2]
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        activation: str = "std_abs",
        lr: float = 0.01,
        decay: float = 0.99,
    ):
        super().__init__()
        for below, above in zip(layers, layers[1:]):
            if below.out_features != above.in_features:
                raise ValueError(
                    f"layer sizes do not chain: {below.out_features} outputs feed "
                    f"{above.in_features} inputs"
                )
        self.layers = nn.ModuleList(layers)
        self.activations = nn.ModuleList(
            make_activation(activation, layer.out_features, decay) for layer in layers[:-1]
        )
        self.lr = lr

    @classmethod
    def dense(
        cls,
        in_features: int,
        hidden: Sequence[int],
        activation: str = "std_abs",
        lr: float = 0.01,
        decay: float = 0.99,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> ActivationNetwork:
        """A network of dense layers of sizes ``hidden`` on ``in_features`` inputs."""
        if not hidden:
            raise ValueError("a network needs at least one layer")
        if generator is None:
            generator = torch.Generator()
            if seed is not None:
                generator.manual_seed(seed)
        sizes = [in_features, *hidden]
        layers = [
            DenseLayer(n, m, generator=generator, dtype=dtype) for n, m in zip(sizes, sizes[1:])
        ]
        return cls(layers, activation=activation, lr=lr, decay=decay)

    @property
    def stack(self) -> list[Layer]:
        """The layers, bottom first, typed."""
        return cast(list[Layer], list(self.layers))

    @property
    def bottom(self) -> DenseLayer:
        """The bottom layer, when it is dense (the estimators grow its inputs)."""
        layer = self.stack[0]
        if not isinstance(layer, DenseLayer):
            raise TypeError(f"the bottom layer is a {type(layer).__name__}, not a DenseLayer")
        return layer

    @property
    def in_features(self) -> int:
        return self.stack[0].in_features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output ``y_l`` (before its activation), bottom first."""
        outputs = []
        h = x
        for i, layer in enumerate(self.layers):
            y = layer(h)
            outputs.append(y)
            if i < len(self.activations):
                h = self.activations[i](y)
        return outputs

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        """The output activation ``‖y_top‖²`` of each record."""
        with torch.no_grad():
            return self(x)[-1].square().sum(dim=1)

    @torch.no_grad()
    def learn(
        self,
        x: torch.Tensor,
        rate: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Apply one step of the rule to every layer from the micro-batch ``x``.

        ``rate`` holds per-record signed rates (default 1), ``mask`` the
        per-record mask of input units (default all present); only the bottom
        layer sees the mask. Running statistics of the activations follow the
        records learnt with a positive rate. Returns the outputs computed
        before the update.
        """
        outputs = self(x)
        inputs = [x] + [f(y) for f, y in zip(self.activations, outputs)]
        deltas = [
            layer.delta(h, y, rate, mask if i == 0 else None)
            for i, (layer, h, y) in enumerate(zip(self.stack, inputs, outputs))
        ]
        for layer, delta in zip(self.stack, deltas):
            layer.weight.add_(delta, alpha=self.lr)
        positive = slice(None) if rate is None else rate > 0
        for f, y in zip(self.activations, outputs):
            learnt = y[positive]
            if learnt.shape[0]:
                cast(Activation, f).update(learnt)
        return outputs
