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

import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import torch
from torch import nn

from streamal.activations import Abs, LayerNormAbs, StdAbs, make_activation
from streamal.layers import DenseLayer, LocallyConnectedLayer

if TYPE_CHECKING:
    from streamal.kernel_state import KernelState

Layer = DenseLayer | LocallyConnectedLayer


class Activation(Protocol):
    def __call__(self, y: torch.Tensor) -> torch.Tensor: ...

    def update(self, y: torch.Tensor) -> None: ...


FAST_PATH_MAX_WEIGHTS = 1 << 17
"""CPU networks of float32 dense layers with at most this many weights in all run
through the compiled kernels of :mod:`streamal.kernels`."""


class _KernelCache:
    """A network's :class:`~streamal.kernel_state.KernelState` and what it was built from.

    The views stay the network's while ``namespaces[k][keys[k]] is held[k]`` for
    every ``k`` (a replaced buffer, layer or decay rebuilds them). A copy of the
    network starts empty: copied views would point at the original.
    """

    def __init__(self) -> None:
        self.namespaces: tuple[dict[str, Any], ...] = ()
        self.keys: tuple[str, ...] = ()
        self.held: tuple[object, ...] = ()
        self.built = False
        self.state: KernelState | None = None
        self.weights = 0

    def watch(self, checks: list[tuple[dict[str, Any], str, object]]) -> None:
        """Hold the views valid while each ``(namespace, key, object)`` still holds."""
        self.namespaces, self.keys, self.held = (tuple(c) for c in zip(*checks))
        self.built = True

    def valid(self) -> bool:
        return self.built and all(
            map(operator.is_, map(dict.get, self.namespaces, self.keys), self.held)
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> _KernelCache:
        return _KernelCache()

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (_KernelCache, ())


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
    max_row_norm
        ``None`` (default), or a bound: after every :meth:`learn` step, weight
        rows (one per unit) longer than it are scaled back to it. Unlearning
        (negative rates) turns the rule's decay term into growth; the rule's
        own fixed point has unit rows, so a bound of 1 only stops that growth.
        Applied after the reduced deltas, it keeps workers that share a model
        identical.

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
        self.max_row_norm: float | None = None
        self._kernel_cache = _KernelCache()

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
        """Whether ``x`` goes through the compiled CPU kernels (small dense CPU networks).

        Eager torch costs several microseconds per op whatever the size; a network
        of a few thousand weights computes in less. The kernels give the torch
        path's numbers up to float32 rounding (``tests/test_fast_path.py`` checks
        it) and are never used on CUDA, with autograd, for locally connected
        layers or for float64 weights.
        """
        return self._fast(x) is not None

    def _fast(self, x: torch.Tensor) -> KernelState | None:
        if x.device.type != "cpu" or x.dtype != torch.float32 or x.requires_grad:
            return None
        return self.kernel_state()

    def kernel_state(self) -> KernelState | None:
        """The network as the kernels of :mod:`streamal.kernels` see it, or ``None``
        where they do not apply (see :meth:`fast_path`). Cached while the buffers,
        layers and decays it views stay the same objects."""
        cache = self._kernel_cache
        if not cache.valid():
            self._kernel_cache = cache = self._build_kernel_state()
        return cache.state if cache.weights <= FAST_PATH_MAX_WEIGHTS else None

    def _build_kernel_state(self) -> _KernelCache:
        layers, acts = self.layers, self.activations
        checks: list[tuple[dict[str, Any], str, object]] = [
            (self._modules, "layers", layers),
            (self._modules, "activations", acts),
            (layers._modules, str(len(layers)), None),  # nothing appended since
            (acts._modules, str(len(acts)), None),
        ]
        checks += [(layers._modules, str(i), layer) for i, layer in enumerate(layers)]
        checks += [(acts._modules, str(i), f) for i, f in enumerate(acts)]
        cache = _KernelCache()
        cache.state = self._kernel_views(checks)
        cache.watch(checks)
        if cache.state is None:
            cache.weights = FAST_PATH_MAX_WEIGHTS + 1
        else:
            cache.weights = sum(w.size for w in cache.state.weights)
        return cache

    def _kernel_views(self, checks: list[tuple[dict[str, Any], str, object]]) -> KernelState | None:
        """The views for the kernels, or ``None`` for a network they do not take; adds
        to ``checks`` every buffer and setting it reads."""
        from streamal import kernels  # numba loads on first use, not on import
        from streamal.kernel_state import KernelState

        kinds = {Abs: kernels.ABS, StdAbs: kernels.STD_ABS, LayerNormAbs: kernels.LAYER_NORM_ABS}
        weights = []
        for layer in self.layers:
            w = layer._buffers.get("weight") if type(layer) is DenseLayer else None
            if not isinstance(w, torch.Tensor):
                return None
            checks.append((layer._buffers, "weight", w))
            if w.device.type != "cpu" or w.dtype != torch.float32 or not w.is_contiguous():
                return None
            weights.append(w.numpy())
        # per layer; the top layer (no activation above it) and the stateless
        # activations get stand-ins that the kernels never read
        codes, decays = [kernels.ABS] * len(weights), [0.0] * len(weights)
        stats = [(np.zeros(0, np.float32),) * 2 + (np.zeros(1, np.int64),)] * len(weights)
        for i, f in enumerate(self.activations):
            if type(f) not in kinds:
                return None
            codes[i] = kinds[type(f)]
            if isinstance(f, StdAbs):
                buffers = [cast(torch.Tensor, f._buffers[k]) for k in ("mean", "var", "count")]
                checks += [(f._buffers, k, t) for k, t in zip(("mean", "var", "count"), buffers)]
                checks.append((vars(f), "decay", f.decay))
                dtypes = (torch.float32, torch.float32, torch.int64)
                if any(t.device.type != "cpu" or t.dtype != d for t, d in zip(buffers, dtypes)):
                    return None
                mean, var, count = (t.numpy() for t in buffers)
                stats[i], decays[i] = (mean, var, count.reshape(1)), f.decay
        means, variances, counts = zip(*stats)
        return KernelState(
            tuple(weights), np.array(codes, np.int64), means, variances, counts, np.array(decays)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output ``y_l`` (before its activation), bottom first."""
        state = self._fast(x)
        if state is not None:
            return [torch.from_numpy(y) for y in state.forward(_rows(x))[0]]
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
        state = self._fast(x)
        if state is not None:
            return torch.from_numpy(state.forward(_rows(x))[1])
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
        state = self._fast(x)
        if state is not None:
            outputs = self._learn_compiled(state, x, rate, mask)
        else:
            outputs = self._learn_torch(x, rate, mask)
        if self.max_row_norm is not None:
            self._bound_rows(self.max_row_norm)
        return outputs

    def _learn_torch(
        self,
        x: torch.Tensor,
        rate: torch.Tensor | None,
        mask: torch.Tensor | None,
    ) -> list[torch.Tensor]:
        """:meth:`learn` with torch operations (any device, dtype and layer kind)."""
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

    @torch.no_grad()
    def _bound_rows(self, bound: float) -> None:
        """Scale every weight row longer than ``bound`` back to length ``bound``."""
        for layer in self.stack:
            norms = torch.linalg.vector_norm(layer.weight, dim=-1, keepdim=True)
            layer.weight.mul_(bound / norms.clamp_min(bound))

    def _learn_compiled(
        self,
        state: KernelState,
        x: torch.Tensor,
        rate: torch.Tensor | None,
        mask: torch.Tensor | None,
    ) -> list[torch.Tensor]:
        """:meth:`learn` through the kernels; a :attr:`delta_reducer` gets the deltas
        and outputs as tensors that share the arrays' memory, as on the torch path."""
        r = _NO_RATE if rate is None else _rows(rate)
        m = _NO_MASK if mask is None else _rows(mask)
        reducer = self.delta_reducer
        outs, deltas = state.learn(_rows(x), r, m, self.lr, apply=reducer is None)
        if reducer is not None:
            n_act = len(self.activations)
            learnt = list(outs[:n_act]) if rate is None else [y[r > 0] for y in outs[:n_act]]
            reduced, pooled = reducer(
                [torch.from_numpy(d) for d in deltas], [torch.from_numpy(y) for y in learnt]
            )
            for layer, delta in zip(self.stack, reduced):
                layer.weight.add_(delta.to(layer.weight.device), alpha=self.lr)
            state.update_statistics([y.detach().cpu().numpy() for y in pooled])
        return [torch.from_numpy(y) for y in outs]


_NO_RATE = np.zeros(0, np.float32)
_NO_MASK = np.zeros((0, 0), np.float32)


def _rows(t: torch.Tensor) -> np.ndarray:
    """A tensor as a C-contiguous float32 numpy array (a view where it already is one)."""
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())
