"""Pipeline specs: validation names the bad key, overrides, secrets, schema doc, builders."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from streamal import ActivationClassifier, ActivationDetector
from streamal.connectors import FileSink, FileSource, KafkaSink, KafkaSource
from streamal.pipelines import (
    SpecError,
    build_sinks,
    build_source,
    load_spec,
    model_factory,
    output_targets,
    packaged_specs,
    parse_override,
    parse_spec,
)
from streamal.pipelines.schema import KAFKA_SECURITY_KEYS, MODEL_KEYS, TABLES, model_keys

FILE_SPEC = """
[source]
type = "file"
path = "in.jsonl"
[outputs]
directory = "out"
"""

KAFKA_SPEC = """
[source]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topics = "sensors"
group_id = "g"
[outputs]
scores = { topic = "scores" }
dead_letter = { topic = "dead" }
"""


def problems(text: str, overrides: list[str] | None = None) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, overrides or [])
    return dict(info.value.problems)


# ---- the packaged specs ----------------------------------------------------------------------
def test_every_packaged_spec_is_valid() -> None:
    names = packaged_specs()
    assert {"demo", "sensor_anomaly_kafka", "semisupervised_kafka", "backtest_files"} <= set(names)
    for name in names:
        spec = load_spec(name)
        assert spec["outputs"]["dead_letter"] or spec["outputs"]["directory"], name


def test_a_spec_file_loads_by_path(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(FILE_SPEC)
    spec = load_spec(path, ["model.seed=3"])
    assert spec.origin == str(path) and spec["model"]["seed"] == 3


def test_a_missing_spec_file_is_an_error_listing_the_packaged_ones() -> None:
    with pytest.raises(SpecError, match="no spec file 'nope.toml'; packaged specs: .*demo"):
        load_spec("nope.toml")


# ---- validation errors name the key -----------------------------------------------------------
@pytest.mark.parametrize(("override", "key", "message"), [
    ("model.hiden=[3]", "model.hiden", "unknown key; did you mean 'hidden'?"),
    ("source.pth=x", "source.pth", "unknown key; did you mean 'path'?"),
    ("chekpoint.keep=2", "chekpoint", "unknown table; did you mean 'checkpoint'?"),
    ("outputs.score={topic='s'}", "outputs.score", "unknown key; did you mean 'scores'?"),
    ("drift.detector=adwinn", "drift.detector", "did you mean 'ADWIN'?"),
    ("drift.params.delt=0.1", "drift.params.delt", "not a parameter of ADWIN"),
    ("model.hidden=3", "model.hidden", "must be an array of integers, got an integer 3"),
    ("model.hidden=[1.5]", "model.hidden", "wrong type: 1.5"),
    ("model.lr=fast", "model.lr", "must be a number, got a string 'fast'"),
    ("model.lr=-1", "model.lr", "must be positive"),
    ("model.batch_size=0", "model.batch_size", "must be at least 1"),
    ("model.activation=relu", "model.activation", "must be one of"),
    ("model.device=gpu", "model.device", "must be 'auto', 'cpu'"),
    ("model.task=regression", "model.task", "must be one of 'anomaly', 'classification'"),
    ("source.speed=0", "source.speed", "must be positive"),
    ("source.format=xml", "source.format", "must be one of 'csv', 'jsonl', 'parquet'"),
    ("source.group_id=g", "source.group_id", "not a setting of a file source"),
    ("alerts.q=2", "alerts.q", "between 0 and 1"),
    ("alerts.policy=fixed", "alerts.value", "required when alerts.policy = 'fixed'"),
    ("checkpoint.every_records=1.5", "checkpoint.every_records", "must be an integer"),
    ("decode.features=value", "decode.features", "must be an array of strings"),
    ("model.task=classification", "decode.label_field", "required when model.task"),
    ("model.per_key=true", "decode.key_field", "required when model.per_key = true"),
    ("outputs.scores.topic=s", "outputs.bootstrap_servers", "required for topic outputs"),
    ("outputs.scores={topic='s', path='p'}", "outputs.scores", "exactly one of 'topic' or"),
    ("outputs.scores=x", "outputs.scores", "must be a table, got a string 'x'"),
    ("run.max_records=0", "run.max_records", "must be at least 1"),
    ("name=3", "name", "must be a string"),
])
def test_a_bad_value_is_reported_with_its_key(override: str, key: str, message: str) -> None:
    found = problems(FILE_SPEC, [override])
    assert key in found, found
    assert message in found[key]


def test_the_classifier_scaling_is_checked_with_the_spec() -> None:
    with pytest.raises(SpecError, match=r"model.scaling: must be one of \['range', 'std'\]"):
        load_spec("semisupervised_files", ["model.scaling='minmax'"])


def test_missing_required_keys_are_named() -> None:
    assert problems("[outputs]\ndirectory = 'o'\n") == {"source": "required table is missing"}
    found = problems('[source]\ntype = "kafka"\n[outputs]\ndirectory = "o"\n')
    assert found["source.bootstrap_servers"] == "required key is missing"
    assert found["source.topics"] == "required key is missing"
    assert "group_id (consumer group) or partitions" in found["source.group_id"]
    found = problems('[source]\npath = "x.csv"\n[outputs]\ndirectory = "o"\n')
    assert found == {"source.type": "required key is missing"}


def test_dead_letters_must_go_somewhere() -> None:
    found = problems('[source]\ntype = "file"\npath = "x.csv"\n')
    assert "bad records must go somewhere" in found["outputs.dead_letter"]


def test_every_problem_is_reported_at_once_in_the_message() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(FILE_SPEC, ["model.hiden=[3]", "alerts.q=2", "checkpoint.keep=0"],
                   origin="p.toml")
    text = str(info.value)
    assert text.splitlines()[0] == "invalid pipeline spec p.toml:"
    for key in ("model.hiden", "alerts.q", "checkpoint.keep"):
        assert re.search(rf"^  {re.escape(key)}: ", text, re.M), text


def test_invalid_toml_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="not valid TOML"):
        parse_spec("[source\n")


def test_estimator_parameters_follow_the_task() -> None:
    spec = parse_spec(FILE_SPEC, ["model.task=classification", "decode.label_field=y",
                                  "model.feedback=false", "model.label_repeat=4"])
    assert spec["model"]["feedback"] is False and spec["model"]["label_repeat"] == 4
    found = problems(FILE_SPEC, ["model.feedback=false"])  # not a detector parameter
    assert "model.feedback" in found


# ---- defaults and overrides -------------------------------------------------------------------
def test_defaults_are_filled_in() -> None:
    spec = parse_spec(FILE_SPEC)
    assert spec["checkpoint"] == {"directory": None, "every_records": 10_000,
                                  "every_seconds": 60.0, "keep": 3}
    assert spec["model"]["task"] == "anomaly"
    assert spec["model"]["lr"] == ActivationDetector().lr  # the estimator's own default
    assert spec["alerts"] is None and spec["drift"] is None  # absent table = feature off
    assert parse_spec(FILE_SPEC, ["alerts.policy=quantile"])["alerts"]["q"] == 0.995


@pytest.mark.parametrize(("text", "key", "value"), [
    ("model.hidden=[32,32]", "model.hidden", [32, 32]),
    ("model.lr=0.01", "model.lr", 0.01),
    ("model.batch_size=64", "model.batch_size", 64),
    ("source.stop_at_end=true", "source.stop_at_end", True),
    ("source.topics=sensors", "source.topics", "sensors"),
    ('source.topics="a b"', "source.topics", "a b"),
    ("source.topics=[\"a\", \"b\"]", "source.topics", ["a", "b"]),
    ("checkpoint.directory=out/ck", "checkpoint.directory", "out/ck"),
    ("drift.params={ delta = 0.01 }", "drift.params", {"delta": 0.01}),
    ("decode.time_field=2024-01-01", "decode.time_field", "2024-01-01"),
    ("name = my pipeline ", "name", "my pipeline"),
])
def test_override_values_are_toml_or_bare_strings(text: str, key: str, value: object) -> None:
    assert parse_override(text) == (key, value)


def test_overrides_reach_nested_keys_and_create_tables() -> None:
    spec = parse_spec(FILE_SPEC, ["drift.params.delta=0.01", "model.hidden=[8,4]",
                                  "outputs.scores.path=s.parquet"])
    assert spec["drift"] == {"detector": "ADWIN", "params": {"delta": 0.01}}
    assert spec["model"]["hidden"] == (8, 4)
    assert output_targets(spec)["scores"] == {"path": "s.parquet", "format": "parquet"}


@pytest.mark.parametrize("text", ["model.hidden", "=3", "model..lr=1", ".lr=1"])
def test_a_malformed_override_is_an_error(text: str) -> None:
    with pytest.raises(SpecError, match="expected TABLE.KEY=VALUE"):
        parse_spec(FILE_SPEC, [text])


def test_an_override_below_a_value_is_an_error() -> None:
    found = problems(FILE_SPEC, ["model.hidden=[3]", "model.hidden.x=1"])
    assert "model.hidden is a value, not a table" in found["model.hidden"]


# ---- secrets ----------------------------------------------------------------------------------
SECRET = "s3cr3t-Pa55"


def test_env_secrets_are_resolved_only_for_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMAL_TEST_PASSWORD", SECRET)
    spec = parse_spec(KAFKA_SPEC, ["source.security_protocol=SASL_SSL",
                                   "source.sasl_mechanism=PLAIN",
                                   "source.sasl_plain_username=me",
                                   "source.sasl_plain_password=env:STREAMAL_TEST_PASSWORD"])
    assert spec["source"]["sasl_plain_password"] == "env:STREAMAL_TEST_PASSWORD"
    settings = spec.client_settings("source")
    assert settings == {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN",
                        "sasl_plain_username": "me", "sasl_plain_password": SECRET}
    assert SECRET not in repr(spec) and SECRET not in str(spec.redacted())
    sink = build_sinks(spec)["scores"]  # outputs inherit the source's broker and settings
    assert isinstance(sink, KafkaSink) and sink.client_settings == settings


def test_a_missing_env_secret_names_key_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMAL_TEST_NOT_SET", raising=False)
    spec = parse_spec(KAFKA_SPEC, ["source.ssl_password=env:STREAMAL_TEST_NOT_SET"])
    with pytest.raises(SpecError) as info:
        spec.client_settings("source")
    assert info.value.problems == [
        ("source.ssl_password", "environment variable 'STREAMAL_TEST_NOT_SET' is not set")]


def test_literal_secrets_never_show(caplog: pytest.LogCaptureFixture,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from streamal.cli import main

    overrides = [f"source.sasl_plain_password={SECRET}", f"outputs.ssl_password={SECRET}"]
    spec = parse_spec(KAFKA_SPEC, overrides)
    assert SECRET not in repr(spec)
    assert spec.redacted()["source"]["sasl_plain_password"] == "***"
    assert spec.redacted()["outputs"]["ssl_password"] == "***"
    with caplog.at_level(logging.DEBUG):
        build_source(spec)
        build_sinks(spec)
    assert SECRET not in caplog.text
    bad = problems(KAFKA_SPEC, [*overrides, "source.sasl_plain_pasword=x"])
    assert SECRET not in str(bad)
    spec_file = Path(__file__).parent / "_secret_spec.toml"
    try:
        spec_file.write_text(KAFKA_SPEC)
        args = ["spec", str(spec_file)] + [a for o in overrides for a in ("--set", o)]
        assert main(args) == 0
    finally:
        spec_file.unlink()
    out = capsys.readouterr()
    assert '"sasl_plain_password": "***"' in out.out
    assert SECRET not in out.out + out.err


# ---- the schema document ----------------------------------------------------------------------
def test_the_schema_document_names_every_key() -> None:
    doc = (Path(__file__).resolve().parents[2] / "pipelines" / "README.md").read_text()
    missing = []
    for table, keys in TABLES.items():
        if f"### `[{table}]`" not in doc:
            missing.append(f"[{table}]")
        missing += [f"{table}.{k}" for k in keys if f"`{k}`" not in doc]
    for task in ("anomaly", "classification"):
        missing += [f"model.{k}" for k in model_keys(task) if f"`{k}`" not in doc]
    missing += [k for k in KAFKA_SECURITY_KEYS if f"`{k}`" not in doc]
    assert not missing, f"pipelines/README.md does not document: {missing}"


def test_the_schema_document_states_the_estimators_defaults() -> None:
    doc = (Path(__file__).resolve().parents[2] / "pipelines" / "README.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \|([^|]*)\|([^|]*)\|", doc.split("### `[model]`")[1]
                      .split("### ")[0], re.M)
    documented = {name: (a.strip(), b.strip()) for name, a, b in rows}
    for column, task in enumerate(("anomaly", "classification")):
        for name, key in model_keys(task).items():
            if name in MODEL_KEYS:  # the runtime's keys have their own table
                continue
            text = documented[name][column].strip("`")
            value = None if text.startswith("—") else parse_override(f"v={text}")[1]
            value = tuple(value) if isinstance(value, list) else value
            assert value == key.default, f"model.{name} ({task}): README says {text}, " \
                f"the estimator's default is {key.default!r}"


# ---- builders -----------------------------------------------------------------------------------
def test_model_factory_passes_the_model_table() -> None:
    spec = parse_spec(FILE_SPEC, ["model.hidden=[8,4]", "model.lr=0.02", "model.seed=7"])
    model = model_factory(spec)()
    assert isinstance(model, ActivationDetector)
    assert (model.hidden, model.lr, model.seed) == ((8, 4), 0.02, 7)
    assert model_factory(spec)() is not model
    spec = parse_spec(FILE_SPEC, ["model.task=classification", "decode.label_field=y"])
    assert isinstance(model_factory(spec)(), ActivationClassifier)


def test_directory_shorthand_gives_every_kind_a_file(tmp_path: Path) -> None:
    spec = parse_spec(FILE_SPEC, [f"outputs.directory={str(tmp_path)!r}",
                                  "outputs.drift={ path = 'drift.parquet' }"])
    targets = output_targets(spec)
    assert targets["scores"] == {"path": str(tmp_path / "scores.jsonl"), "format": "jsonl"}
    assert targets["drift"] == {"path": "drift.parquet", "format": "parquet"}
    assert list(targets) == ["scores", "predictions", "alerts", "drift", "dead_letter"]
    sinks = build_sinks(spec)
    assert all(isinstance(s, FileSink) for s in sinks.values())
    parquet = parse_spec(FILE_SPEC, ["outputs.format=parquet"])
    assert output_targets(parquet)["alerts"] == {"path": str(Path("out") / "alerts"),
                                                 "format": "parquet"}


def test_kinds_without_a_target_are_not_written() -> None:
    spec = parse_spec(KAFKA_SPEC)
    assert set(build_sinks(spec)) == {"scores", "dead_letter"}


def test_sources_are_built_for_both_types(tmp_path: Path) -> None:
    source = build_source(parse_spec(KAFKA_SPEC, ["source.partitions=[0, 'sensors:1']"]))
    assert isinstance(source, KafkaSource) and source.partitions == [0, "sensors:1"]
    demo = build_source(load_spec("demo"))
    assert isinstance(demo, FileSource)
    assert demo.streams[0].endswith("ambient_temperature_system_failure.csv")
    with pytest.raises(SpecError, match="source.path: no bundled file 'x.csv'"):
        build_source(load_spec("demo", ["source.path=bundled:x.csv"]))
    with pytest.raises(SpecError, match="source.path: no such file"):
        build_source(load_spec("demo", [f"source.path={str(tmp_path / 'none.csv')!r}"]))


def test_the_consumer_session_settings_reach_the_source_and_are_checked() -> None:
    source = build_source(parse_spec(KAFKA_SPEC))
    assert source.client_settings["session_timeout_ms"] == 3000
    assert source.client_settings["heartbeat_interval_ms"] == 500
    apache = ["source.session_timeout_ms=6000", "source.heartbeat_interval_ms=2000"]
    source = build_source(parse_spec(KAFKA_SPEC, apache))
    assert (source.client_settings["session_timeout_ms"],
            source.client_settings["heartbeat_interval_ms"]) == (6000, 2000)
    with pytest.raises(SpecError, match=r"source.heartbeat_interval_ms: must be below "
                                        r"session_timeout_ms \(3000\), got 3000"):
        parse_spec(KAFKA_SPEC, ["source.heartbeat_interval_ms=3000"])


def test_build_pipeline_passes_every_table(tmp_path: Path) -> None:
    from streamal.drift import DriftMonitor
    from streamal.pipelines import build_pipeline
    from streamal.runtime import FixedThreshold, QuantileThreshold

    data = tmp_path / "in.jsonl"
    data.write_text('{"sensor": "a", "x": 1.0}\n')
    base = [f"source.path={str(data)!r}", "decode.key_field=sensor", "decode.exclude=['seq']",
            "model.per_key=true", "model.max_models=7", "checkpoint.directory=ck",
            "checkpoint.every_records=50", "checkpoint.every_seconds=2", "checkpoint.keep=4",
            "run.poll_records=64", "drift.detector=PageHinkley", "drift.params.threshold=10"]
    pipe = build_pipeline(parse_spec(FILE_SPEC, [*base, "alerts.policy=fixed",
                                                 "alerts.value=0.9", "alerts.warmup=10",
                                                 "alerts.learn_alerts=false"]))
    assert isinstance(pipe.alerts, FixedThreshold)
    assert pipe.alerts.params() == {"value": 0.9, "warmup": 10, "learn_alerts": False}
    assert isinstance(pipe.drift, DriftMonitor)
    assert pipe.drift.get_params() == {"detector": "PageHinkley", "threshold": 10}
    assert (pipe.task, pipe.per_key, pipe.max_models) == ("anomaly", "sensor", 7)
    assert (pipe.checkpoint_dir, pipe.checkpoint_every_records, pipe.checkpoint_every_seconds,
            pipe.keep_checkpoints, pipe.poll_records) == ("ck", 50, 2.0, 4, 64)
    assert pipe.decoder.get_params() == {"features": None, "exclude": ["seq"],
                                         "key_field": "sensor", "time_field": None,
                                         "label_field": None}
    pipe = build_pipeline(parse_spec(FILE_SPEC, [*base, "alerts.q=0.9", "alerts.window=99"]))
    assert isinstance(pipe.alerts, QuantileThreshold)
    assert pipe.alerts.params() == {"q": 0.9, "warmup": 500, "window": 99, "learn_alerts": True}
    assert build_pipeline(parse_spec(FILE_SPEC, base)).alerts is None


def test_a_cuda_device_without_cuda_is_a_spec_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")  # the check only applies without it
    with pytest.raises(SpecError, match="model.device: 'cuda', but CUDA is not available"):
        model_factory(parse_spec(FILE_SPEC, ["model.device=cuda"]))
