"""Pipeline checkpoints: what they hold, when they are due, and the order of a commit.

A checkpoint is one :class:`~streamal.checkpoint.CheckpointStore` file:

* arrays ``model/<key>/<name>``: every model's ``_export_state`` arrays, ``<key>``
  being the URL-quoted per-key value (``__all__`` for the single model);
* meta: ``spec`` and its ``fingerprint`` (task, per-key field, decoder, alert,
  drift and model parameters), ``positions`` (the *next* offset of every
  stream, from :func:`streamal.connectors.next_positions`), ``counters``, and per
  model its estimator meta, alert state and drift state (JSON, see
  :mod:`streamal.runtime.alerts` and :mod:`streamal.drift`).

The order of a commit, the one place that decides what is durable:

1. flush every sink — on return their delivery is confirmed (a failure raises
   and nothing below happens, so the records are processed again on resume);
2. write the checkpoint atomically;
3. ``source.commit(positions)``.

A crash between 1 and 2 or 2 and 3 repeats outputs (at-least-once, with
deterministic ids) but never changes the model twice. Checkpoints are taken
between micro-batches; a model's pending micro-batch is part of its exported
state, so the model state is consistent at any record boundary.

A commit that fails (a sink cannot deliver, the checkpoint directory is not
writable or full) keeps the previous checkpoint, which is the one a restart
trusts, and is retried with a doubling backoff. A failed *sink* also blocks the
pipeline from taking new records until a commit succeeds, so that undelivered
outputs cannot pile up in memory; a failed *store* does not (the outputs are
delivered, only the state is not saved). Each outage is logged once when it
starts and once when it ends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import numpy as np

from streamal.checkpoint import CheckpointError, CheckpointStore
from streamal.connectors.base import DeliveryError
from streamal.runtime.outputs import Emitter, RunSummary
from streamal.runtime.process import Processor

__all__ = ["CheckpointSchedule", "Checkpointer", "export_state", "fingerprint", "import_state",
           "spec_of"]

STATE_KIND = "streamal.pipeline"
STATE_VERSION = 1
RETRYABLE = (CheckpointError, DeliveryError, OSError)
"""Errors of a commit that are retried (anything else is a bug and ends the run)."""

logger = logging.getLogger(__name__)


def model_prefix(key: str | None) -> str:
    """Array-name prefix of a model: ``model/<quoted key>/`` (``__all__`` for no key)."""
    return f"model/{'__all__' if key is None else quote(key, safe='')}/"


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


def spec_of(processor: Processor, prototype: Any) -> dict[str, Any]:
    """What must not change between a checkpoint and its resume (device excepted)."""
    params = prototype._get_params() if hasattr(prototype, "_get_params") else {}
    params = {k: v for k, v in params.items() if k != "device"}
    return _jsonable({
        "task": processor.task,
        "per_key": processor.per_key,
        "decoder": processor.decoder.get_params(),
        "alerts": None if processor.alerts is None else {
            "class": type(processor.alerts).__name__, **processor.alerts.params()},
        "drift": None if processor.drift is None else processor.drift.get_params(),
        "model": {"class": type(prototype).__name__, "params": params},
    })


def fingerprint(spec: Mapping[str, Any]) -> str:
    """Short SHA-256 of the canonical JSON of ``spec``."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def export_state(processor: Processor, spec: dict[str, Any], positions: Mapping[str, int],
                 summary: RunSummary) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The pipeline's state as checkpoint arrays and meta."""
    arrays: dict[str, np.ndarray] = {}
    models = []
    for key, lane in processor.lanes.items():
        if not hasattr(lane.model, "_export_state"):
            raise TypeError(f"cannot checkpoint a {type(lane.model).__name__}: checkpoints "
                            "need a streamal estimator (with _export_state)")
        model_arrays, model_meta = lane.model._export_state()
        prefix = model_prefix(key)
        arrays.update({prefix + name: value for name, value in model_arrays.items()})
        models.append({
            "key": key, "prefix": prefix, "meta": model_meta,
            "alerts": None if lane.alerts is None else lane.alerts.export_state(),
            "drift": None if lane.drift is None else lane.drift.export_state(),
        })
    meta = {
        "kind": STATE_KIND, "version": STATE_VERSION, "spec": spec,
        "fingerprint": fingerprint(spec), "positions": dict(positions),
        "counters": summary.counters(), "models": models, "written_at": time.time(),
    }
    return arrays, meta


