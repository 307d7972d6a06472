"""Rank calibration, gated learning, alert hold-off, and the calibrated presets."""

from __future__ import annotations

import itertools
import math
import pickle
import random

import numpy as np
import pytest
import river.datasets
from river import anomaly, base, checks, datasets

from streamal import ActivationDetector
from streamal.calibration import RankCalibrator, Strongest
from streamal.estimators.detector import sensor_detector, series_detector


class Absolute(base.AnomalyDetector):
    """Raw score = scale·|x["v"]|; remembers what it learnt."""

    def __init__(self, scale: float = 1.0):
        self.scale = scale
        self.learnt: list[float] = []

    def score_one(self, x):
        return self.scale * abs(x["v"])

    def learn_one(self, x):
        self.learnt.append(x["v"])


def stream(n=400, seed=0):
    rng = random.Random(seed)
    return [rng.gauss(0, 1) for _ in range(n)]


def run(model, values):
    scores = []
    for v in values:
        scores.append(model.score_one({"v": v}))
        model.learn_one({"v": v})
    return scores


def test_scores_do_not_depend_on_the_raw_scale():
    values = stream()
    small = run(RankCalibrator(Absolute(1e-3), window=100, grace=20), values)
    large = run(RankCalibrator(Absolute(1e3), window=100, grace=20), values)
    assert small == large
    assert all(0.0 <= s <= 1.0 for s in small)


def test_rank_against_the_reference_by_hand():
    model = RankCalibrator(Absolute(), window=4, grace=2, gate=None)
    assert run(model, [1.0, 2.0, 3.0, 4.0, 5.0, 0.0]) == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    # the reference now holds the last 4 learnt scores: 2, 3, 4, 5 (and 0 pushed out 1)
    assert model.n_reference == 4
    assert model.score_one({"v": 3.5}) == 0.5  # above 2 and 3 (ties count as not above)
    assert model.score_one({"v": 3.0}) == 0.25


def test_constant_stream_scores_zero():
    assert set(run(RankCalibrator(Absolute(), grace=5), [2.0] * 50)) == {0.0}


def test_scoring_changes_nothing():
    model = RankCalibrator(Absolute(), window=50, grace=5, smooth=3, holdoff=4)
    run(model, stream(80))
    before = pickle.dumps(model)
    model.score_one({"v": 100.0})
    model.score_one({"v": -3.0})
    assert pickle.dumps(model) == before


def test_gated_records_are_not_learnt_and_stay_out_of_the_reference():
    inner = Absolute()
    model = RankCalibrator(inner, window=100, grace=10, gate=0.99, max_gated=None)
    run(model, [0.1 * (i % 7) for i in range(50)])
    n_ref = model.n_reference
    scores = run(model, [9.0] * 30)
    assert scores == [1.0] * 30  # a long anomaly keeps its score: it is never learnt
    assert 9.0 not in inner.learnt and model.n_reference == n_ref


def test_max_gated_lets_a_lasting_change_through():
    inner = Absolute()
    model = RankCalibrator(inner, window=100, grace=10, gate=0.99, max_gated=5)
    run(model, [0.1 * (i % 7) for i in range(50)])
    run(model, [9.0] * 12)
    assert inner.learnt[-2:] == [9.0, 9.0]  # records 6 and 12 of the run


def test_learn_first_and_skip():
    inner = Absolute()
    model = RankCalibrator(inner, window=100, grace=5, gate=0.5, learn_first=20, skip=10)
    values = [float(i) for i in range(20)]  # rising: each is above all before
    run(model, values)
    assert inner.learnt == values  # warm-up: everything is learnt
    assert model.n_reference == 10  # the first 10 scores were skipped


def test_smoothing_averages_the_raw_scores():
    model = RankCalibrator(Absolute(), window=100, grace=3, smooth=2, gate=None)
    run(model, [1.0, 3.0, 5.0, 7.0])  # reference: 1, 2, 4, 6
    assert model.score_one({"v": 0.0}) == 0.5  # (7 + 0) / 2 = 3.5: above 1 and 2


def test_holdoff_caps_scores_and_learns_the_incident():
    inner = Absolute()
    model = RankCalibrator(inner, window=100, grace=10, gate=0.99, holdoff=3, cap=0.4)
    run(model, [0.1 * (i % 7) for i in range(50)])
    scores = run(model, [9.0] * 6)
    assert scores[:4] == [1.0, 0.4, 0.4, 0.4]
    # the held-off records were learnt, so the incident is no longer above everything
    assert scores[4] < 0.99
    assert inner.learnt.count(9.0) == 5  # all but the alert itself
    assert model.classify(scores[0]) and not model.classify(scores[1])


def test_supervised_detectors_are_wrapped_too():
    model = RankCalibrator(anomaly.GaussianScorer(grace_period=1), window=100, grace=20)
    rng = random.Random(0)
    for _ in range(200):
        model.learn_one(None, rng.gauss(0, 1))
    assert model.score_one(None, 0.0) < 0.2 and model.score_one(None, 5.0) == 1.0


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="window"):
        RankCalibrator(Absolute(), window=0).score_one({"v": 1.0})
    with pytest.raises(ValueError, match="holdoff"):
        RankCalibrator(Absolute(), holdoff=-1).score_one({"v": 1.0})


class _BundledCreditCard:
    """River's anomaly checks stream ``datasets.CreditCard`` (a download): use Shuttle."""

    def take(self, n):
        return ((x, y == 1) for x, y in itertools.islice(datasets.Shuttle(), n))


