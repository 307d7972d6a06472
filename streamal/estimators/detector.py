"""The anomaly detector: how far a record is from what the network has learnt."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from river.base import AnomalyDetector

from streamal.encoding import MAX_MAGNITUDE, plain_values, unit_rows, validate_features
from streamal.estimators.base import ActivationEstimator, frame_values
from streamal.inference import complete


class ActivationDetector(ActivationEstimator, AnomalyDetector):
    """Online anomaly detector by activation learning.

    Every record is standardised with running moments, normalised to unit
    length (with a bias unit that keeps the size of its deviation) and fed to a
    small network trained by the local competitive rule. The anomaly score is
    ``1 − ‖y‖²/‖x‖²`` in ``[0, 1]``: the share of the record that the learnt
    pattern does not explain. Scoring never changes the model.

    Parameters
    ----------
    hidden
        Units per layer. ``None`` sizes one layer from the first record,
        ``round(√(features + 1))`` units: far fewer than the inputs, so
        the network cannot reproduce every record and only the typical ones
        come through (measured on river's Shuttle stream; see BENCHMARKS.md).
    activation
        Nonlinearity between layers: ``"std_abs"``, ``"abs"`` or ``"layer_norm_abs"``.
    lr
        Learning rate of the local rule.
    decay
        Decay of the running statistics of ``std_abs``.
    batch_size
        Records per micro-batch; pending records are learnt when the batch is
        full or on :meth:`flush`.
    bias
        Weight of the bias unit (see :mod:`streamal.encoding`).
    deviation
        Weight ``w`` of the record's distance from the running mean in the
        score, ``(1 − w)·residual + w·distance``, where ``distance`` is the
        share of the encoded record that is not the bias unit,
        ``‖z‖²/(‖z‖² + bias²·d)`` for standardised values ``z`` of ``d``
        present features. The residual alone (``w = 0``) misses a record that
        is far out along a direction the network has learnt (a sensor that
        moves a lot, suddenly moving much more); the distance sees it.
        Together they play the roles of Q and T² in PCA monitoring.
    max_features
        Cap on the number of distinct features; a record past it raises
        :class:`~streamal.encoding.FeatureLimitError` and is not learnt.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    seed
        Seed of the weight initialisation.

    Examples
    --------
    >>> import random
    >>> from streamal import ActivationDetector
    >>> rng = random.Random(0)
    >>> detector = ActivationDetector(seed=0)
    >>> for _ in range(2000):
    ...     t = rng.uniform(0, 6.28)
    ...     x = {"a": 1000 + 10 * rng.gauss(0, 1), "b": 0.001 * (1 + rng.gauss(0, 0.1))}
    ...     detector.learn_one(x)
    >>> normal = detector.score_one({"a": 1003.0, "b": 0.00101})
    >>> odd = detector.score_one({"a": 1060.0, "b": 0.0005})
    >>> normal < odd
    True
    """

    def __init__(
        self,
        hidden: tuple[int, ...] | None = None,
        activation: str = "std_abs",
        lr: float = 0.5,
        decay: float = 0.99,
        batch_size: int = 8,
        bias: float = 1.0,
        max_features: int = 1024,
        device: str = "cpu",
        seed: int | None = None,
        deviation: float = 0.0,
    ):
        self.hidden = hidden
        self.activation = activation
        self.lr = lr
        self.decay = decay
        self.batch_size = batch_size
        self.bias = bias
        self.max_features = max_features
        self.device = device
        self.seed = seed
        self.deviation = deviation

    @classmethod
    def _unit_test_params(cls):
        yield {"hidden": (4, 3), "batch_size": 4, "seed": 0}
        yield {"batch_size": 2, "seed": 1, "deviation": 0.5}

    # ---- learning -----------------------------------------------------------
    def learn_one(self, x: dict) -> None:
        """Queue ``x`` for learning; raises ``ValueError`` naming a bad feature."""
        self._ensure_state()
        if self._network is not None:
            row = plain_values(x, self._schema.order, checked=False)
            # the schema's features in its order (nothing to register), not too large
            # (one compiled call; the general way below reports a value that is)
            if row is not None and _kernels.finite_within(row, MAX_MAGNITUDE):
                self._queue_row(row, None)
                return
        clean = validate_features(x)
        values = np.fromiter(clean.values(), np.float64, len(clean)).reshape(1, -1)
        self._ingest(list(clean), values, [None])

    def learn_many(self, X: pd.DataFrame) -> None:
        """Learn the rows of ``X`` (NaN = missing) exactly as a loop of :meth:`learn_one`."""
        self._ensure_state()
        row = self._frame_row(X)
        if row is not None:  # a one-row frame: the one-record way
            if _kernels.within_or_nan(row, MAX_MAGNITUDE):  # else frame_values reports it
                self._queue_row(row, None)
                return
        values = frame_values(X)
        self._ingest(self._column_names(X), values, [None] * len(values))

    def _learn_block(self, values: np.ndarray, labels) -> None:
        if not self._learn_compiled(values, fold=True):
            super()._learn_block(values, labels)

    def _learn_values(self, values: np.ndarray, labels) -> None:
        if not self._learn_compiled(values, fold=False):
            super()._learn_values(values, labels)

    def _learn_compiled(self, values: np.ndarray, fold: bool) -> bool:
        """Encode and learn raw values in one compiled call, folding them into the
        moments first with ``fold``; ``False`` (nothing done) where the network is not
        on the CPU fast path or has a ``delta_reducer`` (the fused call has no place
        for one: ``network.learn`` calls it)."""
        assert self._network is not None
        state = self._network.kernel_state()
        if state is None or self._network.delta_reducer is not None:
            return False
        state.learn_values(values, self._moments.owned(), fold, self.bias, self._network.lr)
        return True

    def _learn_batch(self, x: torch.Tensor, mask: torch.Tensor, labels) -> None:
        assert self._network is not None
        self._network.learn(x, mask=mask)

    # ---- scoring ------------------------------------------------------------
    def _scores(self, values: np.ndarray) -> np.ndarray:
        if self._network is None:
            return np.ones(len(values))
        self._check_deviation()
        state = self._network.kernel_state()
        moments = self._moments
        if state is not None:  # encode, forward and score in one compiled call
            _, mean, _, scale = moments.current()
            return state.score_values(values, mean, scale, self.bias, self.deviation)
        # as self._encode, without the mask; unit length: the input strength ‖x‖² is 1
        rows = unit_rows(moments.standardise(values), self.bias)
        x = torch.from_numpy(rows.astype(np.float32))
        if self._resolved_device.type != "cpu":
            x = x.to(self._resolved_device)
        activation = self._network.activation(x).cpu().numpy().astype(float)
        score = np.minimum(np.maximum(1.0 - activation, 0.0), 1.0)  # np.clip, less overhead
        if self.deviation:
            distance = 1.0 - rows[:, -1] ** 2  # the bias unit is the last input
            score = score + self.deviation * (distance - score)
        return score

    def _check_deviation(self) -> None:
        if self.deviation and not 0.0 < self.deviation <= 1.0:
            raise ValueError(f"deviation must be in [0, 1], got {self.deviation}")

    def _score_row(self, row: np.ndarray) -> float:
        """Score of one row in the schema's order by one compiled call, once the
        network is built; NaN where the kernels do not apply or a value is missing,
        not finite or too large (the general path scores or reports it)."""
        assert self._network is not None
        self._check_deviation()
        state = self._network.kernel_state()
        if state is None:
            return math.nan
        _, mean, _, scale = self._moments.owned()  # the moments' own arrays: float64 vectors
        return state.score_row(row, mean, scale, self.bias, self.deviation)

    def score_one(self, x: dict) -> float:
        """Anomaly score of ``x`` in ``[0, 1]`` (1 before anything is learnt)."""
        self._ensure_state()
        row = plain_values(x, self._schema.order, checked=False)
        if row is not None and self._network is not None:  # the schema's features in order
            score = self._score_row(row)
            if score == score:  # not NaN
                return score
        return float(self._scores(self._query_values([validate_features(x)]))[0])

    def score_many(self, X: pd.DataFrame) -> np.ndarray:
        """Anomaly scores of the rows of ``X``, equal to :meth:`score_one` row by row."""
        self._ensure_state()
        row = self._frame_row(X)
        if row is not None:  # a one-row frame: the one-record way
            score = self._score_row(row)
            if score == score:
                return np.array([score])
        return self._scores(self._query_values(X))

    # ---- completion ---------------------------------------------------------
    def complete_one(self, x: Mapping[str, Any], steps: int = 200) -> dict[str, float]:
        """Fill in the features of the schema that ``x`` lacks (e.g. a dropped sensor).

        The missing standardised values are chosen to maximise the output
        activation with the record's known values fixed (paper eq. 17), then
        mapped back to the feature's own scale through the bias unit.

        Examples
        --------
        >>> import random
        >>> from streamal import ActivationDetector
        >>> rng = random.Random(1)
        >>> det = ActivationDetector(hidden=(2,), seed=1)
        >>> for _ in range(3000):
        ...     v = rng.gauss(0, 1)
        ...     det.learn_one({"a": 10 * v, "b": -5 * v + rng.gauss(0, 0.1)})
        >>> round(det.complete_one({"a": 20.0})["b"])
        -10
        """
        self._ensure_state()
        clean = validate_features(x)
        if self._network is None:
            raise ValueError("nothing has been learnt yet: there is no pattern to complete from")
        values = self._query_values([clean])
        missing = np.isnan(values[0])
        if not missing.any():
            return dict(clean)
        start = np.where(missing, self._moments.mean, values)
        inputs, _ = self._encode(start)
        free = torch.zeros_like(inputs, dtype=torch.bool)
        free[0, : len(missing)] = torch.as_tensor(missing, device=inputs.device)
        filled = complete(self._network, inputs, free, steps=steps)[0].cpu().numpy()
        bias_unit = filled[len(missing)]
        z = filled[: len(missing)] / bias_unit * self.bias * np.sqrt(len(missing))
        restored = self._moments.unstandardise(z)
        out = dict(clean)
        for name, column in self._schema.index.items():
            if missing[column]:
                out[name] = float(restored[column])
        return out


class _Kernels:
    """:mod:`streamal.kernels`' functions, each imported on its first use (numba loads
    then, not with ``import streamal``) and kept: an import statement in a function
    costs ≈ 1 µs on every call, more than the check it imports."""

    def __getattr__(self, name: str) -> Any:
        from streamal import kernels

        value = getattr(kernels, name)
        setattr(self, name, value)
        return value


_kernels = _Kernels()


# ---- calibrated presets ------------------------------------------------------------
SERIES_ALERT = 0.9965
"""Calibrated score at which :func:`series_detector` alerts (and gates learning)."""

SENSOR_ALERT = 0.99
"""Calibrated score at which :func:`sensor_detector` alerts (and gates learning)."""


def series_detector(probation: int = 750, seed: int | None = None, detector: Any = None) -> Any:
    """The default detector for one univariate series (NAB-style event detection).

    A :class:`~streamal.features.LagWindow` of the last 32 first differences
    feeds an :class:`ActivationDetector` (``lr=0.25``) whose scores a
    :class:`~streamal.calibration.RankCalibrator` ranks against the last
    ``probation`` learnt records. Records ranked at 0.9965 or above (about one
    in 300 of a steady series) are alerts and are not learnt (gated); an alert
    caps the next ``probation // 5`` scores at 0.5 (one alert per incident)
    and those records are learnt. Beside it, a
    :class:`~streamal.seasonal.SeasonalCheck` estimates the period of the
    series from its first ``probation`` records and, if it has a clear one,
    ranks the seasonal difference (the change from one period earlier,
    averaged over a tenth of a period) with the same calibration: a missing
    daily peak or a holiday is contextual, invisible to the short window. The
    score is the higher of the two (:class:`~streamal.calibration.Strongest`),
    and an alert of either holds both off.
    Use one instance per series; feed it records such as ``{"value": 3.2}``,
    ``score_one`` before ``learn_one``.

    Parameters
    ----------
    probation
        Records the series needs before its scores mean anything (NAB gives
        each detector ``min(15 % of the series, 750)``): the calibration
        window, five times the hold-off, and the records the period is
        estimated from.
    seed
        Seed of the network.
    detector
        Another raw detector to use in place of the network, with the same
        features and calibration (the benchmarks compare river's this way).

    Examples
    --------
    A wave of period 2π·10 ≈ 63 records, with a spike at record 1200; the
    spike is an alert and the records after it are held off:

    >>> import math, random
    >>> from streamal.estimators.detector import series_detector
    >>> rng = random.Random(0)
    >>> model = series_detector(probation=300, seed=0)
    >>> scores = []
    >>> for t in range(1500):
    ...     x = {"value": math.sin(t / 10) + 0.05 * rng.gauss(0, 1) + (5.0 if t == 1200 else 0.0)}
    ...     scores.append(model.score_one(x))
    ...     model.learn_one(x)
    >>> model.detectors[1].period, scores[1200], max(scores[1201:1260])
    (63, 1.0, 0.5)
    """
    from streamal.calibration import RankCalibrator, Strongest
    from streamal.features import Lagged, LagWindow
    from streamal.seasonal import Magnitude, SeasonalCheck

    def calibrated(raw: Any) -> RankCalibrator:
        return RankCalibrator(
            raw,
            window=probation,
            grace=min(100, probation),
            alert=SERIES_ALERT,
            gate=SERIES_ALERT,
            max_gated=100,
            holdoff=probation // 5,
        )

    network = ActivationDetector(lr=0.25, seed=seed) if detector is None else detector
    return Strongest(
        [
            Lagged(calibrated(network), LagWindow(size=32, diff=True)),
            SeasonalCheck(calibrated(Magnitude()), probation=probation),
        ],
        holdoff=probation // 5,
    )


def sensor_detector(warm_up: int = 400, seed: int | None = None, detector: Any = None) -> Any:
    """The default detector for one multivariate record stream (SKAB-style, point-wise).

    A :class:`~streamal.features.LagWindow` of the last 5 values of every
    sensor feeds an :class:`ActivationDetector` scoring the distance from the
    running mean (``deviation=1``); a :class:`~streamal.calibration.RankCalibrator`
    averages the raw score over 20 records and ranks it against the last
    ``7 * warm_up // 8`` learnt ones. The first ``warm_up`` records (known to be
    normal) are always learnt; afterwards records ranked at 0.99 or above are
    alerts and are not learnt, so a long anomaly keeps alarming.

    The score here is the distance alone: on SKAB's valve1 files the learnt
    residual ranks the anomalous rows *below* the normal ones (ROC-AUC about
    0.44; closing the valve moves the flow along a direction the network has
    learnt), so it does not enter (see BENCHMARKS.md).

    Parameters
    ----------
    warm_up
        Records of normal operation at the start of the stream (SKAB: 400).
    seed
        Seed of the network.
    detector
        Another raw detector to use in place of the network, with the same
        features and calibration.

    Examples
    --------
    >>> import random
    >>> from streamal.estimators.detector import sensor_detector
    >>> rng = random.Random(0)
    >>> model = sensor_detector(warm_up=200, seed=0)
    >>> alerts = []
    >>> for t in range(500):
    ...     drop = 5.0 if t >= 350 else 0.0  # a flow that drops and stays down
    ...     x = {"flow": 32 + rng.gauss(0, 1) - drop, "current": 1 + rng.gauss(0, 0.1)}
    ...     alerts.append(model.classify(model.score_one(x)))
    ...     model.learn_one(x)
    >>> sum(alerts[200:350]) < 10, sum(alerts[370:500]) > 120
    (True, True)
    """
    from streamal.calibration import RankCalibrator
    from streamal.features import Lagged, LagWindow

    return Lagged(
        RankCalibrator(
            ActivationDetector(lr=0.25, deviation=1.0, seed=seed) if detector is None else detector,
            window=max(1, 7 * warm_up // 8),
            grace=min(50, warm_up),
            smooth=20,
            alert=SENSOR_ALERT,
            gate=SENSOR_ALERT,
            max_gated=100,
            learn_first=warm_up,
            skip=min(100, warm_up // 4),
        ),
        LagWindow(size=5),
    )