def import_state(processor: Processor, prototype: Any, spec: dict[str, Any],
                 arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any],
                 summary: RunSummary, where: str) -> dict[str, int]:
    """Rebuild lanes and counters from a checkpoint; return its positions.

    A file that passed the store's checks can still be hand-made: anything in
    it that does not fit (a missing or mistyped entry, an array of the wrong
    shape) raises :class:`~streamal.checkpoint.CheckpointError` naming the
    file, never another exception, and nothing in it is ever executed.
    """
    try:
        return _import_state(processor, prototype, spec, arrays, meta, summary, where)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError,
            OverflowError) as exc:
        processor.lanes.clear()
        raise CheckpointError(f"{where}: not a usable pipeline checkpoint ({type(exc).__name__}: "
                              f"{str(exc)[:200]}); remove it to resume from an older one, or "
                              "use a new checkpoint directory") from exc


def _import_state(processor: Processor, prototype: Any, spec: dict[str, Any],
                  arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any],
                  summary: RunSummary, where: str) -> dict[str, int]:
    if meta.get("kind") != STATE_KIND or meta.get("version") != STATE_VERSION:
        raise CheckpointError(f"{where}: not a pipeline checkpoint of version {STATE_VERSION}")
    if meta.get("fingerprint") != fingerprint(spec):
        saved = meta.get("spec", {})
        differ = sorted(k for k in set(spec) | set(saved) if spec.get(k) != saved.get(k))
        raise CheckpointError(f"{where}: written by a different pipeline spec (differs in: "
                              f"{', '.join(differ)}); restore that spec or use a new "
                              "checkpoint directory")
    cls = type(prototype)
    device = getattr(prototype, "device", None)
    processor.lanes.clear()
    for entry in meta["models"]:
        prefix = entry["prefix"]
        own = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        model_meta = dict(entry["meta"])
        params = {k: v for k, v in model_meta["params"].items() if k != "device"}
        if _jsonable(params) != spec["model"]["params"]:
            raise CheckpointError(f"{where}: model {entry['key']!r} has parameters that differ "
                                  "from the checkpoint's own spec (a hand-made file?)")
        if device is not None:
            model_meta["params"] = {**model_meta["params"], "device": device}
        lane = processor.new_lane(entry["key"], cls.from_state(own, model_meta))
        if lane.alerts is not None and entry["alerts"] is not None:
            lane.alerts.load_state(entry["alerts"])
        if lane.drift is not None and entry["drift"] is not None:
            lane.drift.load_state(entry["drift"])
    summary.load_counters(meta["counters"])
    summary.models = len(processor.lanes)
    return {str(k): int(v) for k, v in meta["positions"].items()}


class CheckpointSchedule:
    """When a checkpoint is due: ``every_records`` records since the last one, or
    ``every_seconds`` seconds with at least one record (``None`` disables either).

    Examples
    --------
    >>> now = [0.0]
    >>> schedule = CheckpointSchedule(100, 60.0, clock=lambda: now[0])
    >>> schedule.due(0), schedule.due(99), schedule.due(100)
    (False, False, True)
    >>> now[0] = 60.0
    >>> schedule.due(1)
    True
    >>> schedule.mark()
    >>> schedule.due(1)
    False
    """

    def __init__(self, every_records: int | None, every_seconds: float | None,
                 clock: Callable[[], float] = time.monotonic):
        self.every_records = every_records
        self.every_seconds = every_seconds
        self.clock = clock
        self.last = clock()

    def due(self, records_since: int) -> bool:
        if records_since <= 0:
            return False
        if self.every_records is not None and records_since >= self.every_records:
            return True
        return self.every_seconds is not None and self.clock() - self.last >= self.every_seconds

    def mark(self) -> None:
        """A checkpoint was just taken."""
        self.last = self.clock()


