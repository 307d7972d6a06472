"""Compiled CPU kernels for small dense networks: one call per micro-batch.

Eager torch or numpy spends microseconds per operation whatever its size, and
a record through a network of a few thousand weights needs dozens of them. The
functions here, compiled by numba once per machine (``cache=True``), do a whole
step in one call: encode raw values (standardise, clip, bias unit, unit length),
run the layers with their activations, score, and apply the local rule with the
running statistics of ``std_abs``. :class:`streamal.kernel_state.KernelState` holds
numpy views of a network's CPU buffers, so learning updates the torch tensors in
place.

The arithmetic is the torch path's (``streamal.network``, ``streamal.activations``,
``streamal.rule``): encoding and moments in float64, the network in float32 like its
weights (norms and statistics summed in float64). Every row is computed on its own,
in a fixed order, so a record's output never depends on the rest of its batch.

Examples
--------
>>> import numpy as np
>>> count, mean, m2, scale = np.zeros(1), np.zeros(1), np.zeros(1), np.ones(1)
>>> moments_update(np.array([[1.0], [3.0], [np.nan]]), count, mean, m2, scale)
>>> count, mean, m2
(array([2.]), array([2.]), array([2.]))
"""

from __future__ import annotations

import numba
import numpy as np

from streamal.activations import NORM_EPS, VAR_EPS
from streamal.encoding import MAX_MAGNITUDE, Z_CLIP

ABS, STD_ABS, LAYER_NORM_ABS = 0, 1, 2
"""Activation codes, one per layer (``std_abs`` is the one with state)."""

_jit = numba.njit(cache=True, error_model="numpy", nogil=True)


# ---- encoding -------------------------------------------------------------------------
@_jit
def finite_within(values, limit):
    """Whether every value is finite and within ``±limit`` (NaN is not)."""
    for v in values.ravel():
        if not abs(v) <= limit:
            return False
    return True


@_jit
def within_or_nan(values, limit):
    """Whether every value is missing (NaN) or within ``±limit`` (±inf is not)."""
    for v in values:
        if abs(v) > limit:
            return False
    return True


@_jit
def moments_update(values, count, mean, m2, scale):
    """Fold a ``(B, d)`` batch (NaN = missing) into running moments, in place.

    ``scale`` receives the floored standard deviation of every column that changed
    (see :meth:`streamal.encoding.RunningMoments.scale`).
    """
    rows, width = values.shape
    for i in range(width):
        n, total = 0.0, 0.0
        for b in range(rows):
            v = values[b, i]
            if not np.isnan(v):
                n += 1.0
                total += v
        if n == 0.0:
            continue
        batch_mean = total / n
        batch_m2 = 0.0
        for b in range(rows):
            v = values[b, i]
            if not np.isnan(v):
                batch_m2 += (v - batch_mean) ** 2
        merged = count[i] + n
        shift = batch_mean - mean[i]
        mean[i] = mean[i] + shift * n / merged
        m2[i] = m2[i] + batch_m2 + shift**2 * count[i] * n / merged
        count[i] = merged
        scale[i] = max(np.sqrt(m2[i] / merged), 1e-6 * (abs(mean[i]) + 1e-6))


@_jit
def _encode(values, mean, scale, bias):
    """Unit-length inputs ``(B, d + 1)`` (float64) and float32 masks of present units,
    as :func:`streamal.encoding.unit_inputs` of the standardised values."""
    rows, width = values.shape
    x = np.empty((rows, width + 1))
    mask = np.ones((rows, width + 1), np.float32)
    for b in range(rows):
        _encode_row(values[b], mean, scale, bias, x[b], mask[b])
    return x, mask


@numba.njit(cache=True, error_model="numpy", nogil=True, inline="always")
def _encode_row(row, mean, scale, bias, x, mask):
    """One row of :func:`_encode` into ``x`` (``d + 1`` values); ``mask`` (the same
    length, ones) gets 0 at the missing values, unless it has size 0."""
    width = row.shape[0]
    present = 0
    for i in range(width):
        v = row[i]
        if np.isnan(v):
            x[i] = 0.0
            if mask.size:
                mask[i] = 0.0
        else:
            z = (v - mean[i]) / scale[i]
            x[i] = min(max(z, -Z_CLIP), Z_CLIP)
            present += 1
    x[width] = bias * np.sqrt(max(present, 1))
    norm = 0.0
    for i in range(width + 1):
        norm += x[i] * x[i]
    norm = np.sqrt(norm)
    for i in range(width + 1):
        x[i] /= norm


