"""From a validated :class:`~.spec.Spec` to a runnable :class:`streamal.runtime.Pipeline`.

Only this module knows both the spec and the parts: it builds the source
(Kafka or files), one sink per output kind, the model factory, the decoder,
the alert policy and the drift monitor. The pipeline code is the same for
Kafka and files; only the source and sinks differ.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from streamal.connectors import FileSink, FileSource, KafkaSink, KafkaSource, Sink, Source

from .schema import MODEL_KEYS, OUTPUT_KINDS, estimator_class, preset_class
from .spec import Spec, SpecError

__all__ = [
    "BUNDLED_PREFIX",
    "build_pipeline",
    "build_sinks",
    "build_source",
    "model_factory",
    "output_targets",
    "resolve_path",
    "run_pipeline",
]

BUNDLED_PREFIX = "bundled:"
"""``source.path = "bundled:NAME"`` names a file shipped in ``streamal/data``."""


def resolve_path(path: str) -> str:
    """A source path with ``bundled:NAME`` replaced by the shipped file's location."""
    if not path.startswith(BUNDLED_PREFIX):
        return path
    name = path[len(BUNDLED_PREFIX):]
    shipped = resources.files("streamal").joinpath("data", name)
    if not shipped.is_file():
        available = sorted(p.name for p in resources.files("streamal").joinpath("data").iterdir()
                           if p.name.endswith((".csv", ".jsonl", ".parquet")))
        raise SpecError([("source.path", f"no bundled file {name!r}; bundled: {available}")])
    return os.fspath(Path(str(shipped)))


def build_source(spec: Spec) -> Source:
    """The source of ``spec``: a :class:`KafkaSource` or a :class:`FileSource`."""
    source = spec["source"]
    if source["type"] == "kafka":
        return KafkaSource(
            topics=source["topics"],
            bootstrap_servers=source["bootstrap_servers"],
            group_id=source["group_id"],
            partitions=source["partitions"],
            auto_offset_reset=source["auto_offset_reset"],
            stop_at_end=source["stop_at_end"],
            client_settings={
                "session_timeout_ms": source["session_timeout_ms"],
                "heartbeat_interval_ms": source["heartbeat_interval_ms"],
                **spec.client_settings("source"),
            },
        )
    try:
        return FileSource(
            resolve_path(source["path"]),
            format=source["format"],
            time_field=source["time_field"],
            time_format=source["time_format"],
            speed=source["speed"],
            file_field=source["file_field"],
        )
    except (FileNotFoundError, ValueError) as exc:
        raise SpecError([("source.path", str(exc))], spec.origin) from None


def output_targets(spec: Spec) -> dict[str, dict[str, Any]]:
    """Where each output kind goes: ``{"topic": ...}`` or ``{"path": ..., "format": ...}``.

    Kinds given explicitly come first; with ``outputs.directory`` every other
    kind goes to ``DIR/<kind>.jsonl`` (or the Parquet directory ``DIR/<kind>``).
    Kinds with neither are not written.
    """
    outputs = spec["outputs"]
    targets: dict[str, dict[str, Any]] = {}
    for kind in OUTPUT_KINDS:
        entry = outputs[kind]
        if entry is not None and entry["topic"] is not None:
            targets[kind] = {"topic": entry["topic"]}
        elif entry is not None:
            path = entry["path"]
            fmt = entry["format"] or ("parquet" if path.endswith((".parquet", ".pq"))
                                      else "jsonl")
            targets[kind] = {"path": path, "format": fmt}
        elif outputs["directory"] is not None:
            fmt = outputs["format"]
            name = f"{kind}.jsonl" if fmt == "jsonl" else kind
            targets[kind] = {"path": os.path.join(outputs["directory"], name), "format": fmt}
    return targets


def build_sinks(spec: Spec) -> dict[str, Sink]:
    """One sink per output kind that has a target (see :func:`output_targets`)."""
    targets = output_targets(spec)
    sinks: dict[str, Sink] = {}
    kafka: tuple[Any, dict[str, Any]] | None = None
    for kind, target in targets.items():
        if "topic" in target:
            if kafka is None:
                kafka = _output_broker(spec)
            bootstrap, settings = kafka
            sinks[kind] = KafkaSink(target["topic"], bootstrap, client_settings=settings)
        else:
            sinks[kind] = FileSink(target["path"], format=target["format"])
    return sinks


def _output_broker(spec: Spec) -> tuple[Any, dict[str, Any]]:
    """Bootstrap servers and client settings of topic outputs (default: the source's)."""
    outputs, source = spec["outputs"], spec["source"]
    bootstrap = outputs["bootstrap_servers"] or source.get("bootstrap_servers")
    if bootstrap is None:
        raise SpecError([("outputs.bootstrap_servers", "required for topic outputs")],
                        spec.origin)
    settings = spec.client_settings("outputs")
    if not settings and source["type"] == "kafka" and outputs["bootstrap_servers"] in (
            None, source["bootstrap_servers"]):
        settings = spec.client_settings("source")
    return bootstrap, settings


