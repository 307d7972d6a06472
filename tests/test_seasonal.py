"""Period estimation and the seasonal check of a univariate series."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from river import base

from streamal.calibration import RankCalibrator
from streamal.seasonal import Magnitude, SeasonalCheck, estimate_period


class Recorder(base.AnomalyDetector):
    """Stands in for the calibrator: scores 0, remembers the seasonal records it learnt."""

    def __init__(self):
        self.learnt: list[float] = []

    def score_one(self, x):
        return 0.0

    def learn_one(self, x):
        self.learnt.append(x["season"])

    def classify(self, score):
        return score >= 0.99


def daily(n, period=48, noise=0.05, seed=0):
    rng = random.Random(seed)
    return [math.sin(2 * math.pi * t / period) + rng.gauss(0, noise) for t in range(n)]


def run(model, values):
    scores = []
    for v in values:
        scores.append(model.score_one({"value": v}))
        model.learn_one({"value": v})
    return scores


# ---- estimate_period -------------------------------------------------------------
@pytest.mark.parametrize("period", [12, 48, 100])
def test_period_of_a_wave(period):
    for noise in (0.0, 0.05):
        found = estimate_period(daily(5 * period, period=period, noise=noise))
        assert found is not None and abs(found - period) <= 1  # a peak may be off by one


def test_the_period_wins_over_its_multiples():
    square = [1.0 if t % 20 < 10 else 0.0 for t in range(400)]
    assert estimate_period(square) == 20


@pytest.mark.parametrize(
    "values",
    [
        [random.Random(0).gauss(0, 1) for _ in range(500)],  # noise
        [3.0] * 100,  # constant
        [1.0, 2.0, 3.0],  # too short
        np.cumsum(np.random.default_rng(0).normal(size=300)),  # a random walk: slow decay
    ],
)
def test_no_period(values):
    assert estimate_period(values) is None


def test_weak_seasonality_needs_a_lower_bar():
    values = daily(480, period=48, noise=1.0)
    assert estimate_period(values) is None
    found = estimate_period(values, min_correlation=0.2)
    assert found is not None and abs(found - 48) <= 1


def test_magnitude():
    assert Magnitude().score_one({"a": -3.0, "b": 2.0}) == 3.0
    assert Magnitude().score_one({}) == 0.0


# ---- SeasonalCheck -----------------------------------------------------------------
def test_seasonal_records_match_a_reference_and_the_probation_is_replayed():
    values = daily(600, period=48)
    recorder = Recorder()
    check = SeasonalCheck(recorder, probation=200, smooth=0.1)
    for t, v in enumerate(values):
        check.score_one({"value": v})  # scoring in between changes nothing
        check.learn_one({"value": v})
        if t == 198:
            assert check.period is None and recorder.learnt == []
    assert check.period == 48
    v = np.array(values)
    diff = v - np.concatenate([np.full(48, v[0]), v[:-48]])
    m = 4  # int(0.1 * 48)
    expected = [diff[max(0, t - m + 1) : t + 1].mean() for t in range(len(v))]
    assert recorder.learnt == pytest.approx(expected)


def test_scores_zero_until_the_period_is_known_and_without_one():
    rng = random.Random(1)
    noise = [rng.gauss(0, 1) for _ in range(500)]
    check = SeasonalCheck(RankCalibrator(Magnitude(), window=200, grace=20), probation=200)
    assert set(run(check, noise)) == {0.0}
    assert check.period is None


def test_a_missing_peak_alerts_and_ordinary_days_rarely_do():
    values = daily(1500, period=48)
    for t in range(1200, 1248):
        values[t] = min(values[t], 0.0)  # the day's peak does not come
    check = SeasonalCheck(
        RankCalibrator(Magnitude(), window=300, grace=50, alert=0.99, gate=0.99), probation=300
    )
    scores = np.array(run(check, values))
    assert (scores[:300] == 0).all()
    assert (scores[300:1200] >= 0.99).mean() < 0.05
    assert (scores[1200:1248] >= 0.99).mean() > 0.3
    assert check.classify(1.0) and not check.classify(0.5)


def test_missing_values_repeat_the_last_one_and_two_features_are_refused():
    recorders = Recorder(), Recorder()
    checks = [SeasonalCheck(r, probation=96) for r in recorders]
    for check, last in zip(checks, [None, 5.0]):
        for v in [*daily(96, period=24), 5.0, last, 1.0]:
            check.learn_one({"value": v})
        assert check.period == 24
    assert recorders[0].learnt == recorders[1].learnt
    check = checks[0]
    with pytest.raises(ValueError, match="one feature"):
        check.learn_one({"a": 1.0, "b": 2.0})
    with pytest.raises(ValueError, match="probation"):
        SeasonalCheck(Recorder(), probation=2).learn_one({"value": 1.0})


def test_clone_starts_afresh():
    check = SeasonalCheck(RankCalibrator(Magnitude(), window=50, grace=5), probation=48)
    run(check, daily(200, period=12))
    assert check.period == 12
    assert check.clone().period is None
