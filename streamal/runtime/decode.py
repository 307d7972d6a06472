"""From a source record to features, label, key and event time — or a reason why not.

:class:`RecordDecoder` accepts a record whose value is JSON bytes (Kafka values,
JSONL lines) or an already parsed row (CSV and Parquet rows as dicts). Every
failure raises :class:`DecodeError` with a *stage*:

``"decode"``
    the bytes are not UTF-8, not JSON, empty, or not a JSON object;
``"validate"``
    the object does not fit: a feature that is not a number (strings, nested
    objects or arrays), NaN or ±Inf (the JSON ``NaN``/``Infinity`` literals
    included), a required feature absent, a label of the wrong type, a bad
    key, time or per-key field, or no feature at all.

Numbers are checked by :func:`streamal.encoding.validate_features` and labels
by :func:`streamal.estimators.classifier.validate_label`, the same checks the
estimators apply, so nothing the decoder accepts is refused by the model
(except a record past the model's feature cap, which the pipeline checks
against the model).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from streamal.encoding import MAX_MAGNITUDE, validate_features
from streamal.estimators.classifier import validate_label

__all__ = ["DecodeError", "Decoded", "RecordDecoder", "text_key"]

MAX_KEY_LENGTH = 256
MAX_INT_LABEL = 2**63 - 1
_HUGE = 2**1023  # an integer time beyond it is not a float


class DecodeError(ValueError):
    """A record that cannot be used; ``stage`` is ``"decode"`` or ``"validate"``.

    Examples
    --------
    >>> err = DecodeError("validate", "feature 'a' is not a number: 'x'")
    >>> err.stage, err.reason
    ('validate', "feature 'a' is not a number: 'x'")
    """

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


@dataclass(slots=True)
class Decoded:
    """A decoded record: numeric features (missing ones left out) and its context."""

    features: dict[str, float]
    label: Any = None
    key: str | None = None
    event_time: float | None = None
    group: str | None = None


def text_key(key: Any) -> str | None:
    """A record key as text: ``str`` as is, UTF-8 bytes decoded, other bytes base64."""
    if key is None or isinstance(key, str):
        return key
    if isinstance(key, (bytes, bytearray, memoryview)):
        raw = bytes(key)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw).decode("ascii")
    return str(key)


def parse_value(value: Any) -> Mapping[str, Any]:
    """A record value as a mapping: parse JSON bytes/str, pass a dict through.

    orjson parses; whatever it refuses or reads differently from :mod:`json`
    (the ``NaN``/``Infinity`` literals, numbers past ±1e308, lone surrogates,
    integers past 64 bits, which it turns into floats) is parsed again with
    :mod:`json`, so the result and every error message are those of :mod:`json`.

    Examples
    --------
    >>> parse_value(b'{"a": 1.5, "b": NaN}')
    {'a': 1.5, 'b': nan}
    >>> parse_value(b'[1]')
    Traceback (most recent call last):
    ...
    streamal.runtime.decode.DecodeError: decode: value is a JSON array, not an object
    """
    kind = type(value)
    if kind is bytes or kind is str:
        try:
            fast = orjson.loads(value)
        except orjson.JSONDecodeError:
            fast = None
        if type(fast) is dict and _plain(fast):
            return fast
    elif isinstance(value, Mapping):
        return value
    return _parse_slowly(value)


def _plain(obj: dict[str, Any]) -> bool:
    """Whether :mod:`json` would have read ``obj`` the same: no float that may be a big
    integer, nothing nested (checked shallowly; nested values are never features)."""
    for v in obj.values():
        kind = type(v)
        if kind is float:
            if not -_INT64 < v < _INT64:
                return False
        elif kind is dict or kind is list:
            return False
    return True


_INT64 = float(2**63)


def _parse_slowly(value: Any) -> Mapping[str, Any]:
    """:func:`parse_value` with the standard library, and its error messages."""
    if value is None:
        raise DecodeError("decode", "value is null (a tombstone?)")
    if isinstance(value, str):
        text = value
    else:
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("decode", f"value is not valid UTF-8: {exc}") from None
        except TypeError:
            raise DecodeError("decode", f"value is a {type(value).__name__}") from None
    if not text.strip():
        raise DecodeError("decode", "value is empty")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DecodeError("decode", f"value is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise DecodeError("decode", f"value is a JSON {_json_type(obj)}, not an object")
    return obj


def _json_type(obj: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(obj), "number")


class RecordDecoder:
    """Turn records into :class:`Decoded` features, label, key and event time.

    Parameters
    ----------
    features
        Feature fields to use; each must be present (``null`` counts as
        present and missing). ``None``: every field except the key, time,
        label, per-key and ``exclude`` fields is a feature, and must be a
        number, a boolean (0/1) or ``null`` — list non-numeric fields in
        ``exclude`` rather than have them dropped silently.
    exclude
        Fields never used as features (with ``features=None``).
    key_field
        Field giving the output key; absent or ``None``: the record's own key.
    time_field
        Field giving the event time (epoch seconds, or an ISO 8601 string;
        naive times are UTC); absent: the record's own event time.
    label_field
        Field holding the class label (``str``, ``int`` or ``bool``; ``null``
        or absent means unlabelled).

    Examples
    --------
    >>> from streamal.connectors import Record
    >>> decoder = RecordDecoder(key_field="id", label_field="y", exclude=["note"])
    >>> d = decoder.decode(Record(b'{"id": "m1", "a": 1, "b": null, "y": "ok", "note": "hi"}',
    ...                           ("t:0", 7)))
    >>> d.features, d.label, d.key
    ({'a': 1.0}, 'ok', 'm1')
    >>> decoder.decode(Record(b'{"a": "x"}', ("t:0", 8)))
    Traceback (most recent call last):
    ...
    streamal.runtime.decode.DecodeError: validate: feature 'a' is not a number: 'x'
    """

    def __init__(
        self,
        features: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        key_field: str | None = None,
        time_field: str | None = None,
        label_field: str | None = None,
    ):
        self.features = features
        self.exclude = exclude
        self.key_field = key_field
        self.time_field = time_field
        self.label_field = label_field

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments (sequences as lists)."""
        return {
            "features": None if self.features is None else list(self.features),
            "exclude": list(self.exclude),
            "key_field": self.key_field,
            "time_field": self.time_field,
            "label_field": self.label_field,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"RecordDecoder({args})"

    def decode(self, record: Any, group_field: str | None = None) -> Decoded:
        """Decode one :class:`~streamal.connectors.Record`; raise :class:`DecodeError`.

        ``group_field`` names the per-key field that picks the model; it must be
        present, a string or an integer, and is never a feature.
        """
        obj = parse_value(record.value)
        if self.features is None:
            skip = self._skipped(group_field)
            raw = {str(k): v for k, v in obj.items() if str(k) not in skip}
        else:
            absent = [f for f in self.features if f not in obj]
            if absent:
                raise DecodeError("validate", f"missing required feature(s) {absent[:5]}")
            raw = {f: obj[f] for f in self.features}
        features = _numbers(raw)
        if not features:
            raise DecodeError("validate", "the record has no feature values")
        return Decoded(
            features=features,
            label=self._label(obj),
            key=self._key(obj, record),
            event_time=self._time(obj, record),
            group=None if group_field is None else self._group(obj, group_field),
        )

    def decode_many(self, records: Sequence[Any],
                    group_field: str | None = None) -> list[Decoded | DecodeError]:
        """:meth:`decode` each record; a record that fails gives its :class:`DecodeError`.

        Without ``features``, a label field or a per-key field, the common record
        (JSON bytes whose fields are floats, or plain values in fields that are no
        features) takes a shorter path, to the same result.

        Examples
        --------
        >>> from streamal.connectors import Record
        >>> decoder = RecordDecoder(key_field="id")
        >>> out = decoder.decode_many([Record(b'{"id": "m1", "a": 1.5}', ("t:0", 0)),
        ...                            Record(b'{"a": "x"}', ("t:0", 1))])
        >>> out[0].features, out[0].key, out[1].reason
        ({'a': 1.5}, 'm1', "feature 'a' is not a number: 'x'")
        """
        skip = self._skipped(group_field)
        simple = self.features is None and self.label_field is None and group_field is None
        out: list[Decoded | DecodeError] = []
        for record in records:
            quick = _quick(record.value, skip) if simple else None
            try:
                if quick is None:
                    out.append(self.decode(record, group_field))
                else:
                    obj, features = quick
                    out.append(Decoded(features, None, self._key(obj, record),
                                       self._time(obj, record)))
            except DecodeError as exc:
                out.append(exc)
        return out

    def _skipped(self, group_field: str | None) -> frozenset[str]:
        """Fields that are never features (with ``features=None``), per per-key field."""
        cache: dict[str | None, frozenset[Any]] | None = getattr(self, "_skip", None)
        if cache is None:
            cache = {}
            self._skip = cache
        if group_field not in cache:
            context = {self.key_field, self.time_field, self.label_field, group_field} - {None}
            cache[group_field] = frozenset(context) | set(self.exclude)
        return cache[group_field]

    def _label(self, obj: Mapping[str, Any]) -> Any:
        if self.label_field is None:
            return None
        try:
            label = validate_label(obj.get(self.label_field))
        except ValueError as exc:
            raise DecodeError("validate", f"label field {self.label_field!r}: {exc}") from None
        if isinstance(label, int) and not isinstance(label, bool) and abs(label) > MAX_INT_LABEL:
            raise DecodeError("validate", f"label field {self.label_field!r}: integer label out "
                              f"of the 64-bit range ({len(str(label))} digits)")
        return label

    def _key(self, obj: Mapping[str, Any], record: Any) -> str | None:
        value = obj.get(self.key_field) if self.key_field is not None else None
        if value is None:
            key = text_key(getattr(record, "key", None))
            if key is not None and len(key) > MAX_KEY_LENGTH:
                raise DecodeError("validate", f"the record's key is {len(key)} characters long; "
                                  f"the limit is {MAX_KEY_LENGTH}")
            return key
        return _name_like(value, f"key field {self.key_field!r}")

    def _group(self, obj: Mapping[str, Any], group_field: str) -> str:
        value = obj.get(group_field)
        if value is None:
            raise DecodeError("validate", f"per-key field {group_field!r} is missing")
        return _name_like(value, f"per-key field {group_field!r}")

    def _time(self, obj: Mapping[str, Any], record: Any) -> float | None:
        value = obj.get(self.time_field) if self.time_field is not None else None
        if value is None:
            return getattr(record, "event_time", None)
        if type(value) is float or type(value) is int:  # the common case, checked below
            seconds = float(value) if -_HUGE < value < _HUGE else math.inf
            if math.isfinite(seconds):
                return seconds
        where = f"time field {self.time_field!r}"
        if isinstance(value, str):
            try:
                parsed = dt.datetime.fromisoformat(value)
            except ValueError:
                raise DecodeError("validate", f"{where} is not ISO 8601: {value!r}") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.timezone.utc)
            return parsed.timestamp()
        if isinstance(value, dt.datetime):
            return value.timestamp()
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            try:
                seconds = float(value)
            except OverflowError:
                seconds = math.inf
            if math.isfinite(seconds):
                return seconds
        raise DecodeError("validate", f"{where} must be epoch seconds or ISO 8601, got {value!r}")


