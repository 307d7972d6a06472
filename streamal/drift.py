"""Drift signals on the score stream and on the 0/1 error stream of a model.

:class:`DriftMonitor` wraps one river drift detector per stream: ``"score"``
(anomaly scores, or any real-valued signal) and ``"error"`` (1 when a labelled
record was mispredicted, else 0). Binary detectors (DDM, EDDM, FHDDM, HDDM_A,
HDDM_W) watch the error stream only.

Persistence without pickle, exact on resume. A river detector's state is not a
function of a bounded window of recent inputs (ADWIN, Page-Hinkley and DDM
summarise everything since their last reset), so replaying a window would not
give the same future detections. Instead the detector's *whole* state is
exported to JSON by walking its attributes: numbers, strings, lists, tuples,
deques, dicts, ``random.Random`` (``getstate``), NumPy scalars and nested
river objects (``river.stats``/``river.drift`` classes, rebuilt with
``cls.__new__`` and their attributes set, never by calling code named in the
file). River's Rust-backed parts (ADWIN's ``AdaptiveWindowing``, the EW means
of HDDM_W) expose ``__getstate__``: their own binary serialisation (bincode,
data only), stored base64. Bound methods are rebuilt by the detector's
constructor. The state records the river version; a checkpoint from another
river version restarts the detectors (with a warning) instead of guessing.
"""

from __future__ import annotations

import base64
import collections
import importlib
import logging
import math
import random
import types
from collections.abc import Sequence
from typing import Any

import numpy as np
import river
from river import drift
from river.drift import binary

__all__ = ["DETECTORS", "DriftMonitor"]

logger = logging.getLogger(__name__)

DETECTORS: dict[str, tuple[type, bool]] = {
    "ADWIN": (drift.ADWIN, False),
    "PageHinkley": (drift.PageHinkley, False),
    "KSWIN": (drift.KSWIN, False),
    "NoDrift": (drift.NoDrift, False),
    "DDM": (binary.DDM, True),
    "EDDM": (binary.EDDM, True),
    "FHDDM": (binary.FHDDM, True),
    "HDDM_A": (binary.HDDMA, True),
    "HDDM_W": (binary.HDDMW, True),
}
"""Detector name → (river class, binary?). Names match case- and ``_``-insensitively."""

_ALLOWED_MODULES = ("river.stats.", "river.drift.", "river._river_rust.", "river.utils.")
STREAMS = ("score", "error")


def _lookup(name: str) -> tuple[str, type, bool]:
    wanted = name.replace("_", "").lower()
    for canonical, (cls, is_binary) in DETECTORS.items():
        if canonical.replace("_", "").lower() == wanted:
            return canonical, cls, is_binary
    raise ValueError(f"unknown drift detector {name!r}; choose from {sorted(DETECTORS)}")


# ---- JSON codec for river objects ---------------------------------------------------------------
def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve(name: str) -> type:
    module, _, qualname = name.partition(":")
    if not (module + ".").startswith(_ALLOWED_MODULES):
        raise ValueError(f"drift state names a class outside river's stats/drift: {name!r}")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise ValueError(f"drift state names {name!r}, which is not a class")
    return obj