def model_factory(spec: Spec) -> Callable[[], Any]:
    """A callable that builds a fresh, untrained estimator from the ``model`` table
    (the preset's class with ``model.preset``, see :mod:`streamal.estimators.presets`).

    Raises :class:`SpecError` when ``model.device`` names CUDA on a machine without it
    (else every record would fail to score and go to the dead letter).
    """
    model = spec["model"]
    device = str(model.get("device", "cpu"))
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SpecError([("model.device", f"{device!r}, but CUDA is not available on this "
                              "machine (use 'cpu' or 'auto')")], spec.origin)
    params = {k: v for k, v in model.items() if k not in MODEL_KEYS}
    preset = model.get("preset")
    cls = estimator_class(model["task"]) if preset is None else preset_class(preset)
    return functools.partial(cls, **params)


def build_pipeline(spec: Spec, sinks: Mapping[str, Sink] | None = None,
                   observer: Any = None) -> Any:
    """A :class:`streamal.runtime.Pipeline` that runs ``spec``.

    ``sinks`` replaces the sinks of ``[outputs]`` (for instance wrapped ones, or
    :class:`~streamal.connectors.MemorySink` objects in a notebook); ``observer`` is
    handed to the pipeline (a :class:`streamal.runtime.observer.Observer`).
    """
    from streamal import runtime

    decode, model, ck = spec["decode"], spec["model"], spec["checkpoint"]
    decoder = runtime.RecordDecoder(
        features=decode["features"],
        exclude=tuple(decode["exclude"]),
        key_field=decode["key_field"],
        time_field=decode["time_field"],
        label_field=decode["label_field"],
    )
    if spec.get("scaleout") is not None:
        return _scaleout_worker(spec, sinks, decoder, observer)
    return runtime.Pipeline(
        build_source(spec),
        build_sinks(spec) if sinks is None else sinks,
        model_factory(spec),
        decoder,
        task=model["task"],
        alerts=_alerts(spec),
        drift=_drift(spec),
        per_key=decode["key_field"] if model["per_key"] else None,
        max_models=model["max_models"],
        max_classes=model["max_classes"],
        checkpoint_dir=ck["directory"],
        checkpoint_every_records=ck["every_records"],
        checkpoint_every_seconds=ck["every_seconds"],
        keep_checkpoints=ck["keep"],
        poll_records=spec["run"]["poll_records"],
        **({} if observer is None else {"observer": observer}),
    )


def _scaleout_worker(spec: Spec, sinks: Mapping[str, Sink] | None, decoder: Any,
                     observer: Any) -> Any:
    """The scale-out worker of ``[scaleout]`` (see :mod:`streamal.runtime.scaleout`)."""
    from streamal.runtime.scaleout import make_worker

    scaleout, decode, model, ck = spec["scaleout"], spec["decode"], spec["model"], \
        spec["checkpoint"]
    mode = scaleout["mode"]
    problems = []
    if spec["source"]["type"] != "kafka":
        problems.append(("scaleout.mode", "scale-out needs a kafka source"))
    if mode == "shared" and model["per_key"]:
        problems.append(("model.per_key", "shared mode has one model: use mode = 'per_key'"))
    if mode == "per_key" and decode["key_field"] is None:
        problems.append(("decode.key_field", "required when scaleout.mode = 'per_key'"))
    if problems:
        raise SpecError(problems, spec.origin)
    per_key = decode["key_field"] if model["per_key"] or mode == "per_key" else None
    return make_worker(
        mode, source=build_source(spec), sinks=build_sinks(spec) if sinks is None else sinks,
        model_factory=model_factory(spec), decoder=decoder, task=model["task"],
        alerts=_alerts(spec), drift=_drift(spec), per_key=per_key,
        max_models=model["max_models"], max_classes=model["max_classes"],
        observer=observer, checkpoint_dir=ck["directory"],
        checkpoint_every_records=ck["every_records"],
        checkpoint_every_seconds=ck["every_seconds"], keep_checkpoints=ck["keep"],
        poll_records=spec["run"]["poll_records"], backend=scaleout["backend"],
        delta_scale=scaleout["delta_scale"], step_records=scaleout["step_records"],
        sync_timeout=scaleout["sync_timeout"], check_every=scaleout["check_every"])


def run_pipeline(spec: Spec, sinks: Mapping[str, Sink] | None = None,
                 observer: Any = None) -> Any:
    """Build the pipeline of ``spec`` and run it, honouring ``run.max_records``.

    Returns the :class:`~streamal.runtime.RunSummary`. SIGTERM and SIGINT stop the run
    after a final checkpoint when it runs in the main thread.
    """
    return build_pipeline(spec, sinks, observer).run(max_records=spec["run"]["max_records"])


def _alerts(spec: Spec) -> Any:
    alerts = spec["alerts"]
    if alerts is None:
        return None
    from streamal import runtime

    if alerts["policy"] == "fixed":
        return runtime.FixedThreshold(alerts["value"], alerts["warmup"],
                                      learn_alerts=alerts["learn_alerts"])
    return runtime.QuantileThreshold(alerts["q"], alerts["warmup"], alerts["window"],
                                     learn_alerts=alerts["learn_alerts"])


def _drift(spec: Spec) -> Any:
    drift = spec["drift"]
    if drift is None:
        return None
    from streamal.drift import DriftMonitor

    return DriftMonitor(detector=drift["detector"], **drift["params"])
