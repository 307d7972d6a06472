"""A network's CPU buffers as numpy views, and the compiled kernels called on them.

:meth:`streamal.network.ActivationNetwork.kernel_state` builds a
:class:`KernelState` for a small dense CPU network; its methods call the kernels of
:mod:`streamal.kernels` with the network's weights and ``std_abs`` statistics, which
the kernels update in place (the views share memory with the torch buffers).
"""

from __future__ import annotations

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
        """:meth:`score_values` of one row (a C-contiguous float64 vector), returned;
        NaN for a row with a value that is not finite or too large."""
        return score_row(row, mean, scale, bias, deviation, self.scoring)

    def learn_values(
        self,
        values: np.ndarray,
        moments: tuple[np.ndarray, ...],
        fold: bool,
        bias: float,
        lr: float,
    ) -> None:
        """Encode raw float64 values (NaN = missing) and learn them at rate 1; with
        ``fold``, first fold them into ``moments`` (``RunningMoments.owned()``)."""
        learn_values(writable_rows(values), moments, fold, bias, self.net, lr, self.no_deltas)