# ---- the network ----------------------------------------------------------------------
@_jit
def _activate(y, out, code, mean, var):
    """The activation ``f(y)`` (``streamal.activations``) of rows ``y`` into ``out``."""
    rows, m = y.shape
    if code == STD_ABS:
        spread = np.sqrt(var + np.float32(VAR_EPS))
    for b in range(rows):
        yb, ob = y[b], out[b]
        if code == ABS:
            for j in range(m):
                ob[j] = abs(yb[j])
            continue
        if code == STD_ABS:
            for j in range(m):
                ob[j] = (abs(yb[j]) - mean[j]) / spread[j]
        else:
            centre = 0.0
            for j in range(m):
                centre += abs(yb[j])
            centre /= m
            for j in range(m):
                ob[j] = abs(yb[j]) - centre
        norm_y, norm_z = 0.0, 0.0
        for j in range(m):
            norm_y += yb[j] * yb[j]
            norm_z += ob[j] * ob[j]
        factor = np.sqrt(norm_y) / max(np.sqrt(norm_z), NORM_EPS)
        for j in range(m):
            ob[j] *= factor


@numba.njit(cache=True, error_model="numpy", nogil=True, inline="always")
def _accumulate(out, coefficients, rows):
    """``out += Σ_k coefficients[k] · rows[k]``, four rows per pass (fewer trips of
    ``out`` through memory), in a fixed order."""
    n, m = rows.shape
    k = 0
    while k + 4 <= n:
        c0, c1, c2, c3 = coefficients[k : k + 4]
        r0, r1, r2, r3 = rows[k], rows[k + 1], rows[k + 2], rows[k + 3]
        for j in range(m):
            out[j] += (c0 * r0[j] + c1 * r1[j]) + (c2 * r2[j] + c3 * r3[j])
        k += 4
    for rest in range(k, n):
        c, r = coefficients[rest], rows[rest]
        for j in range(m):
            out[j] += c * r[j]


@numba.njit(cache=True, error_model="numpy", nogil=True, inline="always")
def _dot(a, b):
    """``Σ_k a_k b_k`` in eight float32 lanes, summed pairwise (a fixed order)."""
    n = a.shape[0]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0.0)
    k = 0
    while k + 8 <= n:
        s0 += a[k] * b[k]
        s1 += a[k + 1] * b[k + 1]
        s2 += a[k + 2] * b[k + 2]
        s3 += a[k + 3] * b[k + 3]
        s4 += a[k + 4] * b[k + 4]
        s5 += a[k + 5] * b[k + 5]
        s6 += a[k + 6] * b[k + 6]
        s7 += a[k + 7] * b[k + 7]
        k += 8
    total = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    for rest in range(k, n):
        total += a[rest] * b[rest]
    return total


@_jit
def _forward(x, net):
    """Every layer's input and output for float32 rows ``x``, bottom first (float32,
    summed in a fixed order: a row's result never depends on the other rows). ``net``
    is ``KernelState.net``: ``(weights, codes, means, variances, counts, decays)``, or
    its first four."""
    weights, codes, means, variances = net[0], net[1], net[2], net[3]
    inputs, outputs = [x], []
    for layer in range(len(weights)):
        w, h = weights[layer], inputs[layer]
        y = np.zeros((h.shape[0], w.shape[1]), np.float32)
        for b in range(h.shape[0]):
            _accumulate(y[b], h[b], w)
        outputs.append(y)
        if layer + 1 < len(weights):
            f = np.empty_like(y)
            _activate(y, f, codes[layer], means[layer], variances[layer])
            inputs.append(f)
    return inputs, outputs


