"""Our own checks on the two estimators, beyond river's suite."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pandas as pd
import pytest
import torch
from river import datasets

from streamal import ActivationClassifier, ActivationDetector
from streamal.checkpoint import read_state
from streamal.encoding import FeatureLimitError


def sensor_stream(n, seed=0, missing=0.0):
    """Two correlated sensors on very different scales, plus a third one."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        t = rng.gauss(0, 1)
        row = {
            "temp": 1500.0 + 40.0 * t + rng.gauss(0, 2),
            "flow": 0.002 - 0.0005 * t + rng.gauss(0, 0.00002),
            "rpm": 3000.0 + 5 * rng.gauss(0, 1),
        }
        if rng.random() < missing:
            del row[rng.choice(list(row))]
        rows.append(row)
    return rows


def weights(model):
    return [layer.weight.detach().cpu().clone() for layer in model._network.layers]


def assert_same_model(a, b):
    for wa, wb in zip(weights(a), weights(b), strict=True):
        assert torch.equal(wa, wb)
    assert a._schema.names == b._schema.names


# ---- learn_many == loop of learn_one ------------------------------------------------------
@pytest.mark.parametrize("batch_size", [1, 5, 32])
def test_detector_learn_many_equals_learn_one(batch_size):
    rows = sensor_stream(203, missing=0.2)
    one = ActivationDetector(batch_size=batch_size, seed=3)
    many = ActivationDetector(batch_size=batch_size, seed=3)
    for row in rows:
        one.learn_one(row)
    for start in range(0, len(rows), 37):  # chunks that straddle micro-batch boundaries
        many.learn_many(pd.DataFrame(rows[start : start + 37]))
    assert_same_model(one, many)
    frame = pd.DataFrame(rows[:50])
    np.testing.assert_array_equal(many.score_many(frame), [one.score_one(r) for r in rows[:50]])


def test_classifier_learn_many_equals_learn_one_with_late_class_and_missing_labels():
    data = list(datasets.ImageSegments().take(300))
    labels = [
        y if i % 3 == 0 and (y != "path" or i > 200) else None for i, (_, y) in enumerate(data)
    ]
    one = ActivationClassifier(batch_size=7, seed=1, feedback=True, hidden=(32,))
    many = ActivationClassifier(batch_size=7, seed=1, feedback=True, hidden=(32,))
    for (x, _), y in zip(data, labels):
        one.learn_one(x, y)
    X = pd.DataFrame([x for x, _ in data])
    for start in range(0, len(X), 50):
        many.learn_many(X.iloc[start : start + 50], pd.Series(labels[start : start + 50]))
    assert_same_model(one, many)
    assert one.classes == many.classes and "path" in one.classes
    assert one.classes[-1] == "path"


# ---- scoring is pure, persistence is exact -----------------------------------------------
def test_scoring_never_changes_state():
    model = ActivationDetector(seed=0)
    for row in sensor_stream(100):
        model.learn_one(row)
    before = pickle.dumps(model)
    model.score_one({"temp": 1e9, "flow": -3.0, "new_sensor": 1.0})
    model.score_many(pd.DataFrame(sensor_stream(10, seed=5)))
    assert pickle.dumps(model) == before


@pytest.mark.parametrize("estimator", [ActivationDetector, ActivationClassifier])
def test_parquet_round_trip_gives_identical_scores_and_learning(estimator, tmp_path):
    data = list(datasets.ImageSegments().take(101))  # 101: leaves records pending
    model = estimator(seed=0, batch_size=8)
    supervised = estimator is ActivationClassifier
    for i, (x, y) in enumerate(data):
        model.learn_one(x, y if i % 2 else None) if supervised else model.learn_one(x)
    path = tmp_path / "model.parquet"
    model.save(path)
    restored = estimator.load(path)
    X = pd.DataFrame([x for x, _ in data[:20]])
    if estimator is ActivationDetector:
        np.testing.assert_array_equal(model.score_many(X), restored.score_many(X))
    else:
        pd.testing.assert_frame_equal(model.predict_proba_many(X), restored.predict_proba_many(X))
    # the pending micro-batch travelled too: the next batch lands identically
    more = list(datasets.ImageSegments())[101:140]
    for a in (model, restored):
        for x, y in more:
            a.learn_one(x, y) if supervised else a.learn_one(x)
    assert_same_model(model, restored)
    arrays, meta = read_state(path)
    assert meta["estimator"] == estimator.__name__
    assert all(isinstance(v, np.ndarray) for v in arrays.values())


def test_load_rejects_the_other_estimator(tmp_path):
    model = ActivationDetector(seed=0)
    model.learn_one({"a": 1.0})
    model.save(tmp_path / "m.parquet")
    with pytest.raises(ValueError, match="ActivationDetector"):
        ActivationClassifier.load(tmp_path / "m.parquet")


def test_pickle_round_trip():
    model = ActivationDetector(seed=0)
    for row in sensor_stream(50):
        model.learn_one(row)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.score_one({"temp": 1500, "flow": 0.002}) == model.score_one(
        {"temp": 1500, "flow": 0.002}
    )


# ---- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "record, message",
    [
        ({"temp": float("nan")}, "'temp' is not finite"),
        ({"temp": float("inf")}, "'temp' is not finite"),
        ({"temp": "hot"}, "'temp' is not a number"),
    ],
)
def test_bad_values_raise_naming_the_feature_and_change_nothing(record, message):
    model = ActivationDetector(seed=0)
    for row in sensor_stream(20):
        model.learn_one(row)
    before = pickle.dumps(model)
    with pytest.raises(ValueError, match=message):
        model.learn_one(record)
    with pytest.raises(ValueError, match=message):
        model.score_one(record)
    assert pickle.dumps(model) == before


