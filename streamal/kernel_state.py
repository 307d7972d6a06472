"""A network's CPU buffers as numpy views, and the compiled kernels called on them.

:meth:`streamal.network.ActivationNetwork.kernel_state` builds a
:class:`KernelState` for a small dense CPU network; its methods call the kernels of
:mod:`streamal.kernels` with the network's weights and ``std_abs`` statistics, which
the kernels update in place (the views share memory with the torch buffers).

The per-record methods (:meth:`KernelState.score_row`, :meth:`KernelState.learn_values`)
call their kernel through a :class:`Direct`: past numba's dispatcher, which would
otherwise check the type of every array on every call (the network's arrays come in
nested tuples).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from streamal.kernels import (
    STD_ABS,
    forward,
    learn,
    learn_values,
    score_row,
    score_values,
    update_std_abs,
    writable_rows,
)


class Direct:
    """A compiled kernel called past numba's dispatcher once its signature is known.

    :attr:`call` first goes through the dispatcher (which compiles the kernel or
    loads it from numba's cache) and keeps the compiled function it chose; from
    then on :attr:`call` is that function, without the dispatcher's type
    resolution (≈ 0.5 µs for a kernel with a tuple of the network's arrays, ≈ 1 µs
    with two). It converts its arguments as the first call's types, unchecked:
    every later call must pass the same types (array dtypes, dimensions and
    layouts; ``float`` for floats), which the callers in this module guarantee.

    Examples
    --------
    >>> import numpy as np
    >>> from streamal.kernels import finite_within
    >>> check = Direct(finite_within)
    >>> check.call(np.array([1.0, 2.0]), 5.0), check.call(np.array([1.0, 9.0]), 5.0)
    (True, False)
    >>> check.call is not check.kernel  # the compiled function itself
    True
    """

    __slots__ = ("call", "kernel")

    def __init__(self, kernel: Any):
        self.kernel = kernel
        self.call: Callable[..., Any] = self._first

    def _first(self, *args: Any) -> Any:
        result = self.kernel(*args)
        compiled = self.kernel.overloads.get(tuple(map(self.kernel.typeof_pyval, args)))
        self.call = self.kernel if compiled is None else compiled.entry_point
        return result


class KernelState:
    """numpy views of a network's buffers, in the shapes the kernels take.

    Built by :meth:`streamal.network.ActivationNetwork.kernel_state` for a CPU
    network of float32 dense layers; the views share memory with the torch
    buffers, so the kernels read and update the network itself. Layers without
    ``std_abs`` statistics (and the top layer) get empty stand-ins.
    """

    def __init__(
        self,
        weights: tuple[np.ndarray, ...],
        codes: np.ndarray,
        means: tuple[np.ndarray, ...],
        variances: tuple[np.ndarray, ...],
        counts: tuple[np.ndarray, ...],
        decays: np.ndarray,
    ):
        self.weights, self.codes = weights, codes
        self.net = (weights, codes, means, variances, counts, decays)  # the kernels' ``net``
        self.scoring = self.net[:4]  # what scoring reads (fewer arrays to pass)
        self.no_deltas = tuple(np.zeros((0, 0), np.float32) for _ in weights)
        self._score_row, self._learn_values = Direct(score_row), Direct(learn_values)

    def _outs(self, rows: int) -> tuple[np.ndarray, ...]:
        return tuple(np.empty((rows, w.shape[1]), np.float32) for w in self.weights)

    def forward(self, x: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """``(outputs, activation)`` of float32 rows ``x``, both float32."""
        outs, activation = self._outs(len(x)), np.empty(len(x), np.float32)
        forward(x, self.net, outs, activation)
        return outs, activation

    def learn(
        self, x: np.ndarray, rate: np.ndarray, mask: np.ndarray, lr: float, apply: bool = True
    ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        """One step on float32 rows ``x``; ``rate``/``mask`` of size 0 mean ones.

        Returns the outputs before the step and, with ``apply=False``, the weight
        changes (before ``lr``) instead of applying them, the statistics untouched.
        """
        outs = self._outs(len(x))
        deltas = self.no_deltas if apply else tuple(np.empty_like(w) for w in self.weights)
        learn(x, rate, mask, self.net, lr, outs, deltas)
        return outs, deltas

    def update_statistics(self, learnt: list[np.ndarray]) -> None:
        """Fold learnt outputs (one float32 array per activation) into ``std_abs``'s
        running statistics, as a step that applies itself does."""
        _, codes, means, variances, counts, decays = self.net
        for layer, y in enumerate(learnt):
            if codes[layer] == STD_ABS and len(y):
                y = np.ascontiguousarray(y, np.float32)
                update_std_abs(y, means[layer], variances[layer], counts[layer], decays[layer])

    def score_values(
        self, values: np.ndarray, mean: np.ndarray, scale: np.ndarray, bias: float, deviation: float
    ) -> np.ndarray:
        """Anomaly scores of raw float64 values standardised by ``mean`` and ``scale``."""
        out = np.empty(len(values))
        score_values(writable_rows(values), mean, scale, bias, deviation, self.scoring, out)
        return out

    def score_row(
        self, row: np.ndarray, mean: np.ndarray, scale: np.ndarray, bias: float, deviation: float
    ) -> float:
        """:meth:`score_values` of one row, returned; NaN for a row with a value that is
        not finite or too large. ``row``, ``mean`` and ``scale`` must be C-contiguous
        float64 vectors (the kernel is called without type checks: see :class:`Direct`)."""
        return self._score_row.call(row, mean, scale, float(bias), float(deviation), self.scoring)

    def learn_values(
        self,
        values: np.ndarray,
        moments: tuple[np.ndarray, ...],
        fold: bool,
        bias: float,
        lr: float,
    ) -> None:
        """Encode raw float64 rows ``(B, d)`` (NaN = missing) and learn them at rate 1;
        with ``fold``, first fold them into ``moments``, which must be
        ``RunningMoments.owned()`` (C-contiguous float64 vectors: the kernel is called
        without type checks, see :class:`Direct`)."""
        values = writable_rows(values)
        learn = self._learn_values.call
        learn(values, moments, bool(fold), float(bias), self.net, float(lr), self.no_deltas)
