"""Pipeline specs: TOML in, a validated :class:`Spec` out.

A spec is a TOML document with the tables of :mod:`.schema`. :func:`load_spec`
reads one from a file (or a packaged spec by name), applies ``--set KEY=VALUE``
overrides, fills in defaults and checks everything at once: a problem names
its key (``model.hiden: unknown key; did you mean 'hidden'?``).

Secrets: a Kafka security setting written as ``"env:NAME"`` stays a reference
in the spec and is read from the environment only by :meth:`Spec.client_settings`,
when clients are built. :func:`repr` and :meth:`Spec.redacted` show references
but never a literal password.

Examples
--------
>>> spec = parse_spec('''
... [source]
... type = "file"
... path = "sensors.csv"
... [outputs]
... directory = "out"
... ''', overrides=["model.hidden=[8, 4]", "model.lr=0.02"])
>>> spec["model"]["hidden"], spec["model"]["lr"], spec["checkpoint"]["every_records"]
((8, 4), 0.02, 10000)
>>> try:
...     parse_spec('[source]\\ntype = "file"\\npath = "x.csv"\\n[modle]\\n')
... except SpecError as error:
...     print(error)
invalid pipeline spec:
  modle: unknown table; did you mean 'model'?
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import json
import os
import sys
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from .schema import (
    FILE_SOURCE_KEYS,
    KAFKA_SECURITY_KEYS,
    KAFKA_SOURCE_KEYS,
    OUTPUT_ENTRY_KEYS,
    OUTPUT_KINDS,
    PRESET_NAMES,
    SECRET_KEYS,
    SOURCE_KEYS,
    TABLES,
    TOP_KEYS,
    Key,
    model_keys,
    preset_class,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["Spec", "SpecError", "load_spec", "packaged_specs", "parse_override", "parse_spec"]

ENV_PREFIX = "env:"


class SpecError(ValueError):
    """A pipeline spec is invalid; :attr:`problems` lists ``(key, message)`` pairs."""

    def __init__(self, problems: Iterable[tuple[str, str]], origin: str | None = None) -> None:
        self.problems = list(problems)
        self.origin = origin
        where = f" {origin}" if origin else ""
        lines = "\n".join(f"  {key}: {message}" if key else f"  {message}"
                          for key, message in self.problems)
        super().__init__(f"invalid pipeline spec{where}:\n{lines}")


class Spec(Mapping[str, Any]):
    """A validated pipeline spec: a read-only mapping of table name to table.

    Every table of the schema is present with its defaults filled in; TOML
    arrays for ``model.hidden`` are tuples. Build a pipeline from it with
    :func:`streamal.pipelines.build_pipeline`.
    """

    def __init__(self, data: dict[str, Any], origin: str | None = None) -> None:
        self._data = data
        self.origin = origin

    def __getitem__(self, table: str) -> Any:
        return self._data[table]

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def get_path(self, dotted: str) -> Any:
        """The value at ``"table.key"`` (``None`` when unset)."""
        node: Any = self._data
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        return node

    def redacted(self) -> dict[str, Any]:
        """A deep copy safe to log: literal secrets replaced by ``"***"``."""
        return _redact(copy.deepcopy(self._data))

    def client_settings(self, table: str) -> dict[str, Any]:
        """Kafka security settings of ``source`` or ``outputs``, ``env:`` references resolved.

        Raises :class:`SpecError` naming the key and the variable when a
        referenced environment variable is not set (the value is never shown).
        """
        settings, problems = {}, []
        for name in KAFKA_SECURITY_KEYS:
            value = self._data[table].get(name)
            if isinstance(value, str) and value.startswith(ENV_PREFIX):
                variable = value[len(ENV_PREFIX):]
                if variable not in os.environ:
                    problems.append((f"{table}.{name}",
                                     f"environment variable {variable!r} is not set"))
                    continue
                value = os.environ[variable]
            if value is not None:
                settings[name] = value
        if problems:
            raise SpecError(problems, self.origin)
        return settings

    def __repr__(self) -> str:
        origin = f" from {self.origin}" if self.origin else ""
        return f"<Spec{origin} {json.dumps(self.redacted(), default=str)}>"


def _redact(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: ("***" if k in SECRET_KEYS and isinstance(v, str)
                    and not v.startswith(ENV_PREFIX) else _redact(v)) for k, v in node.items()}
    return node


# ---- loading -------------------------------------------------------------------------------
def packaged_specs() -> list[str]:
    """Names of the specs shipped in ``streamal/pipelines/specs``.

    >>> "demo" in packaged_specs()
    True
    """
    folder = resources.files("streamal.pipelines") / "specs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _read_text(source: str | os.PathLike[str]) -> tuple[str, str]:
    """Text and origin of a spec file, or of a packaged spec given by name."""
    path = Path(source)
    if path.is_file():
        return path.read_text(encoding="utf-8"), str(path)
    name = str(source)
    if name in packaged_specs():
        resource = resources.files("streamal.pipelines") / "specs" / f"{name}.toml"
        return resource.read_text(encoding="utf-8"), f"{name} (packaged)"
    raise SpecError([("", f"no spec file {name!r}; packaged specs: "
                          f"{', '.join(packaged_specs())}")])


def load_spec(source: str | os.PathLike[str], overrides: Iterable[str] = ()) -> Spec:
    """Read, override and validate a spec file (or a packaged spec such as ``"demo"``)."""
    text, origin = _read_text(source)
    return parse_spec(text, overrides, origin)


def parse_spec(text: str, overrides: Iterable[str] = (), origin: str | None = None) -> Spec:
    """Parse TOML text, apply ``KEY=VALUE`` overrides and validate; see :func:`load_spec`."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([("", f"not valid TOML: {exc}")], origin) from None
    for override in overrides:
        key, value = parse_override(override)
        _set_path(raw, key, value, origin)
    return validate(raw, origin)


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``"table.key=VALUE"``; VALUE is read as a TOML value, else as a bare string.

    >>> parse_override("model.hidden=[32,32]"), parse_override("source.topics=sensors")
    (('model.hidden', [32, 32]), ('source.topics', 'sensors'))
    >>> parse_override("model.lr=0.01"), parse_override("source.stop_at_end=true")
    (('model.lr', 0.01), ('source.stop_at_end', True))
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise SpecError([("", f"--set {text!r}: expected TABLE.KEY=VALUE")])
    value = value.strip()
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value
    if isinstance(parsed, (dt.date, dt.time)):  # a date-like bare string stays a string
        return key, value
    return key, parsed