def test_frame_with_infinity_or_strings_names_the_column():
    model = ActivationDetector(seed=0)
    with pytest.raises(ValueError, match="'b' is not finite"):
        model.learn_many(pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, np.inf]}))
    with pytest.raises(ValueError, match="'c' is not a number"):
        model.learn_many(pd.DataFrame({"c": ["1.0", "x"]}))


def test_feature_cap_rejects_record_without_learning_it():
    model = ActivationDetector(seed=0, max_features=3)
    model.learn_one({"a": 1.0, "b": 2.0})
    with pytest.raises(FeatureLimitError):
        model.learn_one({"c": 1.0, "d": 2.0})
    assert model._schema.names == ["a", "b"]


def test_bad_labels_raise():
    model = ActivationClassifier(seed=0)
    with pytest.raises(ValueError, match="label must be"):
        model.learn_one({"a": 1.0}, 2.5)
    with pytest.raises(ValueError, match="limit"):
        model.learn_one({"a": 1.0}, "x" * 10_000)


# ---- defaults that work out of the box -------------------------------------------------------
def test_default_detector_separates_off_pattern_sensor_records():
    model = ActivationDetector(seed=0)
    for row in sensor_stream(3000):
        model.learn_one(row)
    normal = [model.score_one(r) for r in sensor_stream(200, seed=9)]
    # off pattern: each sensor within its usual range, but the correlation broken
    rng = random.Random(4)
    odd = [
        model.score_one(
            {"temp": 1500 + 60 * s, "flow": 0.002 + 0.0008 * s, "rpm": 3000 + 5 * rng.gauss(0, 1)}
        )
        for s in (rng.choice([-1, 1]) for _ in range(200))
    ]
    assert np.mean(odd) > 3 * np.mean(normal)
    assert np.quantile(odd, 0.1) > np.quantile(normal, 0.9)


def test_default_classifier_learns_from_ten_percent_of_labels():
    model = ActivationClassifier(seed=0)
    hits = total = 0
    for i, (x, y) in enumerate(datasets.ImageSegments()):
        if i >= 1000:
            hits += model.predict_one(x) == y
            total += 1
        model.learn_one(x, y if i % 10 == 0 else None)
    assert hits / total > 0.45  # 7 classes: chance is about 0.14


def test_classes_seen_late_are_predicted():
    model = ActivationClassifier(seed=0, hidden=(16,))
    for i in range(300):
        model.learn_one({"a": i % 7, "b": 1.0}, "early")
    for i in range(300):
        model.learn_one({"a": 100.0 + i % 7, "b": -1.0}, "late")
    model.flush()
    assert set(model.predict_proba_one({"a": 103.0, "b": -1.0})) == {"early", "late"}
    assert model.predict_one({"a": 103.0, "b": -1.0}) == "late"


def test_complete_one_fills_a_dropped_sensor():
    model = ActivationDetector(seed=0, hidden=(2,))
    for row in sensor_stream(4000):
        model.learn_one(row)
    filled = model.complete_one({"temp": 1580.0, "rpm": 3000.0})  # t = +2
    assert abs(filled["flow"] - 0.001) < 0.0003


# ---- devices ---------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_give_the_same_scores():
    rows = sensor_stream(500)
    cpu, cuda = ActivationDetector(seed=0, device="cpu"), ActivationDetector(seed=0, device="cuda")
    for row in rows:
        cpu.learn_one(row)
        cuda.learn_one(row)
    frame = pd.DataFrame(sensor_stream(100, seed=2))
    np.testing.assert_allclose(cpu.score_many(frame), cuda.score_many(frame), atol=1e-4)


def test_unavailable_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = ActivationDetector(device="cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        model.learn_one({"a": 1.0})


def test_learn_many_with_a_column_missing_everywhere_so_far():
    model = ActivationDetector(seed=0, batch_size=2)
    model.learn_many(pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [np.nan, np.nan, 5.0]}))
    assert model._schema.names == ["a", "b"]
    one = ActivationDetector(seed=0, batch_size=2)
    for row in ({"a": 1.0}, {"a": 2.0}, {"a": 3.0, "b": 5.0}):
        one.learn_one(row)
    assert_same_model(one, model)


@pytest.mark.parametrize("value", [1e300, -1e200, 10**400])
def test_huge_values_are_rejected_before_they_spoil_the_statistics(value):
    model = ActivationDetector(seed=0)
    with pytest.raises(ValueError, match="'temp' is too large"):
        model.learn_one({"temp": value})
    with pytest.raises(ValueError, match="'temp' is too large"):
        huge = value if isinstance(value, float) else 1e300
        model.learn_many(pd.DataFrame({"temp": [1.0, huge]}))


@pytest.mark.parametrize("cls", [ActivationDetector, ActivationClassifier])
@pytest.mark.parametrize("params, message", [
    ({"lr": 0.0}, "lr must be positive, got 0.0"),
    ({"lr": -0.5}, "lr must be positive, got -0.5"),
    ({"bias": 0.0}, "bias must be positive, got 0.0"),
    ({"batch_size": 0}, "batch_size must be at least 1, got 0"),
])
def test_bad_settings_are_named_at_the_first_record(cls, params, message):
    model = cls(**params)
    with pytest.raises(ValueError, match=message):
        model.learn_one({"a": 1.0})
