"""The keys of a pipeline spec: their types, defaults and meaning.

One :class:`Key` per setting, grouped by table. :mod:`.spec` checks a parsed
TOML document against these tables; ``pipelines/README.md`` documents them
for people (a test keeps the two in step). Model parameters are not listed
here: they are read from the estimator's constructor (see :func:`model_keys`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from streamal.connectors.kafka_source import CONSUMER_DEFAULTS

if TYPE_CHECKING:
    from streamal.estimators.presets import Preset

__all__ = [
    "KAFKA_SECURITY_KEYS",
    "OUTPUT_KINDS",
    "SECRET_KEYS",
    "TABLES",
    "Key",
    "estimator_class",
    "model_keys",
    "preset_class",
]

REQUIRED = object()
"""Default of a key that must be given."""

OUTPUT_KINDS = ("scores", "predictions", "alerts", "drift", "dead_letter")
"""Output kinds, in the order the runtime's sinks mapping names them."""

KAFKA_SECURITY_KEYS = (
    "security_protocol",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
    "sasl_kerberos_name",
    "sasl_kerberos_service_name",
    "sasl_kerberos_domain_name",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_crlfile",
    "ssl_ciphers",
    "ssl_check_hostname",
)
"""kafka-python client settings a spec passes through (strings may be ``"env:NAME"``)."""

SECRET_KEYS = frozenset({"sasl_plain_password", "ssl_password"})
"""Keys whose literal values are never shown (``env:NAME`` references are)."""

TASKS = {"anomaly": "ActivationDetector", "classification": "ActivationClassifier"}

PRESET_NAMES = ("series", "sensor")
"""Tuned anomaly detectors a spec may pick (see :mod:`streamal.estimators.presets`)."""


@dataclass(frozen=True)
class Key:
    """One setting of a spec table.

    ``kind`` is one of ``str``, ``int``, ``float`` (an int is accepted),
    ``bool``, ``strs`` (a string or a list of strings), ``str_list``,
    ``int_list``, ``partitions`` (ints or ``"topic:partition"`` strings) and
    ``table`` (a free table, checked by whoever uses it).
    """

    kind: str
    default: Any = None
    doc: str = ""
    choices: tuple[Any, ...] = ()
    check: Callable[[Any], str | None] | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be positive"


def _at_least_one(value: Any) -> str | None:
    return None if value >= 1 else "must be at least 1"


def _probability(value: Any) -> str | None:
    return None if 0 < value < 1 else "must be between 0 and 1 (exclusive)"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must not be negative"


def _non_empty(value: Any) -> str | None:
    return None if value else "must not be empty"


_SECURITY = {name: Key("bool" if name == "ssl_check_hostname" else "str",
                       doc="kafka-python client setting; a string may be \"env:NAME\"")
             for name in KAFKA_SECURITY_KEYS}

KAFKA_SOURCE_KEYS = {
    "bootstrap_servers": Key("strs", REQUIRED, "\"host:port\" or a list of them",
                             check=_non_empty),
    "topics": Key("strs", REQUIRED, "topic or list of topics to read", check=_non_empty),
    "group_id": Key("str", None, "consumer group (partitions shared between workers)"),
    "partitions": Key("partitions", None,
                      "explicit assignment instead of a group: ints or \"topic:partition\""),
    "auto_offset_reset": Key("str", "earliest", "where a partition without a checkpoint starts",
                             choices=("earliest", "latest")),
    "stop_at_end": Key("bool", False, "stop once the end offsets seen at start are reached"),
    "session_timeout_ms": Key("int", CONSUMER_DEFAULTS["session_timeout_ms"],
                              "consumer group session timeout; Apache Kafka refuses "
                              "values below its group.min.session.timeout.ms (6000 by default)",
                              check=_positive),
    "heartbeat_interval_ms": Key("int", CONSUMER_DEFAULTS["heartbeat_interval_ms"],
                                 "consumer heartbeat interval; below the session "
                                 "timeout (a third of it or less is usual)", check=_positive),
    **_SECURITY,
}

FILE_SOURCE_KEYS = {
    "path": Key("str", REQUIRED, "file, glob or directory; \"bundled:NAME\" is a file shipped "
                "in streamal/data", check=_non_empty),
    "format": Key("str", None, "csv, jsonl or parquet (default: from the extension)",
                  choices=("csv", "jsonl", "parquet")),
    "time_field": Key("str", None, "column of the event time; files are merged by it"),
    "time_format": Key("str", None, "strptime format of string times (default ISO 8601)"),
    "speed": Key("float", None, "replay at N x real time (default: as fast as possible)",
                 check=_positive),
    "file_field": Key("str", None, "field added to every record holding its file's path (per-"
                      "file models: name it in decode.key_field, model.per_key = true)",
                      check=_non_empty),
}

SOURCE_KEYS = {"type": Key("str", REQUIRED, "kafka or file", choices=("kafka", "file")),
               **{name: replace(key, default=None)
                  for name, key in {**KAFKA_SOURCE_KEYS, **FILE_SOURCE_KEYS}.items()}}
"""Every source key; used only while the type is unknown (then nothing else is required)."""

