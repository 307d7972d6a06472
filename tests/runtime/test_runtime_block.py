"""The array path of the runtime: blocks of rows, and judging/learning them like the public API."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
from conftest import classifier, detector, max_weight_diff

from streamal import ActivationClassifier
from streamal.connectors import Record
from streamal.runtime import RecordDecoder
from streamal.runtime.block import Block, judge, learn, room, schema_names
from streamal.runtime.decode import Decoded


def rows_of(*features: dict[str, float]) -> list[tuple[None, Decoded]]:
    return [(None, Decoded(dict(f))) for f in features]


def test_a_fixed_layout_puts_known_columns_first_and_new_ones_sorted():
    block = Block(rows_of({"z": 1.0, "b": 2.0, "a": 3.0}, {"z": 4.0, "b": 5.0, "a": 6.0}), ["b"])
    assert block.columns == ["b", "a", "z"]
    np.testing.assert_array_equal(block.values, [[2.0, 3.0, 1.0], [5.0, 6.0, 4.0]])
    assert block.leads_with(["b", "a"]) and not block.leads_with(["a"])
    np.testing.assert_array_equal(block.aligned(["z", "q"], 1, 2), [[4.0, np.nan]])
    assert block.names == {"a", "b", "z"}  # every row has these features


def test_mixed_layouts_leave_missing_values_nan():
    block = Block(rows_of({"a": 1.0}, {"c": 2.0, "b": 3.0}, {"a": 4.0, "c": 5.0}), [])
    assert block.columns == ["a", "b", "c"]
    np.testing.assert_array_equal(block.values, [[1.0, np.nan, np.nan], [np.nan, 3.0, 2.0],
                                                 [4.0, np.nan, 5.0]])
    assert block.names is None


def trained(model, n: int = 60, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(n):
        x = {"a": rng.gauss(0, 1), "b": rng.gauss(3, 1)}
        if isinstance(model, ActivationClassifier):
            model.learn_one(x, "hi" if x["a"] > 0 else "lo")
        else:
            model.learn_one(x)
    return model


def test_judge_equals_the_public_many_methods():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(9, 2))
    frame = pd.DataFrame(values, columns=["a", "b"])
    model = trained(detector())
    names = schema_names(model)
    np.testing.assert_array_equal(judge(model, "anomaly", names, values), model.score_many(frame))
    model = trained(classifier())
    np.testing.assert_array_equal(judge(model, "classification", names, values),
                                  model.predict_proba_many(frame).to_numpy())


@pytest.mark.parametrize("make, task", [(detector, "anomaly"), (classifier, "classification")])
def test_learn_equals_learn_many(make, task):
    rng = np.random.default_rng(2)
    values = rng.normal(size=(21, 3))
    values[3, 2] = np.nan  # a feature missing from a row
    labels = [None if i % 3 else ("x" if i % 2 else "y") for i in range(21)]
    ours, theirs = trained(make()), trained(make())
    learn(ours, task, ["a", "b", "c"], values, labels)
    frame = pd.DataFrame(values, columns=["a", "b", "c"])
    if task == "anomaly":
        theirs.learn_many(frame)
    else:
        theirs.learn_many(frame, pd.Series(labels, dtype=object))
    assert max_weight_diff(ours, theirs) == 0.0
    assert room(ours) == room(theirs) < ours.batch_size + 1


def test_a_subclass_that_overrides_score_many_is_called_through_it():
    class Halved(type(detector())):  # type: ignore[misc]
        def score_many(self, X):
            return super().score_many(X) / 2

    model = trained(Halved(batch_size=8, seed=0))
    values = np.array([[0.5, 3.0]])
    frame = pd.DataFrame(values, columns=["a", "b"])
    assert judge(model, "anomaly", schema_names(model), values)[0] == model.score_many(frame)[0]
    assert judge(model, "anomaly", schema_names(model), values)[0] < model.score_one(
        {"a": 0.5, "b": 3.0})


def test_pipeline_with_changing_layouts_equals_a_learn_one_loop(build):
    """Features that come and go, in changing order, judged and learnt as one by one."""
    rng = random.Random(3)
    rows = []
    for i in range(240):
        x = {"a": rng.gauss(0, 1), "b": rng.gauss(5, 1)}
        if i >= 50:
            x["c"] = rng.gauss(-1, 1)
        if i % 7 == 0:
            x = dict(reversed(list(x.items())))
        if i % 11 == 0:
            del x["a"]
        rows.append(json.dumps(x).encode())
    for poll in (500, 13):
        pipe, out = build(rows, sinks=("scores",), poll_records=poll)
        pipe.run()
        model, expected = detector(), []
        decoder = RecordDecoder()
        for i, value in enumerate(rows):
            x = decoder.decode(Record(value, ("m", i))).features
            expected.append(model.score_one(x))
            model.learn_one(x)
        np.testing.assert_allclose([r["score"] for r in out["scores"].records], expected,
                                   atol=1e-6)
        assert max_weight_diff(pipe.models[None], model) <= 1e-6
        assert pipe.models[None]._schema.names == model._schema.names == ["b", "a", "c"]