@_jit
def _learn(x, rate, mask, net, lr, deltas):
    """One step of the rule on every layer (:meth:`ActivationNetwork.learn`); returns
    the outputs before the update. ``rate`` of size 0 means all ones, ``mask`` of size
    0 all present; the mask applies to the bottom layer only. Where ``deltas`` holds
    ``(in, out)`` arrays, one per layer, the weight changes (before ``lr``) go there
    and nothing is updated (size-0 arrays: update in place)."""
    weights, codes, means, variances, counts, decays = net
    inputs, outputs = _forward(x, net)
    rows = x.shape[0]
    step = np.float32(lr / rows)  # ΔW = η · Σ_b residual_b y_bᵀ / B
    for layer in range(len(weights)):
        # each layer's change depends on its own weights, input and output only
        w, h, y = weights[layer], inputs[layer], outputs[layer]
        n, m = w.shape
        residual = np.zeros((rows, n), np.float32)  # (x − W y) ⊙ mask · rate
        if rows < 4:  # W y as dot products: cheaper than the transposed copy below
            for b in range(rows):
                for i in range(n):
                    residual[b, i] = _dot(y[b], w[i])
        else:  # W y through Wᵀ, along contiguous rows
            wt = np.empty((m, n), np.float32)
            for j in range(m):
                for i in range(n):
                    wt[j, i] = w[i, j]
            for b in range(rows):
                _accumulate(residual[b], y[b], wt)
        for b in range(rows):
            rb = residual[b]
            for i in range(n):
                rb[i] = h[b, i] - rb[i]
            if layer == 0 and mask.size:
                for i in range(n):
                    rb[i] *= mask[b, i]
            if rate.size:
                for i in range(n):
                    rb[i] *= rate[b]
        if rows == 1 and not deltas[layer].size:  # ΔW = η r yᵀ in one pass, no buffer
            r0, y0 = residual[0], y[0]
            for i in range(n):
                c, wi = r0[i], w[i]
                for j in range(m):
                    wi[j] += step * (c * y0[j])  # the loop below's numbers for one row
            continue
        delta = np.empty(m, np.float32)  # one row of residualᵀ y at a time
        for i in range(n):
            delta[:] = 0.0
            _accumulate(delta, residual[:, i], y)
            if deltas[layer].size:
                kept = deltas[layer][i]
                for j in range(m):
                    kept[j] = delta[j] / rows
            else:
                wi = w[i]
                for j in range(m):
                    wi[j] += step * delta[j]
    if deltas[0].size:
        return outputs
    for layer in range(len(weights) - 1):
        if codes[layer] == STD_ABS:
            _update_std_abs(
                outputs[layer], rate, means[layer], variances[layer], counts[layer], decays[layer]
            )
    return outputs


@_jit
def _update_std_abs(y, rate, mean, var, count, decay):
    """:meth:`streamal.activations.StdAbs.update` from the rows learnt with a positive rate."""
    learnt = 0
    for b in range(y.shape[0]):
        if rate.size == 0 or rate[b] > 0:
            learnt += 1
    if learnt == 0:
        return
    first = count[0] == 0
    keep = 0.0 if first else decay
    for j in range(y.shape[1]):
        total = 0.0
        for b in range(y.shape[0]):
            if rate.size == 0 or rate[b] > 0:
                total += abs(y[b, j])
        batch_mean = total / learnt
        spread = 0.0
        for b in range(y.shape[0]):
            if rate.size == 0 or rate[b] > 0:
                spread += (abs(y[b, j]) - batch_mean) ** 2
        batch_var = 1.0 if first and learnt == 1 else spread / learnt
        mean[j] = keep * mean[j] + (1 - keep) * batch_mean
        var[j] = keep * var[j] + (1 - keep) * batch_var
    count[0] += learnt


@_jit
def _copy_out(outputs, outs):
    for layer in range(len(outs)):
        source, target = outputs[layer], outs[layer]
        for b in range(source.shape[0]):
            for j in range(source.shape[1]):
                target[b, j] = source[b, j]


@_jit
def forward(x, net, outs, activation):
    """Layer outputs of rows ``x`` into ``outs`` and ``‖y_top‖²`` into ``activation``."""
    outputs = _forward(x, net)[1]
    _copy_out(outputs, outs)
    top = outputs[-1]
    for b in range(top.shape[0]):
        total = 0.0
        for j in range(top.shape[1]):
            total += top[b, j] * top[b, j]
        activation[b] = total