class Checkpointer(CheckpointSchedule):
    """Decides when a checkpoint is due, performs the commit in its fixed order, retries it.

    Parameters
    ----------
    directory
        Where checkpoints live; ``None``: no state is written, but sinks are
        still flushed and positions committed on the same schedule.
    keep
        Valid checkpoints to keep.
    every_records, every_seconds
        A checkpoint is due once either many records have been processed since
        the last one, or that much time has passed with at least one record
        (``None`` disables either trigger).
    retry_backoff, max_backoff
        Seconds before the first retry of a failed commit; doubled per further
        failure up to ``max_backoff``.

    Attributes
    ----------
    failures
        Consecutive failed commits (0 when the last one succeeded).
    blocked
        A sink failed to deliver: no new records until a commit succeeds.
    last_path
        The newest checkpoint this run wrote or resumed from.
    """

    def __init__(self, directory: Any, keep: int, every_records: int | None,
                 every_seconds: float | None, clock: Callable[[], float] = time.monotonic,
                 retry_backoff: float = 1.0, max_backoff: float = 30.0):
        super().__init__(every_records, every_seconds, clock)
        self.store = None if directory is None else CheckpointStore(directory, keep=keep)
        self.retry_backoff = retry_backoff
        self.max_backoff = max_backoff
        self.last_path: str | None = None
        self.failures = 0
        self.blocked = False
        self.stage = "sinks"  # the step a commit is at (names the failing one)
        self.retry_at: float | None = None
        self._failing_since: float | None = None

    def due(self, records_since: int) -> bool:
        """As the schedule's, except that a failed commit is due at its retry time."""
        if records_since > 0 and self.retry_at is not None:
            return self.clock() >= self.retry_at
        return super().due(records_since)

    def wait_hint(self) -> float:
        """Seconds until the next retry (0 when none is pending)."""
        return 0.0 if self.retry_at is None else max(0.0, self.retry_at - self.clock())

    def commit(self, emitter: Emitter, source: Any, positions: Mapping[str, int],
               state: Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]]) -> str | None:
        """Flush sinks → write ``state()`` → commit positions; return the file written.

        Raises what failed; :meth:`try_commit` is the retrying variant.
        """
        self.stage = "sinks"
        emitter.flush()
        self.stage = "store"
        path = None
        if self.store is not None:
            arrays, meta = state()
            path = str(self.store.save(arrays, meta))
            self.last_path = path
        self.stage = "source"
        source.commit(dict(positions))
        self.mark()
        return path

    def try_commit(self, emitter: Emitter, source: Any, positions: Mapping[str, int],
                   state: Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]]
                   ) -> BaseException | None:
        """:meth:`commit`, or on a retryable error schedule a retry; return that error."""
        try:
            self.commit(emitter, source, positions, state)
        except RETRYABLE as exc:
            self._failed(exc, self.stage)
            return exc
        if self.failures:
            assert self._failing_since is not None
            logger.info("checkpoint written again after %d failed attempt(s) over %.1f s: %s",
                        self.failures, self.clock() - self._failing_since, self.last_path)
        self.failures, self.blocked, self.retry_at, self._failing_since = 0, False, None, None
        return None

    def _failed(self, exc: BaseException, stage: str) -> None:
        now = self.clock()
        self.failures += 1
        self.blocked = stage == "sinks"
        backoff = min(self.max_backoff, self.retry_backoff * 2 ** (self.failures - 1))
        self.retry_at = now + backoff
        if self.failures > 1:
            logger.debug("checkpoint attempt %d failed (%s): %s", self.failures, stage, exc)
            return
        self._failing_since = now
        what = ("the outputs could not be delivered; no new records are taken until they are"
                if self.blocked else "the state could not be saved; processing goes on")
        logger.error("checkpoint failed (%s: %s): %s; the last good checkpoint %s is kept; "
                     "retrying with backoff (first in %.1f s)", type(exc).__name__, exc, what,
                     self.last_path or "(none yet)", backoff)

    def load(self) -> tuple[dict[str, np.ndarray], dict[str, Any], str] | None:
        if self.store is None:
            return None
        found = self.store.load_latest()
        if found is None:
            return None
        self.last_path = str(found[2])
        return found[0], found[1], str(found[2])
