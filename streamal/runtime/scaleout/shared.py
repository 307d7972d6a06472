"""``shared`` scale-out: one model on every worker, synchronised each micro-batch.

The loop of every worker, one sync step per turn, all in lockstep:

1. take up to ``step_records`` records of the partitions this worker owns from what
   it polled (``poll_records`` at a time, only once all are taken, so a rebalance never
   finds records polled and not processed; without waiting while the group is busy,
   up to ``poll_timeout`` while it is idle);
2. decode, score or predict them with the model as it stands before the step,
   emit the outputs, feed the alert policy and drift monitor (this worker's own);
3. :meth:`streamal.distributed.SharedLearner.step`: learn this worker's
   micro-batch together with everyone's, and exchange a note: positions reached,
   whether a checkpoint is due, a stop was asked, the source is at its end;
4. when any worker asks, all checkpoint (flush sinks → rank 0 writes model,
   positions and every rank's state → all commit offsets); when any worker is
   stopped, or all are at the end, all stop after a final checkpoint.

Every worker knows every partition's position after every step, so a partition
that changes hands in a rebalance is sought to where the model has learnt up
to. A worker that dies makes the others' next collective fail: they raise
:class:`~streamal.distributed.SyncError` and exit without a checkpoint, and
all resume from the last global one when restarted.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch.distributed as dist

from streamal.checkpoint import CheckpointError, CheckpointStore
from streamal.connectors.base import Record, Sink, Source, next_positions
from streamal.distributed import Collective, SharedLearner, SyncError, init_from_env
from streamal.drift import DriftMonitor
from streamal.estimators.base import resolve_device
from streamal.estimators.classifier import validate_label
from streamal.runtime import checkpointing
from streamal.runtime.alerts import AlertPolicy
from streamal.runtime.decode import RecordDecoder
from streamal.runtime.observer import Observer
from streamal.runtime.outputs import Emitter, RunSummary
from streamal.runtime.process import Lane, Processor, Row
from streamal.runtime.scaleout.common import StopSignals

__all__ = ["SharedWorker"]

logger = logging.getLogger(__name__)

STATE_KIND = "streamal.scaleout.shared"
STATE_VERSION = 1
MODEL_PREFIX = "model/"


class _Collecting(Processor):
    """A processor that judges and emits, but hands the rows to learn to the sync step."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._frames: list[pd.DataFrame] = []
        self._labels: list[Any] = []

    def _learn(self, lane: Lane, rows: list[Row], columns: list[str] | None,
               values: np.ndarray | None) -> None:
        keep = list(range(len(rows)))
        if self.task == "classification":
            good = []
            for i in keep:
                try:
                    self._labels.append(validate_label(rows[i][1].label))
                    good.append(i)
                except ValueError as exc:  # routed to the dead letter
                    self._dead(rows[i][0], "learn", f"{type(exc).__name__}: {exc}", rows[i][1])
            keep = good
        if keep:
            self._frames.append(pd.DataFrame([rows[i][1].features for i in keep])
                                if columns is None or values is None
                                else pd.DataFrame(values[keep], columns=columns))
            self.summary.learnt += len(keep)

    def take(self) -> tuple[pd.DataFrame, list[Any] | None]:
        """The rows collected since the last call (and their labels, when classifying)."""
        frames, labels = self._frames, self._labels
        self._frames, self._labels = [], []
        X = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return X, (labels if self.task == "classification" else None)


