"""The preset estimators: their scores are the preset functions', and their state round trips
exactly (every piece: lag window, calibrators, seasonal check, the network)."""

from __future__ import annotations

import functools
import math
import random

import numpy as np
import pytest
from river import anomaly

from streamal.calibration import RankCalibrator, Strongest
from streamal.checkpoint import read_state, write_state
from streamal.estimators.detector import sensor_detector, series_detector
from streamal.estimators.presets import PRESETS, SensorPreset, SeriesPreset
from streamal.features import Lagged, LagWindow
from streamal.seasonal import Magnitude, SeasonalCheck


def series(n: int, seed: int = 0) -> list[dict[str, float]]:
    """A daily wave of 24 records with noise, two spikes and a missing peak."""
    rng = random.Random(seed)
    out = []
    for t in range(n):
        peak = 0.0 if 400 <= t < 424 else 1.0
        v = peak * math.sin(2 * math.pi * t / 24) + 0.05 * rng.gauss(0, 1)
        out.append({"value": v + (4.0 if t in (300, 520) else 0.0)})
    return out


def sensors(n: int, seed: int = 0) -> list[dict[str, float]]:
    """Two sensors; the flow drops and stays down from record 250."""
    rng = random.Random(seed)
    return [{"flow": 32 + rng.gauss(0, 1) - (5.0 if t >= 250 else 0.0),
             "current": 1 + rng.gauss(0, 0.1)} for t in range(n)]


def prequential(model, records) -> list[float]:
    scores = []
    for x in records:
        scores.append(model.score_one(x))
        model.learn_one(x)
    return scores


def through_a_file(model, tmp_path):
    """``model`` exported, written, read back and rebuilt (as a checkpoint does)."""
    arrays, meta = model._export_state()
    path = tmp_path / "state.parquet"
    write_state(path, arrays, meta)
    arrays, meta = read_state(path)
    return type(model).from_state(arrays, meta)


@pytest.mark.parametrize(("make", "records", "stops"), [
    (lambda: SeriesPreset(probation=120, seed=0), series(640),
     [0, 1, 7, 50, 119, 120, 121, 301, 302, 410, 521, 560]),
    (lambda: SensorPreset(warm_up=120, seed=0), sensors(400), [0, 3, 45, 119, 120, 251, 300]),
])
def test_a_run_stopped_and_restored_anywhere_scores_exactly_as_an_uninterrupted_one(
        make, records, stops, tmp_path):
    whole = make()
    expected = prequential(whole, records)
    model = make()
    got: list[float] = []
    for start, stop in zip(stops, [*stops[1:], len(records)], strict=True):
        model = through_a_file(model, tmp_path)
        got += prequential(model, records[start:stop])
    assert got == expected  # exact, not approximately
    assert [model.classify(s) for s in got] == [whole.classify(s) for s in expected]
    assert sum(whole.classify(s) for s in expected) >= 1  # the stream has alerts to repeat
    final, reference = model._export_state(), whole._export_state()
    assert final[1] == reference[1]
    assert final[0].keys() == reference[0].keys()
    for name, value in reference[0].items():
        np.testing.assert_array_equal(final[0][name], value, err_msg=name)


def test_the_presets_score_as_the_preset_functions():
    records = series(500)
    assert prequential(SeriesPreset(probation=100, seed=3), records) == prequential(
        series_detector(probation=100, seed=3), records)
    records = sensors(300)
    assert prequential(SensorPreset(warm_up=80, seed=1), records) == prequential(
        sensor_detector(warm_up=80, seed=1), records)


def test_the_state_holds_the_period_and_the_parameters():
    model = SeriesPreset(probation=120, seed=0)
    prequential(model, series(200))
    arrays, meta = model._export_state()
    assert meta["estimator"] == "SeriesPreset"
    assert meta["params"] == {"probation": 120, "seed": 0}
    assert meta["state"]["detectors"][1]["period"] == 24
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    with pytest.raises(ValueError, match="not a SensorPreset"):
        SensorPreset.from_state(arrays, meta)


def test_alert_levels_are_the_presets():
    assert PRESETS == {"series": SeriesPreset, "sensor": SensorPreset}
    assert (SeriesPreset.alert, SensorPreset.alert) == (0.9965, 0.99)
    model = SeriesPreset()
    assert model.classify(0.9965) and not model.classify(0.9964)
    assert SensorPreset().classify(0.99) and not SensorPreset().classify(0.98)


def test_a_piece_round_trips_before_anything_is_learnt():
    model = Strongest([Lagged(RankCalibrator(Magnitude(), window=5, grace=1), LagWindow(2)),
                       SeasonalCheck(RankCalibrator(Magnitude(), window=5, grace=1),
                                     probation=10)], holdoff=2)
    arrays, meta = model._export_state()
    twin = Strongest([Lagged(RankCalibrator(Magnitude(), window=5, grace=1), LagWindow(2)),
                      SeasonalCheck(RankCalibrator(Magnitude(), window=5, grace=1),
                                    probation=10)], holdoff=2)
    twin._load_state(arrays, meta)
    records = [{"v": float(v)} for v in [1, 2, 3, 2, 1, 9, 1, 2, 3, 2, 1, 2, 3, 2, 1]]
    assert prequential(twin, records) == prequential(model, records)


def test_a_river_detector_inside_cannot_be_checkpointed():
    model = RankCalibrator(anomaly.HalfSpaceTrees(seed=0))
    with pytest.raises(TypeError, match="HalfSpaceTrees cannot be checkpointed"):
        model._export_state()


def test_a_state_of_another_shape_is_refused():
    two = Strongest([RankCalibrator(Magnitude()), RankCalibrator(Magnitude())])
    one = Strongest([RankCalibrator(Magnitude())])
    with pytest.raises(ValueError, match="state of 2 detectors for a Strongest of 1"):
        one._load_state(*two._export_state())


def test_river_checks(monkeypatch):
    """River's suite: all of it for the sensor preset; the univariate series preset takes the
    checks that do not stream river's multivariate data through it."""
    import river.datasets
    from river import checks
    from test_river_checks import _BundledCreditCard

    monkeypatch.setattr(river.datasets, "CreditCard", _BundledCreditCard)
    ran = {}
    for cls in (SensorPreset, SeriesPreset):
        for params in cls._unit_test_params():
            model = cls(**params)
            for check in checks.yield_checks(model):
                streams = isinstance(check, functools.partial)  # bound to a dataset
                if cls is SensorPreset or not streams:
                    check(model.clone())
                    name = (check.func if streams else check).__name__
                    ran.setdefault(cls, []).append(name)
    assert {"check_learn_one", "check_roc_auc", "check_shuffle_features_no_impact"} <= set(
        ran[SensorPreset])
    assert "check_repr_roundtrips_clone" in ran[SeriesPreset]
    assert "check_learn_one" not in ran[SeriesPreset]
