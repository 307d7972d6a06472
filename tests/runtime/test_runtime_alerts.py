"""Alert policies: thresholds, warm-up and exact JSON round trips."""

from __future__ import annotations

import json
import random

import pytest

from streamal.runtime import FixedThreshold, QuantileThreshold


def scores(n: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [rng.betavariate(2, 8) for _ in range(n)]


def test_fixed_threshold_is_inclusive():
    policy = FixedThreshold(0.5, learn_alerts=False)
    assert [policy.update(s) for s in (0.49, 0.5)] == [(False, 0.5), (True, 0.5)]
    assert not policy.learn_alerts


def test_quantile_threshold_warmup_and_rate():
    policy = QuantileThreshold(q=0.99, warmup=200, window=2000)
    decisions = [policy.update(s) for s in scores(6000)]
    assert not any(d.alert for d in decisions[:200])
    assert all(d.threshold is None for d in decisions[:200])
    rate = sum(d.alert for d in decisions[200:]) / 5800
    assert 0.003 < rate < 0.03


@pytest.mark.parametrize("cut", [1, 150, 999, 1000, 3500])
def test_quantile_state_round_trips_exactly_through_json(cut):
    values = scores(5000, seed=1)
    whole = QuantileThreshold(q=0.98, warmup=100, window=1000)
    expected = [whole.update(s) for s in values]
    first = QuantileThreshold(q=0.98, warmup=100, window=1000)
    got = [first.update(s) for s in values[:cut]]
    second = first.clone()
    second.load_state(json.loads(json.dumps(first.export_state())))
    got += [second.update(s) for s in values[cut:]]
    assert got == expected
    assert second.export_state() == whole.export_state()


def test_invalid_quantile_is_refused():
    with pytest.raises(ValueError, match="q must be"):
        QuantileThreshold(q=1.5).update(0.1)


@pytest.mark.parametrize("make", [lambda: QuantileThreshold(q=0.98, warmup=100, window=500),
                                  lambda: FixedThreshold(0.3, warmup=50)])
def test_update_many_equals_a_loop_of_update(make):
    values = scores(3000, seed=2)
    one, many = make(), make()
    expected = [one.update(s) for s in values]
    alerts, thresholds = [], []
    for start in range(0, len(values), 8):
        got = many.update_many(values[start:start + 8])
        alerts += got[0]
        thresholds += got[1]
    assert any(alerts)
    assert list(zip(alerts, thresholds, strict=True)) == [tuple(d) for d in expected]
    assert many.export_state() == one.export_state()