class SharedWorker:
    """A scale-out worker holding one copy of the model all workers share.

    Takes the arguments of :class:`~streamal.runtime.Pipeline` (``per_key`` must
    be ``None``) and:

    Parameters
    ----------
    backend
        ``"auto"`` (NCCL when the model's device is CUDA, else gloo), ``"gloo"`` or
        ``"nccl"``.
    delta_scale
        ``"sum"`` or ``"mean"`` (see :mod:`streamal.distributed`).
    step_records
        Records each worker learns per sync step (default: the model's ``batch_size``).
    sync_timeout
        Seconds to wait for the other workers (rendezvous, each step).
    check_every
        Compare every worker's state every that many steps (0: never).

    The world comes from ``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``.
    """

    def __init__(
        self,
        source: Source,
        sinks: dict[str, Sink],
        model_factory: Any,
        decoder: RecordDecoder,
        task: str = "anomaly",
        alerts: AlertPolicy | None = None,
        drift: DriftMonitor | None = None,
        per_key: str | None = None,
        max_models: int = 1000,
        checkpoint_dir: Any = None,
        checkpoint_every_records: int | None = 10_000,
        checkpoint_every_seconds: float | None = 60.0,
        keep_checkpoints: int = 3,
        poll_records: int = 500,
        poll_timeout: float = 1.0,
        backend: str = "auto",
        delta_scale: str = "sum",
        step_records: int | None = None,
        sync_timeout: float = 120.0,
        check_every: int = 0,
        max_classes: int = 1000,
        observer: Observer | None = None,
    ):
        self.source = source
        self.sinks = sinks
        self.model_factory = model_factory
        self.decoder = decoder
        self.task = task
        self.alerts = alerts
        self.drift = drift
        self.per_key = per_key
        self.max_models = max_models
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every_records = checkpoint_every_records
        self.checkpoint_every_seconds = checkpoint_every_seconds
        self.keep_checkpoints = keep_checkpoints
        self.poll_records = poll_records
        self.poll_timeout = poll_timeout
        self.backend = backend
        self.delta_scale = delta_scale
        self.step_records = step_records
        self.sync_timeout = sync_timeout
        self.check_every = check_every
        self.max_classes = max_classes
        self.observer = observer
        self._stop = threading.Event()
        self._schedule = checkpointing.CheckpointSchedule(checkpoint_every_records,
                                                          checkpoint_every_seconds)

    # ---- state ----------------------------------------------------------------------------------
    def _ensure(self) -> None:
        if getattr(self, "_learner", None) is not None:
            return
        if self.per_key is not None:
            raise ValueError("shared mode has one model for all workers: per-key models "
                             "need the per_key or per_partition mode")
        if not hasattr(self.source, "set_rebalance_callbacks"):
            raise TypeError(f"scale-out needs a source with rebalance callbacks (KafkaSource), "
                            f"not a {type(self.source).__name__}")
        model = self.model_factory()
        backend = self.backend
        if backend == "auto":
            backend = "nccl" if resolve_device(model.device).type == "cuda" else "gloo"
        self._owns_group = not dist.is_initialized()
        init_from_env(backend, self.sync_timeout)
        collective = Collective()
        self.rank, self.world_size = collective.rank, collective.world_size
        self._summary = RunSummary()
        self._emitter = Emitter(self.sinks)
        self._processor = _Collecting(self.decoder, lambda: model, self.task, self.alerts,
                                      self.drift, None, 1, self._emitter, self._summary)
        self._processor.max_classes = self.max_classes
        self._observer = self.observer if self.observer is not None else Observer()
        self._processor.observer = self._observer
        self._resumed_at: float | None = None
        self._lane = self._processor.new_lane(None, model)
        self._spec = {**checkpointing.spec_of(self._processor, model), "scaleout": "shared"}
        self._store = None
        if self.checkpoint_dir is not None and self.rank == 0:
            self._store = CheckpointStore(self.checkpoint_dir, keep=self.keep_checkpoints)
        self._positions: dict[str, int] = {}  # every partition: next offset the model has learnt
        self._owned: set[str] = set()
        self._buffer: collections.deque[Record] = collections.deque()  # polled, not yet taken
        self._learner = SharedLearner(model, collective, self.delta_scale, self.check_every)
        self._restore()
        self.source.set_rebalance_callbacks(self._assign, self._revoke)
        logger.info("shared model: rank %d of %d (%s), %s", self.rank, self.world_size, backend,
                    f"resumed from {self._summary.resumed_from}" if self._summary.resumed_from
                    else "fresh model")

    def _restore(self) -> None:
        """Rank 0 reads the newest global checkpoint and broadcasts it; all seek to it."""
        model, c = self._learner.model, self._learner.collective
        info = None
        if self._store is not None:
            found = self._store.load_latest()
            if found is not None:
                arrays, meta, path = found
                self._check(meta, str(path))
                own = {k[len(MODEL_PREFIX):]: v for k, v in arrays.items()
                       if k.startswith(MODEL_PREFIX)}
                model._import_state(own, meta["model"])
                info = {"path": str(path), "positions": meta["positions"], "ranks": meta["ranks"],
                        "written_at": meta["written_at"]}
        received = c.broadcast_bytes(json.dumps(info).encode() if c.rank == 0 else None)
        info = json.loads(received) if received else None
        self._learner.broadcast()
        if not info:
            return
        self._positions = {str(k): int(v) for k, v in info["positions"].items()}
        self._summary.resumed_from = info["path"]
        self._resumed_at = float(info["written_at"])
        mine = info["ranks"][self.rank] if self.rank < len(info["ranks"]) else None
        if mine is not None:
            if self._lane.alerts is not None and mine["alerts"] is not None:
                self._lane.alerts.load_state(mine["alerts"])
            if self._lane.drift is not None and mine["drift"] is not None:
                self._lane.drift.load_state(mine["drift"])
            self._summary.load_counters(mine["counters"])
        self._summary.models = 1
        self.source.seek(self._positions)

    def _check(self, meta: dict[str, Any], where: str) -> None:
        if meta.get("kind") != STATE_KIND or meta.get("version") != STATE_VERSION:
            raise CheckpointError(f"{where}: not a shared-model checkpoint of version "
                                  f"{STATE_VERSION}")
        if meta.get("fingerprint") != checkpointing.fingerprint(self._spec):
            raise CheckpointError(f"{where}: written by a different pipeline spec; restore that "
                                  "spec or use a new checkpoint directory")

    @property
    def models(self) -> dict[str | None, Any]:
        """The shared model (under ``None``)."""
        self._ensure()
        return {None: self._learner.model}

    @property
    def counters(self) -> dict[str, Any]:
        """This worker's counters."""
        self._ensure()
        return self._summary.counters()

    @property
    def learner(self) -> SharedLearner:
        """The :class:`~streamal.distributed.SharedLearner` (steps, checks, digest)."""
        self._ensure()
        return self._learner

    # ---- rebalance ------------------------------------------------------------------------------
    def _assign(self, streams: list[str]) -> dict[str, int]:
        self._owned.update(streams)
        logger.info("partitions held here now: %s", ", ".join(sorted(self._owned)) or "none")
        return {s: self._positions[s] for s in streams if s in self._positions}

    def _revoke(self, streams: list[str]) -> None:
        self._owned.difference_update(streams)

    # ---- checkpoint -----------------------------------------------------------------------------
    def _checkpoint(self) -> None:
        """Collective: flush sinks → rank 0 writes the global state → all commit offsets."""
        self._summary.checkpoints += 1
        started = time.monotonic()
        try:
            self._emitter.flush()
        except Exception as exc:  # the others' next collective fails: all restart
            self._observer.checkpoint(time.monotonic() - started, exc)
            raise
        lane = self._lane
        mine = {"alerts": None if lane.alerts is None else lane.alerts.export_state(),
                "drift": None if lane.drift is None else lane.drift.export_state(),
                "counters": self._summary.counters()}
        with _peers(self.rank):
            ranks = self._learner.collective.gather_json(mine)
        if self._store is not None:
            model_arrays, model_meta = self._learner.model._export_state()
            arrays = {MODEL_PREFIX + k: v for k, v in model_arrays.items()}
            meta = {"kind": STATE_KIND, "version": STATE_VERSION, "spec": self._spec,
                    "fingerprint": checkpointing.fingerprint(self._spec),
                    "positions": dict(self._positions), "world_size": self.world_size,
                    "steps": self._learner.steps, "model": model_meta, "ranks": ranks,
                    "written_at": time.time()}
            self._store.save(arrays, meta)
        with _peers(self.rank):
            self._learner.collective.barrier()  # the state is durable before any offset moves
        self._observer.checkpoint(time.monotonic() - started, None)
        owned = {s: p for s, p in self._positions.items() if s in self._owned}
        if owned:
            self.source.commit(owned)
        self._schedule.mark()

    # ---- the loop -------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop every worker after the current step, with a final checkpoint."""
        self._stop.set()

    def run(self, max_records: int | None = None,
            stop: threading.Event | None = None) -> RunSummary:
        """Take part in sync steps until any worker stops or every worker's source ends."""
        started = time.monotonic()
        self._ensure()
        self._schedule.mark()
        step_records = self.step_records or int(self._learner.model.batch_size)
        done, since, busy, why = 0, 0, True, None
        self._observer.started(self._summary, self._resumed_at)
        lag = getattr(self.source, "lag", None)
        with StopSignals(self._stop) as signals:
            try:
                while True:
                    self._observer.beat()
                    stopping = self._stop.is_set() or (stop is not None and stop.is_set()) \
                        or (max_records is not None and done >= max_records)
                    want = step_records if max_records is None \
                        else min(step_records, max_records - done)
                    records = [] if stopping or want <= 0 else self._take(want, busy)
                    reached: dict[str, int] = {}
                    if records:
                        batch_started = time.perf_counter()
                        self._processor.process(records)
                        self._observer.batch(len(records), time.perf_counter() - batch_started)
                        done += len(records)
                        since += len(records)
                        reached = next_positions(records)
                        self._positions.update(reached)
                    X, y = self._processor.take()
                    note = {"pos": reached, "stop": bool(stopping),
                            "end": self.source.exhausted and not self._buffer,
                            "due": self._schedule.due(since)}
                    notes = self._sync(X, y, note)
                    for other in notes:
                        self._positions.update(other["pos"])
                    busy = any(other["pos"] for other in notes)
                    if lag is not None:
                        self._observer.lag(lag())
                    if any(other["stop"] for other in notes):
                        why = signals.why or ("max_records" if max_records is not None
                                              and done >= max_records else "stop")
                    elif all(other["end"] for other in notes):
                        why = "exhausted"
                    if why is not None or any(other["due"] for other in notes):
                        self._checkpoint()
                        since = 0
                    if why is not None:
                        break
                with _peers(self.rank):
                    digest = self._learner.verify()
                logger.info("shared model: %d sync steps, %d checks of identical state, "
                            "state digest %s", self._learner.steps, self._learner.checks, digest)
            finally:
                self._stop.clear()
                self._observer.stopped(self._summary)
                if self._owns_group and dist.is_initialized():
                    dist.destroy_process_group()
        self.source.close()
        summary = RunSummary(**{**self._summary.__dict__})
        summary.dead_lettered = dict(self._summary.dead_lettered)
        summary.records_this_run = done
        summary.positions = dict(self._positions)
        summary.stopped_by = why
        summary.seconds = time.monotonic() - started
        return summary

    def _take(self, n: int, busy: bool) -> list[Record]:
        """Up to ``n`` records; polls (and so meets rebalances) only with an empty buffer."""
        if not self._buffer:
            self._buffer.extend(self.source.poll(self.poll_records,
                                                 0.0 if busy else self.poll_timeout))
        return [self._buffer.popleft() for _ in range(min(n, len(self._buffer)))]

    def _sync(self, X: pd.DataFrame, y: Sequence[Any] | None, note: Any) -> list[Any]:
        with _peers(self.rank):
            return self._learner.step(X, y, note=note)


@contextlib.contextmanager
def _peers(rank: int) -> Iterator[None]:
    """Turn a failed collective (a peer gone or stalled) into a :class:`SyncError`."""
    try:
        yield
    except SyncError:
        raise
    except RuntimeError as exc:  # gloo and NCCL raise RuntimeError subclasses
        raise SyncError(f"rank {rank}: a sync step failed ({exc}); another worker is gone or "
                        "stalled. Restart every worker: they resume from the last "
                        "checkpoint") from exc
