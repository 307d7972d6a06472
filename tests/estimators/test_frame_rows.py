"""One-row frames: ``learn_many``/``score_many`` take the one-record way
(``_frame_row``) and must give exactly what the general frame path and the
one-record methods give, errors included."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

import streamal.network as network_module
from streamal import ActivationDetector

SIZES = (1, 1, 3, 1, 2)  # one-row frames between frames of several rows


def records(n, seed=0):
    """Two sensors from the start, a third from record 15 on; some values missing."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        t = rng.gauss(0, 1)
        row = {"temp": 1500.0 + 40.0 * t, "flow": 0.002 - 0.0005 * t + rng.gauss(0, 1e-5)}
        if i >= 15:
            row["rpm"] = 3000.0 + 5 * rng.gauss(0, 1)
        if rng.random() < 0.1:
            row["temp"] = np.nan
        rows.append(row)
    return rows


def frames(rows):
    """Float64 frames of the sizes in SIZES, cut from ``rows`` (NaN = missing)."""
    out, start, k = [], 0, 0
    while start < len(rows):
        size = SIZES[k % len(SIZES)]
        out.append(pd.DataFrame(rows[start : start + size], dtype=np.float64))
        start, k = start + size, k + 1
    return out


def present(row):
    return {k: v for k, v in row.items() if v == v}


def assert_same_state(a, b):
    arrays_a, meta_a = a._export_state()
    arrays_b, meta_b = b._export_state()
    assert meta_a == meta_b
    assert arrays_a.keys() == arrays_b.keys()
    for key, value in arrays_a.items():
        np.testing.assert_array_equal(value, arrays_b[key], err_msg=key)


def prequential(model, stream):
    scores = []
    for frame in stream:
        scores.extend(model.score_many(frame))
        model.learn_many(frame)
    return np.array(scores)


@pytest.mark.parametrize("kernels", [True, False])  # False: the torch path (as on CUDA)
@pytest.mark.parametrize("batch_size", [1, 4])
def test_one_row_frames_match_the_general_path_and_the_one_record_methods(
    batch_size, kernels, monkeypatch
):
    if not kernels:
        monkeypatch.setattr(network_module, "FAST_PATH_MAX_WEIGHTS", -1)
    rows = records(120)
    stream = frames(rows)
    fast = ActivationDetector(hidden=(6, 5), batch_size=batch_size, seed=2)
    fast_scores = prequential(fast, stream)
    assert fast._frame_row(stream[-2]) is not None  # the last one-row frame went the fast way
    one = ActivationDetector(hidden=(6, 5), batch_size=batch_size, seed=2)
    one_scores = []
    for frame in stream:  # each frame's rows scored, then learnt
        chunk = [present(row) for row in frame.to_dict("records")]
        one_scores.extend(one.score_one(row) for row in chunk)
        for row in chunk:
            one.learn_one(row)
    monkeypatch.setattr(ActivationDetector, "_frame_row", lambda self, X: None)
    general = ActivationDetector(hidden=(6, 5), batch_size=batch_size, seed=2)
    general_scores = prequential(general, stream)
    np.testing.assert_array_equal(fast_scores, general_scores)
    np.testing.assert_array_equal(fast_scores, one_scores)
    assert_same_state(fast, general)
    assert_same_state(fast, one)


def test_frame_row_takes_only_one_float_row_of_the_schema():
    model = ActivationDetector(hidden=(4,), seed=0)
    model.learn_many(pd.DataFrame({"a": [1.0, 2.0, 4.0], "b": [0.5, 0.1, 0.3]}))
    plain = pd.DataFrame({"a": [3.0], "b": [0.2]})
    np.testing.assert_array_equal(model._frame_row(plain), [3.0, 0.2])
    mixed = pd.DataFrame({"a": [3], "b": [0.2]})  # two blocks, read together as float64
    np.testing.assert_array_equal(model._frame_row(mixed), [3.0, 0.2])
    reordered = plain[["b", "a"]]
    np.testing.assert_array_equal(model._frame_row(reordered), [3.0, 0.2])  # schema order
    general = {
        "ints": pd.DataFrame({"a": [3], "b": [0]}),
        "bools": pd.DataFrame({"a": [3.0], "b": [False]}),
        "objects": pd.DataFrame({"a": [3.0], "b": [0.2]}, dtype=object),
        "fewer": plain[["a"]],
        "more": plain.assign(c=1.0),
        "two rows": pd.concat([plain, plain]),
    }
    for name, frame in general.items():
        assert model._frame_row(frame) is None, name
    for frame in (plain, mixed, reordered, *general.values()):  # every way scores alike
        expected = [model.score_one(present(r)) for r in frame.astype(float).to_dict("records")]
        np.testing.assert_array_equal(model.score_many(frame), expected)


@pytest.mark.parametrize("columns", [["flow", "temp"], ["temp", "flow"]])  # schema order, other
def test_frame_row_is_a_copy_of_the_frame(columns):
    values = np.array([[0.002, 1500.0] if columns[0] == "flow" else [1500.0, 0.002]])
    frame = pd.DataFrame(values, columns=columns, copy=False)
    model, twin = (ActivationDetector(hidden=(4,), batch_size=4, seed=0) for _ in range(2))
    for m in (model, twin):
        m.learn_many(pd.DataFrame({"temp": [1490.0, 1510.0], "flow": [0.0021, 0.0019]}))
    model.learn_many(frame)  # pending until the batch is full
    twin.learn_many(frame.copy())
    values[0] = 99.0  # the caller reuses its buffer
    assert frame.iloc[0, 0] == 99.0
    assert_same_state(model, twin)


@pytest.mark.parametrize(
    "value, message",
    [(np.inf, "'flow' is not finite"), (-np.inf, "'flow' is not finite"),
     (1e200, "'flow' is too large")],
)
def test_bad_values_in_one_row_frames_raise_and_change_nothing(value, message):
    model = ActivationDetector(hidden=(4,), batch_size=4, seed=0)
    model.learn_many(pd.DataFrame({"temp": [1490.0, 1510.0], "flow": [0.0021, 0.0019]}))
    before = model._export_state()
    bad = pd.DataFrame({"temp": [1500.0], "flow": [value]})
    with pytest.raises(ValueError, match=message):
        model.score_many(bad)
    with pytest.raises(ValueError, match=message):
        model.learn_many(bad)
    after = model._export_state()
    assert before[1] == after[1]
    for key, array in before[0].items():
        np.testing.assert_array_equal(array, after[0][key], err_msg=key)
