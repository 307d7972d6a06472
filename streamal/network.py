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

from collections.abc import Callable, Sequence
from typing import Protocol, cast

import numpy as np
import torch
from torch import nn

from streamal.activations import make_activation
from streamal.layers import DenseLayer, LocallyConnectedLayer

Layer = DenseLayer | LocallyConnectedLayer


class Activation(Protocol):
    def __call__(self, y: torch.Tensor) -> torch.Tensor: ...

    def update(self, y: torch.Tensor) -> None: ...

    def forward_array(self, y: np.ndarray) -> np.ndarray: ...

    def update_array(self, y: np.ndarray) -> None: ...


FAST_PATH_MAX_WEIGHTS = 1 << 17
"""CPU networks of dense layers with at most this many weights in all run in numpy."""


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` through torch, which keeps to ``torch.set_num_threads`` (numpy's
    OpenBLAS starts its own threads, a large loss on a busy machine)."""
    return torch.mm(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def _matmul(h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``h @ w`` in ``w``'s dtype; float32 products are summed in float64 and rounded
    once, so a record's output does not depend on the rest of its batch (BLAS picks
    other kernels, and summation orders, for other batch sizes)."""
    if w.dtype == np.float32:
        return _mm(h.astype(np.float64), w.astype(np.float64)).astype(np.float32)
    return _mm(h, w)


DeltaReducer = Callable[
    [list[torch.Tensor], list[torch.Tensor]], tuple[list[torch.Tensor], list[torch.Tensor]]
]
"""``(deltas, learnt) -> (deltas, learnt)``: per-layer weight deltas (before ``lr``) and
the per-layer outputs that the activations' running statistics learn from."""


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

    Attributes
    ----------
    delta_reducer
        ``None`` (default), or a :data:`DeltaReducer` that :meth:`learn` calls
        with the micro-batch's per-layer deltas and the outputs the running
        statistics learn from, and whose results it applies instead (for
        instance :class:`streamal.distributed.DeltaSum`, which sums them over
        workers).

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
        self.delta_reducer: DeltaReducer | None = None

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

    def fast_path(self, x: torch.Tensor) -> bool:
        """Whether ``x`` goes through the numpy CPU fast path (small dense CPU networks).

        Eager torch costs several microseconds per op whatever the size; a network
        of a few thousand weights computes in less. The fast path gives the torch
        path's numbers up to float32 rounding (``tests/test_network.py`` checks it)
        and is never used on CUDA, with autograd, or for locally connected layers.
        """
        if x.device.type != "cpu" or x.requires_grad:
            return False
        total = 0
        for layer in self.layers._modules.values():
            if type(layer) is not DenseLayer:
                return False
            w = cast(torch.Tensor, layer._buffers["weight"])
            if w.device.type != "cpu" or w.dtype != x.dtype or w.requires_grad:
                return False
            total += w.numel()
        if total > FAST_PATH_MAX_WEIGHTS:
            return False
        for f in self.activations._modules.values():
            if not hasattr(f, "forward_array"):
                return False
        return True

    def _forward_arrays(self, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``(inputs, outputs)`` of every layer, in numpy, on views of the weights."""
        inputs, outputs = [x], []
        acts = list(self.activations._modules.values())
        for i, layer in enumerate(self.layers._modules.values()):
            y = _matmul(inputs[-1], cast(torch.Tensor, layer._buffers["weight"]).numpy())
            outputs.append(y)
            if i < len(acts):
                inputs.append(cast(Activation, acts[i]).forward_array(y))
        return inputs, outputs

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output ``y_l`` (before its activation), bottom first."""
        if self.fast_path(x):
            return [torch.from_numpy(y) for y in self._forward_arrays(x.numpy())[1]]
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
        if self.fast_path(x):
            top = self._forward_arrays(x.numpy())[1][-1]
            return torch.from_numpy(np.add.reduce(top * top, axis=1))
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
        if self.fast_path(x):
            return self._learn_arrays(x, rate, mask)
        inputs, outputs = [x], []
        for i, layer in enumerate(self.layers):
            outputs.append(layer(inputs[-1]))
            if i < len(self.activations):
                inputs.append(self.activations[i](outputs[-1]))
        deltas = [
            layer.delta(h, y, rate, mask if i == 0 else None)
            for i, (layer, h, y) in enumerate(zip(self.stack, inputs, outputs))
        ]
        positive = slice(None) if rate is None else rate > 0
        learnt = [y[positive] for y in outputs[: len(self.activations)]]
        if self.delta_reducer is not None:
            deltas, learnt = self.delta_reducer(deltas, learnt)
        for layer, delta in zip(self.stack, deltas):
            layer.weight.add_(delta, alpha=self.lr)
        for f, y in zip(self.activations, learnt):
            if y.shape[0]:
                cast(Activation, f).update(y)
        return outputs

    def _learn_arrays(
        self, x: torch.Tensor, rate: torch.Tensor | None, mask: torch.Tensor | None
    ) -> list[torch.Tensor]:
        """:meth:`learn` in numpy, updating the CPU buffers in place (the fast path)."""
        weights = [layer.weight.numpy() for layer in self.stack]
        inputs, outputs = self._forward_arrays(x.numpy())
        r = None if rate is None else rate.detach().cpu().numpy().astype(x.numpy().dtype)
        deltas = []
        for i, (w, h, y) in enumerate(zip(weights, inputs, outputs)):
            residual = h - _mm(y, w.T)
            if i == 0 and mask is not None:
                residual *= mask.detach().cpu().numpy()
            if r is not None:
                residual *= r[:, None]
            deltas.append(_mm(residual.T, y) / h.shape[0])
        n_act = len(self.activations)
        learnt = outputs[:n_act] if r is None else [y[r > 0] for y in outputs[:n_act]]
        if self.delta_reducer is not None:
            reduced, pooled = self.delta_reducer(
                [torch.from_numpy(d) for d in deltas], [torch.from_numpy(y) for y in learnt]
            )
            deltas = [d.detach().cpu().numpy() for d in reduced]
            learnt = [y.detach().cpu().numpy() for y in pooled]
        for w, delta in zip(weights, deltas):
            w += self.lr * delta
        for f, y in zip(self.activations, learnt):
            if y.shape[0]:
                cast(Activation, f).update_array(y)
        return [torch.from_numpy(y) for y in outputs]
