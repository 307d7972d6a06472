"""The classifier's own mechanisms: imprinting, the prior correction, safe unlearning."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from river import datasets

from streamal import ActivationClassifier
from streamal.estimators.class_prior import ClassPrior


def label_rows(model: ActivationClassifier) -> torch.Tensor:
    weight = model._network.bottom.weight
    return weight[weight.shape[0] - model._label_units() :]


# ---- imprinting ------------------------------------------------------------------------------
def test_a_new_class_starts_from_its_first_records_response():
    model = ActivationClassifier(seed=0, hidden=(8,), batch_size=100, label_repeat=2)
    model.learn_one({"a": 1.0, "b": 2.0})
    model.learn_one({"a": 3.0, "b": -1.0}, "x")  # queued, not learnt: only registered
    x, _ = model._encode(model._query_values([{"a": 3.0, "b": -1.0}]))
    response = (x @ model._network.bottom.weight[: x.shape[1]])[0]
    for row in label_rows(model):
        assert float(row.norm()) == pytest.approx(0.8 / 2**0.5, rel=1e-5)
        assert float(torch.cosine_similarity(row, response, dim=0)) == pytest.approx(1.0, abs=1e-5)


def test_without_imprinting_a_new_class_keeps_its_small_random_start():
    model = ActivationClassifier(seed=0, hidden=(8,), batch_size=100, imprint=0.0)
    model.learn_one({"a": 3.0, "b": -1.0}, "x")
    assert float(label_rows(model).norm()) < 0.1


# ---- the nearest labelled record -------------------------------------------------------------
def test_with_full_weight_the_nearest_labelled_record_decides():
    model = ActivationClassifier(seed=0, hidden=(8,), batch_size=4, nearest=1.0)
    for x, y in [({"a": 1.0, "b": 0.0}, "east"), ({"a": 0.0, "b": 1.0}, "north"),
                 ({"a": -1.0, "b": 0.0}, "west"), ({"a": 0.0, "b": -1.0}, None)]:
        model.learn_one(x, y)
    assert model.predict_proba_one({"a": 0.1, "b": 0.9}) == {"east": 0.0, "north": 1.0, "west": 0.0}
    assert model.predict_one({"a": -0.9, "b": -0.2}) == "west"


def test_the_nearest_weight_must_lie_between_0_and_1():
    model = ActivationClassifier(nearest=1.5)
    with pytest.raises(ValueError, match="nearest"):
        model.learn_one({"a": 1.0}, "x")


# ---- the prior correction --------------------------------------------------------------------
def test_the_prior_damps_a_class_predicted_more_often_than_labelled():
    prior = ClassPrior(decay=0.5)
    prior.add_classes(3)
    np.testing.assert_allclose(prior.predicted, [1 / 3, 1 / 3, 1 / 3])
    prior.count([0, 1, 2, 0, 1, 2])
    prior.observe(np.array([[0.8, 0.1, 0.1]] * 4))
    ratio = prior.log_ratio()
    assert ratio[0] < 0 < ratio[1] and ratio[1] == pytest.approx(ratio[2])
    prior.add_classes(1)  # a late class: no label yet, predicted at the uniform rate
    assert prior.predicted[3] == pytest.approx(0.25) and prior.labelled[3] == 0


def test_the_prior_needs_a_decay_below_one():
    with pytest.raises(ValueError, match="decay"):
        ClassPrior(decay=1.0)


def test_predictions_leave_the_classifier_unchanged():
    model = ActivationClassifier(seed=0, hidden=(8,))
    for i, (x, y) in enumerate(datasets.ImageSegments().take(60)):
        model.learn_one(x, y if i % 3 == 0 else None)
    before = pickle.dumps(model)
    X = pd.DataFrame([x for x, _ in datasets.ImageSegments().take(5)])
    model.predict_many(X)
    model.predict_proba_one(X.iloc[0].to_dict())
    assert pickle.dumps(model) == before


def test_a_state_saved_without_the_prior_loads_with_a_fresh_one():
    model = ActivationClassifier(seed=0, hidden=(8,))
    for i, (x, y) in enumerate(datasets.ImageSegments().take(40)):
        model.learn_one(x, y if i % 2 == 0 else None)
    arrays, meta = model._export_state()
    old = {k: v for k, v in arrays.items() if not k.startswith("prior.")}
    restored = ActivationClassifier.from_state(old, meta)
    assert len(restored._prior.labelled) == len(model.classes)
    x = next(iter(datasets.ImageSegments()))[0]
    assert restored.predict_one(x) in model.classes


# ---- feedback: unlearning cannot blow the weights up -----------------------------------------
def stream(kind: str, n: int = 400):
    rng = np.random.default_rng(0)
    for i in range(n):
        if kind == "constant":
            yield {"a": 1.0, "b": 2.0}, "c" if i % 2 else "d"
        elif kind == "alternating":
            yield {"a": float(i % 2), "b": float(1 - i % 2)}, "even" if i % 2 == 0 else "odd"
        else:  # badly scaled: one feature in millions, one in millionths
            t = rng.normal()
            yield {"a": 1e6 * t, "b": 1e-6 * rng.normal()}, "up" if t > 0 else "down"


@pytest.mark.parametrize("kind", ["constant", "alternating", "badly scaled", "ImageSegments"])
@pytest.mark.parametrize("hidden", [(32,), (16, 8)])
def test_feedback_keeps_the_weights_bounded(kind, hidden):
    # hidden=(32,) on ImageSegments diverged to NaN once classes were imprinted, before the cap
    model = ActivationClassifier(seed=1, hidden=hidden, batch_size=7, feedback=True, unlearn=0.9,
                                 label_rate=2.0, replay=0 if kind == "ImageSegments" else 32)
    data = datasets.ImageSegments().take(300) if kind == "ImageSegments" else stream(kind)
    for i, (x, y) in enumerate(data):
        model.learn_one(x, y if i % 3 == 0 else None)
    for layer in model._network.stack:
        assert torch.isfinite(layer.weight).all()
        assert float(torch.linalg.vector_norm(layer.weight, dim=1).max()) < 1.5
