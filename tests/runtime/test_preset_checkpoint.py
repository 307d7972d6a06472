"""A pipeline running a preset resumes exactly: scores, alerts and state as if never stopped."""

from __future__ import annotations

import functools
import json
import math
import random

import numpy as np
from conftest import SINKS

from streamal.connectors import MemorySink, MemorySource
from streamal.estimators.presets import SensorPreset, SeriesPreset
from streamal.runtime import FixedThreshold, Pipeline, RecordDecoder


def series_rows(n: int, keys: tuple[str, ...] = ("a",)) -> list[bytes]:
    """Interleaved series (one per key): a wave of period 20, noise, a spike each."""
    rng = random.Random(0)
    rows = []
    for t in range(n):
        key = keys[t % len(keys)]
        step = t // len(keys)
        v = math.sin(2 * math.pi * step / 20) + 0.05 * rng.gauss(0, 1)
        v += 4.0 if step == 150 + 20 * keys.index(key) else 0.0
        rows.append(json.dumps({"series": key, "value": v}).encode())
    return rows


SERIES = functools.partial(SeriesPreset, probation=100, seed=0)
SENSOR = functools.partial(SensorPreset, warm_up=120, seed=0)


def pipeline(values, tmp_path, model, per_key=None):
    sinks = {name: MemorySink() for name in SINKS}
    series = model.func is SeriesPreset
    pipe = Pipeline(MemorySource(values), sinks, model,
                    RecordDecoder(features=["value"] if series else None, exclude=["series"]),
                    alerts=FixedThreshold(model.func.alert, warmup=0), per_key=per_key,
                    checkpoint_dir=tmp_path, poll_records=32)
    return pipe, sinks


def run_in_pieces(values, tmp_path, model, pieces, per_key=None):
    outs = []
    for piece in pieces:
        pipe, sinks = pipeline(values, tmp_path, model, per_key)
        pipe.run(max_records=piece)
        outs.append(sinks)
    return pipe, outs


def assert_same_state(a, b):
    (arrays_a, meta_a), (arrays_b, meta_b) = a._export_state(), b._export_state()
    assert meta_a == meta_b
    assert arrays_a.keys() == arrays_b.keys()
    for name in arrays_a:
        np.testing.assert_array_equal(arrays_a[name], arrays_b[name], err_msg=name)


def test_a_series_preset_resumed_at_any_point_repeats_the_uninterrupted_run(tmp_path):
    values = series_rows(500)
    whole, whole_out = pipeline(values, tmp_path / "whole", SERIES)
    whole.run()
    pipe, outs = run_in_pieces(values, tmp_path / "pieces", SERIES, [37, 60, 1, 150, None])
    scores = [r for out in outs for r in out["scores"].records]
    assert scores == whole_out["scores"].records  # ids, scores and alerts, exactly
    alerts = [r for out in outs for r in out["alerts"].records]
    assert alerts == whole_out["alerts"].records and alerts
    assert_same_state(pipe.models[None], whole.models[None])
    assert whole.models[None]._detector.detectors[1].period == 20


def test_per_key_presets_resume_exactly(tmp_path):
    values = series_rows(900, keys=("a", "b", "c"))
    whole, whole_out = pipeline(values, tmp_path / "whole", SERIES, per_key="series")
    whole.run()
    pipe, outs = run_in_pieces(values, tmp_path / "pieces", SERIES, [250, 333, None],
                               per_key="series")
    def by_id(records):  # lanes emit in turn within a poll: the order depends on the polls
        return sorted(records, key=lambda r: int(r["id"].split("@")[1]))

    assert by_id(r for out in outs for r in out["scores"].records) == by_id(
        whole_out["scores"].records)
    assert sorted(pipe.models) == ["a", "b", "c"]
    for key in "abc":
        assert_same_state(pipe.models[key], whole.models[key])
    assert {r["model"] for r in whole_out["alerts"].records} == {"a", "b", "c"}


def test_a_sensor_preset_resumes_exactly(tmp_path):
    rng = random.Random(1)
    values = [json.dumps({"flow": 32 + rng.gauss(0, 1) - (5.0 if t >= 200 else 0.0),
                          "current": 1 + rng.gauss(0, 0.1)}).encode() for t in range(320)]
    whole, whole_out = pipeline(values, tmp_path / "whole", SENSOR)
    whole.run()
    pipe, outs = run_in_pieces(values, tmp_path / "pieces", SENSOR, [99, 101, None])
    assert [r for out in outs for r in out["scores"].records] == whole_out["scores"].records
    assert len(whole_out["alerts"].records) > 50  # the drop keeps alarming
    assert_same_state(pipe.models[None], whole.models[None])
