"""The state of a detector built from pieces, as named arrays and JSON (no pickle).

Composite detectors (a :class:`~streamal.calibration.RankCalibrator` around a
:class:`~streamal.features.Lagged` window, a :class:`~streamal.seasonal.SeasonalCheck`,
several of them side by side in a :class:`~streamal.calibration.Strongest`) are
checkpointed piece by piece. Each piece has

- ``_export_state() -> (arrays, meta)``: its numbers as NumPy arrays (floats keep
  every bit), small things (counters, names) as JSON-able ``meta``;
- ``_load_state(arrays, meta)``: the same state loaded into a freshly built twin
  (same parameters), in place.

A piece that holds another one nests the child's arrays under a prefix with
:func:`export_child` and restores them with :func:`load_child`, which also takes a
streamal estimator (rebuilt with its ``from_state``), such as the
:class:`~streamal.estimators.detector.ActivationDetector` inside a preset.

Examples
--------
>>> from streamal.calibration import RankCalibrator
>>> from streamal.seasonal import Magnitude
>>> model = RankCalibrator(Magnitude(), window=10, grace=2)
>>> for v in [1.0, 3.0, 2.0]:
...     model.learn_one({"v": v})
>>> arrays, meta = export_child(model, "calibrator.")
>>> sorted(arrays), meta["seen"]
(['calibrator.recent', 'calibrator.reference'], 3)
>>> twin = load_child(RankCalibrator(Magnitude(), window=10, grace=2), arrays, meta, "calibrator.")
>>> twin.score_one({"v": 2.5}) == model.score_one({"v": 2.5})
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["export_child", "floats", "load_child"]


def floats(values: Iterable[float]) -> np.ndarray:
    """``values`` as a float64 array (exact: no rounding)."""
    return np.fromiter(values, dtype=np.float64)


def export_child(child: Any, prefix: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``child``'s state, its array names prefixed with ``prefix``; ``TypeError`` if it has none.

    Prefixes of the children of one piece must not start one another (end them with ``.``).
    """
    export = getattr(child, "_export_state", None)
    if export is None:
        raise TypeError(f"a {type(child).__name__} cannot be checkpointed: it has no "
                        "_export_state (use streamal's detectors inside a checkpointed model)")
    arrays, meta = export()
    return {prefix + name: value for name, value in arrays.items()}, meta


def load_child(child: Any, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any],
               prefix: str) -> Any:
    """``child`` with the state :func:`export_child` wrote under ``prefix``.

    A piece (with ``_load_state``) is loaded in place and returned; a streamal
    estimator is rebuilt with its ``from_state`` and the new one is returned,
    so the caller stores what this returns.
    """
    own = {name[len(prefix):]: value for name, value in arrays.items()
           if name.startswith(prefix)}
    load = getattr(child, "_load_state", None)
    if load is not None:
        load(own, meta)
        return child
    rebuild = getattr(type(child), "from_state", None)
    if rebuild is None:
        raise TypeError(f"a {type(child).__name__} cannot be restored from a checkpoint")
    return rebuild(own, meta)