def _set_path(raw: dict[str, Any], key: str, value: Any, origin: str | None) -> None:
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise SpecError([(where, f"--set {key}: {where} is a value, not a table")], origin)
        node = child
    node[parts[-1]] = value


# ---- validation ----------------------------------------------------------------------------
def _suggest(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate (case-insensitive), else ``""``."""
    by_lower = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"; did you mean {by_lower[match[0]]!r}?" if match else ""


def _type_name(value: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _coerce(key: Key, value: Any) -> tuple[Any, str | None]:
    """Value converted to the key's kind, or an error message."""
    kind = key.kind
    if kind == "any":
        return value, None
    if kind == "str" and isinstance(value, str):
        return value, None
    if kind == "bool" and isinstance(value, bool):
        return value, None
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value, None
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), None
    if kind == "table" and isinstance(value, dict):
        return value, None
    if kind == "strs":
        if isinstance(value, str):
            return value, None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value, None
        return value, f"must be a string or an array of strings, got {_type_name(value)}"
    if kind in ("str_list", "int_list", "partitions") and isinstance(value, list):
        ok = {"str_list": lambda v: isinstance(v, str),
              "int_list": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "partitions": lambda v: isinstance(v, (int, str)) and not isinstance(v, bool)}[kind]
        bad = [v for v in value if not ok(v)]
        if not bad:
            return (tuple(value) if kind == "int_list" else value), None
        return value, f"has an element of the wrong type: {bad[0]!r}"
    wanted = {"str": "a string", "bool": "true or false", "int": "an integer",
              "float": "a number", "table": "a table", "str_list": "an array of strings",
              "int_list": "an array of integers",
              "partitions": "an array of partition numbers or \"topic:partition\" names"}[kind]
    return value, f"must be {wanted}, got {_type_name(value)} {_short(value)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_table(name: str, given: Any, keys: Mapping[str, Key],
                 problems: list[tuple[str, str]]) -> dict[str, Any]:
    """Defaults filled in and values coerced; problems appended, naming ``name.key``."""
    if not isinstance(given, dict):
        problems.append((name, f"must be a table, got {_type_name(given)}"))
        given = {}
    out = {}
    for key, value in given.items():
        where = f"{name}.{key}"
        spec_key = keys.get(key)
        if spec_key is None:
            problems.append((where, "unknown key" + _suggest(key, keys)))
            continue
        value, error = _coerce(spec_key, value)
        if error is None and spec_key.choices and value not in spec_key.choices:
            error = f"must be one of {', '.join(map(repr, spec_key.choices))}, got {value!r}"
        if error is None and spec_key.check is not None:
            error = spec_key.check(value)
            error = None if error is None else f"{error}, got {value!r}"
        if error is not None:
            problems.append((where, error))
            continue
        out[key] = value
    for key, spec_key in keys.items():
        if key not in given:
            if spec_key.required:
                problems.append((f"{name}.{key}", "required key is missing"))
            else:
                out[key] = copy.deepcopy(spec_key.default)
    return out