def encode(value: Any) -> Any:
    """JSON-serialisable form of a river detector's attribute value (see module docs)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$t": "float", "v": repr(value)}
    if isinstance(value, np.generic):
        return {"$t": "np", "dtype": value.dtype.str, "v": encode(value.item())}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"$t": "tuple", "v": [encode(v) for v in value]}
    if isinstance(value, collections.deque):
        return {"$t": "deque", "v": [encode(v) for v in value], "maxlen": value.maxlen}
    if isinstance(value, dict):
        return {"$t": "dict", "v": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, random.Random):
        return {"$t": "random", "v": encode(value.getstate())}
    if isinstance(value, types.MethodType):
        return {"$t": "method"}
    name = _class_name(type(value))
    _resolve(name)  # refuse to write what we would refuse to read
    if hasattr(value, "__dict__"):
        return {"$t": "obj", "cls": name, "v": {k: encode(v) for k, v in vars(value).items()}}
    if hasattr(value, "__getstate__") and hasattr(value, "__getnewargs__"):
        blob = value.__getstate__()
        return {"$t": "rust", "cls": name, "args": encode(tuple(value.__getnewargs__())),
                "v": base64.b64encode(bytes(blob)).decode("ascii")}
    raise TypeError(f"cannot checkpoint a {name} in drift state")


def decode(state: Any, existing: Any = None) -> Any:
    """Inverse of :func:`encode`; river objects are restored into ``existing`` when it fits."""
    if isinstance(state, list):
        return [decode(v) for v in state]
    if not isinstance(state, dict):
        return state
    tag = state["$t"]
    if tag == "float":
        return float(state["v"])
    if tag == "np":
        return np.dtype(state["dtype"]).type(decode(state["v"]))
    if tag == "tuple":
        return tuple(decode(v) for v in state["v"])
    if tag == "deque":
        return collections.deque((decode(v) for v in state["v"]), maxlen=state["maxlen"])
    if tag == "dict":
        return {decode(k): decode(v) for k, v in state["v"]}
    if tag == "random":
        rng = random.Random()
        rng.setstate(decode(state["v"]))
        return rng
    if tag == "method":
        if existing is None:
            raise ValueError("drift state has a method the rebuilt detector lacks")
        return existing
    cls: Any = _resolve(state["cls"])
    if tag == "obj":
        obj = existing if type(existing) is cls else cls.__new__(cls)
        restore_attributes(obj, state["v"])
        return obj
    if tag == "rust":
        obj = cls(*decode(state["args"]))
        try:
            obj.__setstate__(base64.b64decode(state["v"]))
        except BaseException as exc:  # a Rust panic is a BaseException
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise ValueError(f"cannot restore {state['cls']} from drift state: {exc}") from None
        return obj
    raise ValueError(f"unknown tag {tag!r} in drift state")


def restore_attributes(obj: Any, attributes: dict[str, Any]) -> None:
    """Set every encoded attribute on ``obj``, reusing the river objects it already holds."""
    for name, value in attributes.items():
        setattr(obj, name, decode(value, getattr(obj, name, None)))


# ---- the monitor --------------------------------------------------------------------------------
class DriftMonitor:
    """River drift detectors on a model's score and error streams.

    Parameters
    ----------
    detector
        Name of the river detector (see :data:`DETECTORS`): ``"ADWIN"`` (default),
        ``"PageHinkley"``, ``"KSWIN"`` (pass ``seed`` for reproducible runs),
        ``"DDM"``, ``"EDDM"``, ``"FHDDM"``, ``"HDDM_A"``, ``"HDDM_W"``, ``"NoDrift"``.
    **params
        Passed verbatim to the detector's constructor, one detector per stream.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> monitor = DriftMonitor("ADWIN", delta=0.002)
    >>> events = []
    >>> for i in range(2000):
    ...     score = rng.gauss(0.2 if i < 1000 else 0.6, 0.05)
    ...     event = monitor.update(score, stream="score", id=f"s@{i}")
    ...     if event:
    ...         events.append(event)
    >>> first = events[0]
    >>> first["kind"], first["stream"], first["detector"], 1000 <= first["n"] < 1100
    ('drift', 'score', 'ADWIN', True)
    >>> twin = monitor.clone()
    >>> twin.load_state(monitor.export_state())
    >>> twin.update(0.6) == monitor.update(0.6)
    True
    """

    def __init__(self, detector: str = "ADWIN", **params: Any):
        self.detector = detector
        self.params = params

    def clone(self) -> DriftMonitor:
        """A fresh monitor with the same parameters and no state."""
        return DriftMonitor(self.detector, **self.params)

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments, as given."""
        return {"detector": self.detector, **self.params}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"DriftMonitor({args})"

    @property
    def streams(self) -> tuple[str, ...]:
        """The streams watched: ``("error",)`` for a binary detector, else both."""
        return ("error",) if _lookup(self.detector)[2] else STREAMS

    def watches(self, stream: str) -> bool:
        return stream in self.streams

    def _ensure(self) -> None:
        if getattr(self, "_detectors", None) is None:
            self._name, self._cls, binary = _lookup(self.detector)
            self._watched = ("error",) if binary else STREAMS
            self._detectors: dict[str, Any] = {}
            self._counts: dict[str, int] = {}
            self._detections: dict[str, int] = {}

    def _detector(self, stream: str) -> Any:
        if stream not in self._detectors:
            self._detectors[stream] = self._cls(**self.params)
            self._counts.setdefault(stream, 0)
            self._detections.setdefault(stream, 0)
        return self._detectors[stream]

    def update(self, value: float, stream: str = "score", **context: Any) -> dict[str, Any] | None:
        """Feed one value; return a drift event (``context`` fields copied in) or None.

        Values for a stream this monitor does not watch are ignored.
        """
        events = self.update_many((value,), stream)
        return {**events[0][1], **context} if events else None

    def update_many(self, values: Sequence[float],
                    stream: str = "score") -> list[tuple[int, dict[str, Any]]]:
        """Feed ``values`` in order; return ``(index, event)`` of each drift they raise.

        The same detections and state as :meth:`update` value by value.

        Examples
        --------
        >>> monitor = DriftMonitor("PageHinkley", threshold=5.0)
        >>> [(i, e["n"]) for i, e in monitor.update_many([0.0] * 50 + [9.0] * 5)]
        [(50, 51)]
        """
        self._ensure()
        if stream not in self._watched:
            return []
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
        detector = self._detector(stream)
        cast = bool if stream == "error" else float
        events = []
        for i, value in enumerate(values):
            detector.update(cast(value))
            self._counts[stream] += 1
            if detector.drift_detected:
                self._detections[stream] += 1
                events.append((i, {"kind": "drift", "stream": stream, "detector": self._name,
                                   "n": self._counts[stream]}))
        return events

    def counts(self) -> dict[str, int]:
        """Values seen per stream."""
        self._ensure()
        return dict(self._counts)

    def export_state(self) -> dict[str, Any]:
        """The detectors' full state as JSON-serialisable data (see module docs)."""
        self._ensure()
        return {
            "river": river.__version__,
            "streams": {
                s: {"n": self._counts[s], "detections": self._detections[s],
                    "detector": {k: encode(v) for k, v in vars(d).items()}}
                for s, d in self._detectors.items()
            },
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`export_state` output into this (fresh) monitor."""
        self._detectors = None  # type: ignore[assignment]
        self._ensure()
        if state.get("river") != river.__version__:
            logger.warning("drift state was written with river %s, this is river %s: the drift "
                           "detectors start afresh", state.get("river"), river.__version__)
            return
        for stream, saved in state["streams"].items():
            restore_attributes(self._detector(stream), saved["detector"])
            self._counts[stream] = int(saved["n"])
            self._detections[stream] = int(saved["detections"])