DECODE_KEYS = {
    "features": Key("str_list", None, "feature fields (default: every numeric field not "
                    "named elsewhere)"),
    "exclude": Key("str_list", [], "fields never used as features"),
    "key_field": Key("str", None, "field holding the record key (per-key models)"),
    "time_field": Key("str", None, "field holding the event time"),
    "label_field": Key("str", None, "field holding the label (classification; may be absent "
                       "from a record)"),
}

MODEL_KEYS = {
    "task": Key("str", "anomaly", "anomaly (ActivationDetector) or classification "
                "(ActivationClassifier)", choices=tuple(TASKS)),
    "per_key": Key("bool", False, "one model per value of decode.key_field"),
    "max_models": Key("int", 1000, "bound on the number of per-key models", check=_at_least_one),
    "max_classes": Key("int", 1000, "classification: bound on the number of classes (records of "
                       "a further class go to the dead letter)", check=_at_least_one),
    "preset": Key("str", None, "anomaly: a tuned detector instead of a plain ActivationDetector "
                  "(series: one univariate series; sensor: one multivariate stream)",
                  choices=PRESET_NAMES),
}

ALERT_KEYS = {
    "policy": Key("str", "quantile", "quantile (online quantile of recent scores) or fixed",
                  choices=("quantile", "fixed")),
    "q": Key("float", 0.995, "quantile policy: alert above this quantile", check=_probability),
    "warmup": Key("int", 500, "records scored before any alert (a fresh model scores 1.0)",
                  check=_non_negative),
    "window": Key("int", 10_000, "quantile policy: recent scores the quantile is taken over",
                  check=_at_least_one),
    "value": Key("float", None, "fixed policy: alert when the score reaches this value"),
    "learn_alerts": Key("bool", True, "learn records that raised an alert (false keeps long "
                        "anomalies from being learnt as normal)"),
}

DRIFT_KEYS = {
    "detector": Key("str", "ADWIN", "river.drift detector class (ADWIN, KSWIN, PageHinkley, ...)"),
    "params": Key("table", {}, "constructor parameters of the detector"),
}

OUTPUT_ENTRY_KEYS = {
    "topic": Key("str", None, "Kafka topic", check=_non_empty),
    "path": Key("str", None, "file (jsonl) or directory (parquet)", check=_non_empty),
    "format": Key("str", None, "jsonl or parquet (default: from the path's extension, else "
                  "jsonl)", choices=("jsonl", "parquet")),
}

OUTPUTS_KEYS = {
    "directory": Key("str", None, "shorthand: every kind not given goes to DIR/<kind>.jsonl",
                     check=_non_empty),
    "format": Key("str", "jsonl", "format of the directory shorthand",
                  choices=("jsonl", "parquet")),
    "bootstrap_servers": Key("strs", None, "broker of topic outputs (default: the source's)"),
    **{kind: Key("table", None, f"where {kind.replace('_', '-')} records go: "
                 "{ topic = ... } or { path = ..., format = ... }") for kind in OUTPUT_KINDS},
    **_SECURITY,
}

CHECKPOINT_KEYS = {
    "directory": Key("str", None, "where checkpoints are written (none: no checkpoints)",
                     check=_non_empty),
    "every_records": Key("int", 10_000, "checkpoint after this many records",
                         check=_at_least_one),
    "every_seconds": Key("float", 60.0, "and after this many seconds", check=_positive),
    "keep": Key("int", 3, "valid checkpoints kept", check=_at_least_one),
}

RUN_KEYS = {
    "max_records": Key("int", None, "stop after this many records (with a final checkpoint)",
                       check=_at_least_one),
    "poll_records": Key("int", 500, "records read from the source at once", check=_at_least_one),
}

SCALEOUT_KEYS = {
    "mode": Key("str", "per_partition", "per_partition, per_key or shared: how the workers of "
                "one consumer group hold models", choices=("per_partition", "per_key", "shared")),
    "backend": Key("str", "auto", "shared: torch.distributed backend (auto: nccl on CUDA, "
                   "else gloo)", choices=("auto", "gloo", "nccl")),
    "delta_scale": Key("str", "sum", "shared: apply the sum of the workers' deltas, or their "
                       "mean", choices=("sum", "mean")),
    "step_records": Key("int", None, "shared: records per worker per sync step (default "
                        "model.batch_size)", check=_at_least_one),
    "sync_timeout": Key("float", 120.0, "shared: seconds to wait for the other workers",
                        check=_positive),
    "check_every": Key("int", 0, "shared: verify every N sync steps that all workers hold "
                       "the same state (0: never)", check=_non_negative),
}

OBSERVABILITY_KEYS = {
    "metrics_port": Key("int", None, "port of the /metrics and /healthz HTTP endpoint (0: a free "
                        "port, logged; none: no endpoint)", check=_non_negative),
    "bind": Key("str", "127.0.0.1", "address the endpoint listens on (loopback only unless "
                "set, e.g. \"0.0.0.0\")", check=_non_empty),
    "log_format": Key("str", "text", "text or json (one JSON object per line)",
                      choices=("text", "json")),
    "max_loop_seconds": Key("float", 120.0, "/healthz fails when the loop has not turned for "
                            "this long", check=_positive),
    "max_unsaved_seconds": Key("float", None, "/healthz fails when records have waited this long "
                               "for a checkpoint (default 3 x checkpoint.every_seconds, at least "
                               "60)", check=_positive),
    "event_log_burst": Key("int", 20, "alert, drift and dead-letter log lines per minute and "
                           "kind; further ones are counted in one summary line",
                           check=_non_negative),
}

