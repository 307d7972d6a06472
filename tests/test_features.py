"""The lag window and the detector wrapper that feeds it."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import river.datasets
from river import base, checks, datasets

from streamal import ActivationDetector
from streamal.calibration import RankCalibrator
from streamal.features import Lagged, LagWindow


class Recorder(base.AnomalyDetector):
    """Scores the newest lag; remembers what it scored and what it learnt."""

    def __init__(self):
        self.scored: list[dict] = []
        self.learnt: list[dict] = []

    def score_one(self, x):
        self.scored.append(dict(x))
        return abs(x.get("v_lag0", 0.0))

    def learn_one(self, x):
        self.learnt.append(dict(x))


def windows(values, size, diff=False):
    """Reference: the window ending at each position, padded with the first value."""
    out = []
    for t in range(len(values)):
        past = [values[max(t - k, 0)] for k in range(size + 1)]
        if diff:
            out.append([past[k] - past[k + 1] for k in range(size)])
        else:
            out.append(past[:size])
    return out


@pytest.mark.parametrize("diff", [False, True])
@pytest.mark.parametrize("size", [1, 3, 12])
def test_window_matches_reference(size, diff):
    rng = random.Random(size)
    values = [rng.gauss(0, 1) for _ in range(40)]
    lag = LagWindow(size=size, diff=diff)
    for t, v in enumerate(values):
        got = lag.transform_one({"v": v})
        assert list(got.values()) == pytest.approx(windows(values, size, diff)[t])
        lag.learn_one({"v": v})


def test_names_sort_by_lag_and_several_features_each_get_a_window():
    lag = LagWindow(size=12)
    out = lag.transform_one({"b": 2.0, "a": 1.0})
    names = [n for n in out if n.startswith("a_")]
    assert names == sorted(names) == [f"a_lag{k:02d}" for k in range(12)]
    assert len(out) == 24


def test_transform_is_pure():
    lag = LagWindow(size=4)
    for v in range(10):
        lag.learn_one({"v": float(v)})
    first = lag.transform_one({"v": 100.0})
    again = lag.transform_one({"v": 100.0})
    assert first == again == {"v_lag0": 100.0, "v_lag1": 9.0, "v_lag2": 8.0, "v_lag3": 7.0}


def test_missing_values_are_carried_forward():
    lag = LagWindow(size=3)
    lag.learn_one({"v": 1.0, "w": 5.0})
    lag.learn_one({"v": 2.0})  # w missing: carried forward
    out = lag.transform_one({"v": None, "w": float("nan")})
    assert out == {
        "v_lag0": 2.0,
        "v_lag1": 2.0,
        "v_lag2": 1.0,
        "w_lag0": 5.0,
        "w_lag1": 5.0,
        "w_lag2": 5.0,
    }
    assert LagWindow(size=2).transform_one({"v": "text", "flag": True}) == {}


def test_bad_size_is_refused():
    with pytest.raises(ValueError, match="size"):
        LagWindow(size=0).transform_one({"v": 1.0})


class _BundledCreditCard:
    """River's anomaly checks stream ``datasets.CreditCard`` (a download): use Shuttle."""

    def take(self, n):
        return ((x, y == 1) for x, y in itertools.islice(datasets.Shuttle(), n))


def test_river_checks_pass(monkeypatch):
    for params in LagWindow._unit_test_params():
        checks.check_estimator(LagWindow(**params))
    monkeypatch.setattr(river.datasets, "CreditCard", _BundledCreditCard)
    for params in Lagged._unit_test_params():
        model = Lagged(**params)
        ran = []
        for check in checks.yield_checks(model):
            check(model.clone())
            ran.append(check.__name__)
        assert "check_roc_auc" in ran


def test_lagged_scores_and_learns_the_same_window():
    inner = Recorder()
    model = Lagged(inner, LagWindow(size=3, diff=True))
    values = [0.0, 1.0, 3.0, 2.0, 2.0]
    for v in values:
        model.score_one({"v": v})
        model.learn_one({"v": v})
    assert inner.scored == inner.learnt
    assert [list(w.values()) for w in inner.learnt] == windows(values, 3, diff=True)


def test_lagged_moves_on_when_the_detector_declines_to_learn():
    inner = Recorder()
    gated = RankCalibrator(inner, window=20, grace=5, gate=0.9, max_gated=None)
    model = Lagged(gated, LagWindow(size=2))
    values = [0.1 * (t % 5) for t in range(30)] + [50.0, 0.2]
    for v in values:
        model.score_one({"v": v})
        model.learn_one({"v": v})
    assert {"v_lag0": 50.0, "v_lag1": values[29]} not in inner.learnt  # gated
    assert inner.learnt[-1] == {"v_lag0": 0.2, "v_lag1": 50.0}  # the window moved on


def test_lagged_activation_detector_equals_a_hand_loop():
    rng = random.Random(3)
    values = [math.sin(t / 7) + 0.1 * rng.gauss(0, 1) for t in range(300)]
    model = Lagged(ActivationDetector(seed=0), LagWindow(size=8, diff=True))
    lag, det = LagWindow(size=8, diff=True), ActivationDetector(seed=0)
    got, expected = [], []
    for v in values:
        got.append(model.score_one({"v": v}))
        model.learn_one({"v": v})
        x = lag.transform_one({"v": v})
        expected.append(det.score_one(x))
        det.learn_one(x)
        lag.learn_one({"v": v})
    np.testing.assert_array_equal(got, expected)
