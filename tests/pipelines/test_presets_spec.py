"""``[model] preset``: validation, the model it builds, the alert rules, per-file models."""

from __future__ import annotations

import json
import math
from pathlib import Path

from test_spec import FILE_SPEC
from test_spec import problems as spec_problems

from streamal.connectors import FileSource, MemorySink
from streamal.estimators.presets import SensorPreset, SeriesPreset
from streamal.pipelines import build_pipeline, model_factory, parse_spec
from streamal.pipelines.schema import MODEL_KEYS, model_keys


def problems(overrides: list[str], text: str = FILE_SPEC) -> dict[str, str]:
    return spec_problems(text, overrides)


def test_a_preset_builds_its_estimator_with_its_parameters() -> None:
    spec = parse_spec(FILE_SPEC, ["model.preset=series", "model.probation=300", "model.seed=1"])
    model = model_factory(spec)()
    assert isinstance(model, SeriesPreset) and (model.probation, model.seed) == (300, 1)
    spec = parse_spec(FILE_SPEC, ["model.preset=sensor", "model.warm_up=50"])
    model = model_factory(spec)()
    assert isinstance(model, SensorPreset) and (model.warm_up, model.seed) == (50, None)
    assert spec["model"]["warm_up"] == 50 and "lr" not in spec["model"]


def test_an_unknown_preset_is_named() -> None:
    assert problems(["model.preset=seris"]) == {
        "model.preset": "must be one of 'series', 'sensor', got 'seris'"}


def test_parameters_that_are_not_the_presets_are_refused() -> None:
    found = problems(["model.preset=series", "model.lr=0.1", "model.warm_up=10",
                      "model.probaton=10"])
    assert found["model.lr"] == ("not a parameter of the 'series' preset (it takes probation, "
                                 "seed; its detector's settings are fixed)")
    assert found["model.warm_up"].startswith("not a parameter of the 'series' preset")
    assert found["model.probaton"] == "unknown key; did you mean 'probation'?"
    assert problems(["model.preset=series", "model.probation=3"]) == {
        "model.probation": "must be at least 4, got 3"}


def test_presets_are_for_the_anomaly_task() -> None:
    found = problems(["model.preset=sensor", "model.task=classification",
                      "decode.label_field=y"])
    assert found == {"model.preset": "the presets are anomaly detectors: not with model.task = "
                                     "'classification'"}


def test_alerts_of_a_preset_are_its_own_level() -> None:
    spec = parse_spec(FILE_SPEC, ["model.preset=series", "alerts.policy=fixed"])
    assert spec["alerts"]["value"] == 0.9965
    spec = parse_spec(FILE_SPEC, ["model.preset=sensor", "alerts.policy=fixed"])
    assert spec["alerts"]["value"] == 0.99
    spec = parse_spec(FILE_SPEC, ["model.preset=sensor", "alerts.policy=fixed",
                                  "alerts.value=0.999"])
    assert spec["alerts"]["value"] == 0.999
    found = problems(["model.preset=series", "alerts.q=0.99", "alerts.learn_alerts=false"])
    assert found["alerts.policy"].startswith("the 'series' preset calibrates its scores itself: "
                                             "use policy = 'fixed'")
    assert "0.9965" in found["alerts.policy"]
    assert found["alerts.learn_alerts"].startswith("the 'series' preset gates its own learning")
    assert parse_spec(FILE_SPEC, ["model.preset=series"])["alerts"] is None  # scores only


def test_the_series_preset_watches_one_field_and_shared_mode_refuses_presets() -> None:
    found = problems(["model.preset=series", "decode.features=['a', 'b']"])
    assert found == {"decode.features": "the 'series' preset watches one numeric field: give "
                                        "exactly one, got 2"}
    kafka = FILE_SPEC.replace('type = "file"\npath = "in.jsonl"',
                              'type = "kafka"\nbootstrap_servers = "b:9092"\ntopics = "t"\n'
                              'group_id = "g"')
    found = problems(["model.preset=sensor", "scaleout.mode=shared"], kafka)
    assert list(found) == ["scaleout.mode"]


def test_the_schema_document_names_the_presets_and_their_parameters() -> None:
    doc = (Path(__file__).resolve().parents[2] / "pipelines" / "README.md").read_text()
    presets = doc.split("#### Presets")[1].split("### ")[0]
    for name in ("series", "sensor"):
        assert f"| `{name}` |" in presets
        for key in set(model_keys("anomaly", name)) - set(MODEL_KEYS):
            assert f"| `{key}` |" in presets, key


def write_csv(path: Path, offset: float) -> None:
    lines = ["timestamp,value"]
    for i in range(120):
        lines.append(f"{1_700_000_000 + 60 * i},{offset + math.sin(i / 4):.6f}")
    path.write_text("\n".join(lines) + "\n")


def test_a_file_field_gives_each_file_its_own_model(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", 0.0)
    write_csv(tmp_path / "b.csv", 100.0)
    spec = parse_spec(f"""
[source]
type = "file"
path = {json.dumps(str(tmp_path / "*.csv"))}
time_field = "timestamp"
file_field = "file"
[decode]
key_field = "file"
time_field = "timestamp"
[model]
preset = "series"
probation = 40
seed = 0
per_key = true
[alerts]
policy = "fixed"
[outputs]
directory = {json.dumps(str(tmp_path / "out"))}
""")
    sinks = {"scores": MemorySink(), "dead_letter": MemorySink()}
    pipe = build_pipeline(spec, sinks)
    summary = pipe.run()
    files = sorted(str(tmp_path / name) for name in ("a.csv", "b.csv"))
    assert sorted(pipe.models) == files and summary.scored == 240
    assert not sinks["dead_letter"].records
    assert {r["key"] for r in sinks["scores"].records} == set(files)
    assert all(isinstance(m, SeriesPreset) for m in pipe.models.values())


def test_a_file_field_on_jsonl_keeps_a_bad_line_raw(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"v": 1}\n{not json\n[1, 2]\n')
    with FileSource(path, file_field="file") as source:
        values = [r.value for r in source.poll(10, timeout=0)]
    assert values == [{"v": 1, "file": str(path)}, b"{not json", b"[1, 2]"]