BACKTEST_KEYS = {
    "labels": Key("str", None, "JSON file of labelled [start, end] windows per series (NAB's "
                  "format); \"bundled:NAME\" is a file shipped in streamal/data",
                  check=_non_empty),
    "label_field": Key("str", None, "field holding the true label of every record, for the "
                       "evaluation only (anomaly: 1/true = anomalous; classification: default "
                       "decode.label_field)", check=_non_empty),
    "series": Key("str", None, "what a series of the labels names: key (decode.key_field) or "
                  "file (source file); default key when decode.key_field is set, else file",
                  choices=("key", "file")),
    "warmup": Key("int", None, "anomaly: first records of each series left out of the "
                  "point-wise metrics (default alerts.warmup, else 0)", check=_non_negative),
    "rolling_window": Key("int", 500, "classification: records in the rolling accuracy",
                          check=_at_least_one),
    "report": Key("str", "backtest-report", "folder of the report: Parquet outputs, "
                  "summary.json, report.html and its PNG plots", check=_non_empty),
}

TOP_KEYS = {
    "name": Key("str", None, "name of the pipeline, shown in logs"),
    "description": Key("str", None, "free text"),
}

TABLES: dict[str, dict[str, Key]] = {
    "source": SOURCE_KEYS,
    "decode": DECODE_KEYS,
    "model": MODEL_KEYS,
    "alerts": ALERT_KEYS,
    "drift": DRIFT_KEYS,
    "outputs": OUTPUTS_KEYS,
    "checkpoint": CHECKPOINT_KEYS,
    "run": RUN_KEYS,
    "scaleout": SCALEOUT_KEYS,
    "observability": OBSERVABILITY_KEYS,
    "backtest": BACKTEST_KEYS,
}
"""Spec tables and their keys (``model`` also takes the estimator's parameters)."""


def estimator_class(task: str) -> type:
    """The estimator class of a task (``anomaly`` or ``classification``)."""
    import streamal

    return getattr(streamal, TASKS[task])


_ANNOTATION_KINDS = (("tuple", "int_list"), ("bool", "bool"), ("int", "int"), ("float", "float"),
                     ("str", "str"))


def preset_class(name: str) -> type[Preset]:
    """The estimator class of a preset (``series`` or ``sensor``)."""
    from streamal.estimators.presets import PRESETS

    return PRESETS[name]


def model_keys(task: str, preset: str | None = None) -> dict[str, Key]:
    """Keys of the ``model`` table for ``task``: the runtime's and the estimator's parameters
    (the preset's, with a ``preset``).

    Examples
    --------
    >>> from streamal import ActivationDetector
    >>> keys = model_keys("anomaly")
    >>> keys["hidden"].kind, keys["lr"].kind, keys["seed"].kind, keys["device"].kind
    ('int_list', 'float', 'int', 'str')
    >>> keys["lr"].default == ActivationDetector().lr
    True
    >>> sorted(set(model_keys("anomaly", "series")) - set(MODEL_KEYS))
    ['probation', 'seed']

    """
    cls = estimator_class(task) if preset is None else preset_class(preset)
    keys = dict(MODEL_KEYS)
    for name, param in inspect.signature(cls).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = str(param.annotation)
        kind = next((k for word, k in _ANNOTATION_KINDS if re.search(rf"\b{word}\b", annotation)),
                    "any")
        default = None if param.default is inspect.Parameter.empty else param.default
        keys[name] = Key(kind, default, f"{cls.__name__} parameter",
                         check=_PARAM_CHECKS.get(name))
    return keys


def _activation(value: Any) -> str | None:
    from streamal.activations import ACTIVATIONS

    return None if value in ACTIVATIONS else f"must be one of {sorted(ACTIVATIONS)}"


def _scaling(value: Any) -> str | None:
    from streamal.estimators.classifier import SCALINGS

    return None if value in SCALINGS else f"must be one of {list(SCALINGS)}"


def _device(value: Any) -> str | None:
    ok = re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value)
    return None if ok else "must be 'auto', 'cpu', 'cuda' or 'cuda:N'"


def _sizes(value: Any) -> str | None:
    return None if value and all(n >= 1 for n in value) else "must be a non-empty list of " \
        "positive layer sizes"


_PARAM_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "hidden": _sizes,
    "activation": _activation,
    "scaling": _scaling,
    "device": _device,
    "lr": _positive,
    "batch_size": _at_least_one,
    "bias": _positive,
    "max_features": _at_least_one,
    "label_repeat": _at_least_one,
    "temperature": _positive,
    "probation": lambda value: None if value >= 4 else "must be at least 4",
    "warm_up": _at_least_one,
}