def validate(raw: Mapping[str, Any], origin: str | None = None) -> Spec:
    """Check a parsed spec against the schema; raise :class:`SpecError` listing every problem."""
    problems: list[tuple[str, str]] = []
    data: dict[str, Any] = {}
    for key, value in raw.items():
        if key in TOP_KEYS:
            value, error = _coerce(TOP_KEYS[key], value)
            if error:
                problems.append((key, error))
            data[key] = value
        elif key not in TABLES:
            problems.append((key, "unknown table" + _suggest(key, [*TABLES, *TOP_KEYS])))
    for key in TOP_KEYS:
        data.setdefault(key, None)
    if "source" not in raw:
        problems.append(("source", "required table is missing"))
    present = {name: raw.get(name, {}) for name in TABLES}
    data["source"] = _check_source(raw["source"], problems) if "source" in raw else {}
    for name in ("decode", "checkpoint", "run", "observability"):
        data[name] = _check_table(name, present[name], TABLES[name], problems)
    data["model"] = _check_model(present["model"], problems)
    data["alerts"] = _check_optional(raw, "alerts", problems)
    data["drift"] = _check_optional(raw, "drift", problems)
    data["scaleout"] = _check_optional(raw, "scaleout", problems)
    data["backtest"] = _check_optional(raw, "backtest", problems)
    data["outputs"] = _check_outputs(present["outputs"], problems)
    if data["drift"] is not None and "detector" in data["drift"]:
        _check_drift(data["drift"], problems)
    if not problems:
        _check_together(data, problems)
    if problems:
        raise SpecError(problems, origin)
    return Spec(data, origin)


def _check_source(given: Any, problems: list[tuple[str, str]]) -> dict[str, Any]:
    """The source table, checked against the keys of its type."""
    kind = given.get("type") if isinstance(given, dict) else None
    if kind not in ("kafka", "file"):
        return _check_table("source", given, SOURCE_KEYS, problems)
    own, other = ((KAFKA_SOURCE_KEYS, FILE_SOURCE_KEYS) if kind == "kafka"
                  else (FILE_SOURCE_KEYS, KAFKA_SOURCE_KEYS))
    foreign = {k for k in given if k in other and k not in own}
    for key in sorted(foreign):
        problems.append((f"source.{key}", f"not a setting of a {kind} source"))
    kept = {k: v for k, v in given.items() if k not in foreign}
    source = _check_table("source", kept, {"type": SOURCE_KEYS["type"], **own}, problems)
    if kind == "kafka" and source.get("group_id") is None and source.get("partitions") is None:
        problems.append(("source.group_id", "a kafka source needs group_id (consumer group) "
                         "or partitions (explicit assignment)"))
    session, heartbeat = source.get("session_timeout_ms"), source.get("heartbeat_interval_ms")
    if isinstance(session, int) and isinstance(heartbeat, int) and heartbeat >= session:
        problems.append(("source.heartbeat_interval_ms", f"must be below session_timeout_ms "
                         f"({session}), got {heartbeat}"))
    return source


def _check_model(given: Any, problems: list[tuple[str, str]]) -> dict[str, Any]:
    task = given.get("task", "anomaly") if isinstance(given, dict) else "anomaly"
    if task not in ("anomaly", "classification"):
        return _check_table("model", given, TABLES["model"], problems)
    preset = given.get("preset") if isinstance(given, dict) else None
    if preset not in PRESET_NAMES:  # none, or an unknown one (reported as a bad value)
        return _check_table("model", given, model_keys(task), problems)
    if task != "anomaly":
        problems.append(("model.preset", "the presets are anomaly detectors: not with "
                         f"model.task = {task!r}"))
        return _check_table("model", given, model_keys(task), problems)
    keys = model_keys(task, preset)
    known = {k for p in (None, *PRESET_NAMES) for k in model_keys(task, p)}
    takes = ", ".join(k for k in keys if k not in TABLES["model"])
    foreign = [k for k in given if k not in keys and k in known]
    for key in foreign:
        problems.append((f"model.{key}", f"not a parameter of the {preset!r} preset (it takes "
                         f"{takes}; its detector's settings are fixed)"))
    return _check_table("model", {k: v for k, v in given.items() if k not in foreign}, keys,
                        problems)