@_jit
def learn(x, rate, mask, net, lr, outs, deltas):
    """One learning step on rows ``x`` (see ``_learn``); the outputs before it go to
    ``outs``."""
    outputs = _learn(x, rate, mask, net, lr, deltas)
    _copy_out(outputs, outs)


@_jit
def update_std_abs(y, mean, var, count, decay):
    """``std_abs``'s running statistics from learnt outputs ``y`` (all of them)."""
    _update_std_abs(y, np.empty(0, np.float32), mean, var, count, decay)


@_jit
def score_values(values, mean, scale, bias, deviation, net, out):
    """Anomaly scores of raw values (``ActivationDetector._scores``) into ``out``,
    standardised by the running ``mean`` and ``scale``; ``net`` may leave out the
    counts and decays (``KernelState.scoring``)."""
    x = _encode(values, mean, scale, bias)[0]
    top = _forward(x.astype(np.float32), net)[1][-1]
    bias_unit = x.shape[1] - 1
    for b in range(x.shape[0]):
        strength = 0.0
        for j in range(top.shape[1]):
            strength += top[b, j] * top[b, j]
        score = min(max(1.0 - strength, 0.0), 1.0)
        if deviation:
            distance = 1.0 - x[b, bias_unit] ** 2
            score = score + deviation * (distance - score)
        out[b] = score


@_jit
def score_row(row, mean, scale, bias, deviation, net):
    """:func:`score_values` of one row of raw values, returned (the same number, with
    one scratch buffer for the whole pass); NaN when a value is not finite or beyond
    ``±MAX_MAGNITUDE`` (the caller then reports it)."""
    if not finite_within(row, MAX_MAGNITUDE):
        return np.nan
    weights, codes, means, variances = net[0], net[1], net[2], net[3]
    width = row.shape[0] + 1
    x = np.empty(width)
    _encode_row(row, mean, scale, bias, x, np.empty(0, np.float32))
    size = width
    for layer in range(len(weights)):  # y, and f(y) below the top
        size += weights[layer].shape[1] * (2 if layer + 1 < len(weights) else 1)
    scratch = np.empty(size, np.float32)  # the input, then each layer's y (and f(y))
    h = scratch[:width]
    for i in range(width):
        h[i] = x[i]
    start = width
    for layer in range(len(weights)):
        if layer:  # the activation of the layer below, into its own (1, m) rows
            m = h.shape[0]
            f = scratch[start : start + m]
            _activate(
                h.reshape((1, m)),
                f.reshape((1, m)),
                codes[layer - 1],
                means[layer - 1],
                variances[layer - 1],
            )
            h, start = f, start + m
        w = weights[layer]
        y = scratch[start : start + w.shape[1]]
        y[:] = 0.0
        _accumulate(y, h, w)
        h, start = y, start + w.shape[1]
    strength = 0.0
    for j in range(h.shape[0]):
        strength += h[j] * h[j]
    score = min(max(1.0 - strength, 0.0), 1.0)
    if deviation:
        distance = 1.0 - x[width - 1] ** 2
        score = score + deviation * (distance - score)
    return score


@_jit
def learn_values(values, moments, fold, bias, net, lr, no_deltas):
    """Fold raw values into the running ``moments`` when ``fold``, then encode them
    (masks from the missing values) and learn them at rate 1."""
    count, mean, m2, scale = moments
    if fold:
        moments_update(values, count, mean, m2, scale)
    x, mask = _encode(values, mean, scale, bias)
    _learn(x.astype(np.float32), np.empty(0, np.float32), mask, net, lr, no_deltas)


def writable_rows(values: np.ndarray) -> np.ndarray:
    """``values`` as a writable C-contiguous float64 array (a copy only where needed),
    so that every call matches one compiled signature (numba compiles read-only and
    strided arrays separately)."""
    flags = values.flags
    if values.dtype == np.float64 and flags.c_contiguous and flags.writeable:
        return values
    return np.array(values, dtype=np.float64, order="C")
