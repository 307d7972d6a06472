"""The tuned detector presets as estimators a pipeline can run and checkpoint.

:func:`~streamal.estimators.detector.series_detector` (one univariate series,
NAB-style) and :func:`~streamal.estimators.detector.sensor_detector` (one
multivariate record stream, SKAB-style) are the detectors whose quality
BENCHMARKS.md reports. :class:`SeriesPreset` and :class:`SensorPreset` wrap
them with the interface of a pipeline model: ``score_one`` (a calibrated score
in ``[0, 1]``) then ``learn_one`` for every record, in order; ``classify`` (the
preset's own alert decision, at :attr:`~Preset.alert`); and exact checkpoints
(``_export_state``/``from_state``, numbers as arrays and the rest as JSON, see
:mod:`streamal.piece_state`). Learning is gated inside the preset, so it must
see every record: score it, then learn it.

A pipeline spec selects one with ``[model] preset = "series"`` or ``"sensor"``
(see ``pipelines/README.md``); :data:`PRESETS` maps those names to the classes.

Examples
--------
A noisy level with one jump; the state round trips exactly:

>>> import random
>>> rng = random.Random(3)
>>> model = SeriesPreset(probation=200, seed=0)
>>> alerts = []
>>> for t in range(800):
...     x = {"value": 10 + rng.gauss(0, 1) + (9.0 if t == 600 else 0.0)}
...     alerts.append(model.classify(model.score_one(x)))
...     model.learn_one(x)
>>> alerts[600], model.alert
(True, 0.9965)
>>> twin = SeriesPreset.from_state(*model._export_state())
>>> twin.score_one({"value": 14.0}) == model.score_one({"value": 14.0})
True
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from river import base

from streamal.estimators.detector import (
    SENSOR_ALERT,
    SERIES_ALERT,
    sensor_detector,
    series_detector,
)
from streamal.piece_state import export_child, load_child

__all__ = ["PRESETS", "Preset", "SensorPreset", "SeriesPreset"]


class Preset(base.AnomalyDetector):
    """Base of the presets: the tuned detector built by :meth:`_build`, checkpointed exactly."""

    alert: ClassVar[float]
    """Calibrated score at which the preset alerts, gates learning and starts a hold-off."""

    @abc.abstractmethod
    def _build(self) -> Any:
        """A fresh, untrained detector of the preset's parameters."""

    def _model(self) -> Any:
        model = getattr(self, "_detector", None)
        if model is None:
            model = self._detector = self._build()
        return model

    def score_one(self, x: dict) -> float:
        """Calibrated score of ``x`` in ``[0, 1]``; changes nothing."""
        return float(self._model().score_one(x))

    def learn_one(self, x: dict) -> None:
        """Move on by ``x`` (every record, after its score; the preset gates what it learns)."""
        self._model().learn_one(x)

    def classify(self, score: float) -> bool:
        """Whether ``score`` is an alert of the preset."""
        return bool(self._model().classify(score))

    def _export_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The whole state as named arrays and JSON meta (``meta["params"]``; no pickle)."""
        arrays, state = export_child(self._model(), "")
        return arrays, {"estimator": type(self).__name__, "params": self._get_params(),
                        "state": state}

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Preset:
        """Rebuild a preset from :meth:`_export_state` output."""
        if meta.get("estimator") != cls.__name__:
            raise ValueError(f"state holds a {meta.get('estimator')!r}, not a {cls.__name__}")
        preset = cls(**meta["params"])
        preset._detector = load_child(preset._model(), arrays, meta["state"], "")
        return preset


class SeriesPreset(Preset):
    """:func:`~streamal.estimators.detector.series_detector`: one univariate series.

    Lags of first differences through an ``ActivationDetector`` and a seasonal
    check, each ranked against its recent normal scores; the higher score wins;
    an alert holds the next ``probation // 5`` scores at 0.5. Records carry one
    numeric feature.

    Parameters
    ----------
    probation
        Records before scores mean anything (calibration window; five times the
        hold-off; the records the period is estimated from). NAB tells each
        series ``min(15 % of its length, 750)``.
    seed
        Seed of the network.

    Examples
    --------
    >>> import math, random
    >>> rng = random.Random(0)
    >>> model = SeriesPreset(probation=300, seed=0)
    >>> for t in range(800):  # a daily cycle of 24 records, with noise
    ...     model.learn_one({"value": math.sin(2 * math.pi * t / 24) + rng.gauss(0, 0.1)})
    >>> model.score_one({"value": 4.0}) >= model.alert
    True
    >>> copy = SeriesPreset.from_state(*model._export_state())  # what a checkpoint holds
    >>> copy.score_one({"value": 0.5}) == model.score_one({"value": 0.5})
    True
    """

    alert = SERIES_ALERT

    def __init__(self, probation: int = 750, seed: int | None = None):
        self.probation = probation
        self.seed = seed

    @classmethod
    def _unit_test_params(cls):
        yield {"probation": 40, "seed": 0}

    def _build(self) -> Any:
        return series_detector(probation=self.probation, seed=self.seed)


class SensorPreset(Preset):
    """:func:`~streamal.estimators.detector.sensor_detector`: one multivariate record stream.

    Lags of every sensor through an ``ActivationDetector`` scoring the distance
    from the running mean, averaged over 20 records and ranked against recent
    normal scores; the first ``warm_up`` records are always learnt.

    Parameters
    ----------
    warm_up
        Records of normal operation that open the stream, always learnt (SKAB
        gives 400).
    seed
        Seed of the network.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> model = SensorPreset(warm_up=100, seed=0)
    >>> for _ in range(300):  # flow and pressure move together
    ...     load = rng.gauss(0, 1)
    ...     model.learn_one({"flow": 30 + load, "pressure": 2 + 0.1 * load + rng.gauss(0, 0.01)})
    >>> model.score_one({"flow": 30.0, "pressure": 3.0}) >= model.alert
    True
    """

    alert = SENSOR_ALERT

    def __init__(self, warm_up: int = 400, seed: int | None = None):
        self.warm_up = warm_up
        self.seed = seed

    @classmethod
    def _unit_test_params(cls):
        yield {"warm_up": 40, "seed": 0}

    def _build(self) -> Any:
        return sensor_detector(warm_up=self.warm_up, seed=self.seed)


PRESETS: dict[str, type[Preset]] = {"series": SeriesPreset, "sensor": SensorPreset}
"""Preset name (``[model] preset``) → class."""