@pytest.mark.parametrize("estimator", [RankCalibrator, Strongest])
def test_river_checks_pass(monkeypatch, estimator):
    monkeypatch.setattr(river.datasets, "CreditCard", _BundledCreditCard)
    for params in estimator._unit_test_params():
        model = estimator(**params)
        ran = []
        for check in checks.yield_checks(model):
            check(model.clone())
            ran.append(check.__name__)
        assert "check_roc_auc" in ran


# ---- the detector's deviation term and the presets ---------------------------------
def test_deviation_sees_a_far_record_along_a_learnt_direction():
    rng = random.Random(2)
    plain, blended = ActivationDetector(seed=0), ActivationDetector(seed=0, deviation=1.0)
    for _ in range(1500):
        v = rng.gauss(0, 1)
        x = {"a": v, "b": v + 0.05 * rng.gauss(0, 1)}
        plain.learn_one(x)
        blended.learn_one(x)
    typical, far = {"a": 0.5, "b": 0.5}, {"a": 8.0, "b": 8.0}  # far out, same direction
    assert plain.score_one(far) < 0.5  # the residual alone barely notices
    assert blended.score_one(far) > 0.95 > 0.5 > blended.score_one(typical)


def test_deviation_out_of_range_is_refused():
    det = ActivationDetector(seed=0, deviation=2.0)
    det.learn_one({"a": 1.0})
    with pytest.raises(ValueError, match="deviation"):
        det.score_one({"a": 1.0})


def test_series_preset_flags_a_spike_and_is_reproducible():
    def scores():
        model = series_detector(probation=200, seed=0)
        rng = random.Random(5)
        out = []
        for t in range(1200):
            v = math.sin(t / 12) + 0.05 * rng.gauss(0, 1) + (4.0 if t == 1000 else 0.0)
            out.append(model.score_one({"value": v}))
            model.learn_one({"value": v})
        return out

    first = scores()
    assert first == scores()
    alerts = [t for t in range(400, 1200) if first[t] >= 0.9965]
    # two calibrated checks (lag window, seasonal), each about 1 in 300 by construction
    assert 1000 in alerts and len(alerts) <= 8
    assert max(first[1001:1040]) <= 0.5  # then held off


def test_sensor_preset_keeps_alarming_through_a_long_anomaly():
    rng = np.random.default_rng(0)
    model = sensor_detector(warm_up=200, seed=0)
    scores = []
    for t in range(600):
        shift = 6.0 if 350 <= t < 500 else 0.0
        x = {"flow": 32.0 + rng.normal() - shift, "current": 1.0 + 0.1 * rng.normal()}
        scores.append(model.score_one(x))
        model.learn_one(x)
    scores = np.array(scores)
    assert (scores[360:500] >= 0.99).mean() > 0.9  # gated: the anomaly is not learnt
    assert (scores[220:350] >= 0.99).mean() < 0.1


# ---- Strongest: calibrated detectors side by side ----------------------------------
class Feature(base.AnomalyDetector):
    """Raw score = |x[name]|; remembers what it learnt."""

    def __init__(self, name: str):
        self.name = name
        self.learnt: list[float] = []

    def score_one(self, x):
        return abs(x[self.name])

    def learn_one(self, x):
        self.learnt.append(x[self.name])


def pair(holdoff=0):
    a = RankCalibrator(Feature("a"), window=100, grace=10, gate=None)
    b = RankCalibrator(Feature("b"), window=100, grace=10, gate=None)
    return a, b, Strongest([a, b], holdoff=holdoff)


def feed(model, n=200, seed=0):
    rng = random.Random(seed)
    for _ in range(n):
        model.learn_one({"a": rng.gauss(0, 1), "b": rng.gauss(0, 1)})


def test_strongest_scores_the_highest_and_every_member_learns():
    a, b, both = pair()
    feed(both)
    assert len(a.detector.learnt) == len(b.detector.learnt) == 200
    for x in ({"a": 0.2, "b": 3.0}, {"a": 4.0, "b": 0.0}, {"a": 0.5, "b": 0.6}):
        assert both.score_one(x) == max(a.score_one(x), b.score_one(x))
    assert both.classify(0.995) and not both.classify(0.5)


def test_strongest_holds_the_combined_score_off_after_an_alert():
    a, b, both = pair(holdoff=5)
    feed(both, seed=3)
    for _ in range(5):  # quiet records: any hold-off from the feed runs out
        both.learn_one({"a": 0.0, "b": 0.0})
    x_a, x_b = {"a": 9.0, "b": 0.0}, {"a": 0.0, "b": 9.0}
    assert both.score_one(x_b) == 1.0
    both.learn_one(x_a)  # an alert seen by a
    for _ in range(5):
        assert both.score_one(x_b) == 0.5  # b's alert falls in the same incident
        both.learn_one({"a": 0.1, "b": 0.1})
    assert both.score_one(x_b) == 1.0


def test_strongest_bad_settings_are_refused():
    with pytest.raises(ValueError, match="at least one"):
        Strongest([]).score_one({"a": 1.0})
    with pytest.raises(ValueError, match="holdoff"):
        Strongest([RankCalibrator(Absolute())], holdoff=-1).learn_one({"v": 1.0})


def test_series_preset_sees_a_missing_daily_peak():
    rng = random.Random(7)
    model = series_detector(probation=400, seed=0)
    scores = []
    for t in range(1500):
        wave = max(math.sin(2 * math.pi * t / 96), 0.0)
        v = (0.0 if 1200 <= t < 1296 else wave) + 0.05 * rng.gauss(0, 1)
        scores.append(model.score_one({"value": v}))
        model.learn_one({"value": v})
    assert max(scores[1200:1296]) >= 0.9965