def _quick(value: Any, skip: frozenset[str]) -> tuple[dict[str, Any], dict[str, float]] | None:
    """``(object, features)`` of JSON bytes whose fields are floats (within ±2⁶³, so that
    :func:`parse_value` and :func:`_numbers` take them as they are) or, in the ``skip``
    fields, anything but an object or an array; ``None`` for any other value.
    """
    if type(value) is not bytes:
        return None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict:
        return None
    features = {}
    for name, v in obj.items():
        kind = type(v)
        if kind is float:
            if not -_INT64 < v < _INT64:
                return None
            if name not in skip:
                features[name] = v
        elif name not in skip or kind is dict or kind is list:
            return None
    return (obj, features) if features else None


def _numbers(raw: dict[str, Any]) -> dict[str, float]:
    """``raw`` as validated features (see :func:`streamal.encoding.validate_features`).

    The common record, every value a float within the limits, is ``raw`` itself.
    """
    for value in raw.values():
        if type(value) is not float or not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
            break
    else:
        return raw
    for name, value in raw.items():
        if isinstance(value, (Mapping, list, tuple)):
            kind = "an object" if isinstance(value, Mapping) else "an array"
            raise DecodeError("validate", f"feature {name!r} is {kind}, not a number")
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            if abs(int(value)) > 2**1023:
                raise DecodeError("validate", f"feature {name!r} is too large: {value}")
    try:
        return validate_features(raw)
    except (ValueError, TypeError) as exc:
        raise DecodeError("validate", str(exc)) from None


def _name_like(value: Any, where: str) -> str:
    """A key or per-key value as text: strings and integers only, printable, bounded."""
    if type(value) is str and len(value) <= MAX_KEY_LENGTH and value.isprintable():
        return value
    if isinstance(value, bool) or not isinstance(value, (str, numbers.Integral)):
        raise DecodeError("validate", f"{where} must be a string or an integer, got {value!r}")
    text = str(value)
    if len(text) > MAX_KEY_LENGTH or not text.isprintable():
        raise DecodeError("validate", f"{where} must be printable and at most "
                          f"{MAX_KEY_LENGTH} characters, got {text[:40]!r}")
    return text