def _check_optional(raw: Mapping[str, Any], name: str,
                    problems: list[tuple[str, str]]) -> dict[str, Any] | None:
    """An optional table: None when absent (the feature is off)."""
    if name not in raw:
        return None
    return _check_table(name, raw[name], TABLES[name], problems)


def _check_outputs(given: Any, problems: list[tuple[str, str]]) -> dict[str, Any]:
    outputs = _check_table("outputs", given, TABLES["outputs"], problems)
    for kind in OUTPUT_KINDS:
        entry = outputs.get(kind)
        if entry is None:
            continue
        checked = _check_table(f"outputs.{kind}", entry, OUTPUT_ENTRY_KEYS, problems)
        if (checked.get("topic") is None) == (checked.get("path") is None):
            problems.append((f"outputs.{kind}", "give exactly one of 'topic' or 'path'"))
        elif checked.get("topic") is not None and checked.get("format") is not None:
            problems.append((f"outputs.{kind}.format", "only file outputs have a format"))
        outputs[kind] = checked
    return outputs


def _check_together(data: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    """Rules that involve several keys."""
    model, decode = data["model"], data["decode"]
    if model["task"] == "classification" and decode["label_field"] is None:
        problems.append(("decode.label_field", "required when model.task = 'classification'"))
    if model["per_key"] and decode["key_field"] is None:
        problems.append(("decode.key_field", "required when model.per_key = true"))
    if model["preset"] is not None:
        _check_preset(data, problems)
    alerts = data["alerts"]
    if alerts is not None and alerts["policy"] == "fixed" and alerts["value"] is None:
        problems.append(("alerts.value", "required when alerts.policy = 'fixed'"))
    _check_output_targets(data, problems)


def _check_preset(data: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    """A preset calibrates, alerts and gates by itself: the other tables must fit it.

    ``[alerts]`` must be the fixed policy (its ``value`` defaults to the preset's
    alert level, filled in here) and must let every record be learnt.
    """
    preset = data["model"]["preset"]
    level = preset_class(preset).alert
    alerts, features = data["alerts"], data["decode"]["features"]
    if alerts is not None:
        if alerts["policy"] != "fixed":
            problems.append(("alerts.policy", f"the {preset!r} preset calibrates its scores "
                             f"itself: use policy = 'fixed' (value defaults to its alert "
                             f"level, {level})"))
        elif alerts["value"] is None:
            alerts["value"] = level
        if not alerts["learn_alerts"]:
            problems.append(("alerts.learn_alerts", f"the {preset!r} preset gates its own "
                             "learning and must see every record it scores: set it to true "
                             "(or leave it out)"))
    if preset == "series" and features is not None and len(features) != 1:
        problems.append(("decode.features", "the 'series' preset watches one numeric field: "
                         f"give exactly one, got {len(features)}"))
    scaleout = data["scaleout"]
    if scaleout is not None and scaleout["mode"] == "shared":
        problems.append(("scaleout.mode", "shared mode trains one network over the workers: "
                         "not with a preset (use per_partition or per_key)"))


def _check_drift(drift: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    import inspect

    from streamal.drift import DETECTORS

    wanted = drift["detector"].replace("_", "").lower()
    found = [(name, cls) for name, (cls, _) in DETECTORS.items()
             if name.replace("_", "").lower() == wanted]
    if not found:
        problems.append(("drift.detector", f"unknown drift detector {drift['detector']!r} "
                         f"(one of {', '.join(DETECTORS)})" + _suggest(drift["detector"],
                                                                      DETECTORS)))
        return
    cls = found[0][1]
    accepted = [p for p in inspect.signature(cls).parameters]
    for name in drift["params"]:
        if name not in accepted:
            problems.append((f"drift.params.{name}", f"not a parameter of {cls.__name__} "
                             f"(it takes {', '.join(accepted) or 'none'})"
                             + _suggest(name, accepted)))


def _check_output_targets(data: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    outputs, source = data["outputs"], data["source"]
    kafka_source = source["type"] == "kafka"
    if outputs["dead_letter"] is None and outputs["directory"] is None:
        problems.append(("outputs.dead_letter", "required: bad records must go somewhere; "
                         "give outputs.dead_letter (topic or path) or outputs.directory"))
    wants_topic = any(outputs[kind] and outputs[kind].get("topic") for kind in OUTPUT_KINDS)
    if wants_topic and outputs["bootstrap_servers"] is None and not kafka_source:
        problems.append(("outputs.bootstrap_servers", "required for topic outputs when the "
                         "source is not kafka"))
