"""``per_partition`` / ``per_key`` scale-out: independent models that move with their partitions.

Each partition a worker owns is a :class:`_Task`: its own
:class:`~streamal.runtime.process.Processor` (one model, or one per key), its
counters, its position and its :class:`~streamal.checkpoint.CheckpointStore`
(``<checkpoint_dir>/partitions/partition-<topic>%3A<n>-*.parquet``). The
checkpoint of one partition is the single pipeline's checkpoint restricted to
that partition, written with :func:`streamal.runtime.checkpointing.export_state`.

Rebalance (Kafka calls these inside ``poll``, between micro-batches):

* revoked: flush the sinks, checkpoint every revoked partition that learnt
  something since its last checkpoint, keep the task aside;
* assigned: reuse a task kept aside if nobody checkpointed its partition since
  (the eager protocol revokes and re-assigns everything on each rebalance),
  else load the partition's newest checkpoint; seek to its position.

A worker checkpoints a partition only if the partition's newest file is the
one it loaded or wrote itself; otherwise another worker owns it now, and this
one stops with :class:`~streamal.checkpoint.CheckpointError` without writing (a
best-effort fence against a worker that lost its partitions while stalled).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from streamal.checkpoint import CheckpointError, CheckpointStore
from streamal.connectors.base import Record, Sink, Source, next_positions
from streamal.drift import DriftMonitor
from streamal.runtime import checkpointing
from streamal.runtime.alerts import AlertPolicy
from streamal.runtime.decode import RecordDecoder
from streamal.runtime.observer import Observer
from streamal.runtime.outputs import Emitter, RunSummary
from streamal.runtime.process import Processor
from streamal.runtime.scaleout.common import StopSignals, merge_summaries

__all__ = ["PartitionedWorker"]

logger = logging.getLogger(__name__)


def store_prefix(stream: str) -> str:
    """File name prefix of a partition's checkpoints: ``partition-<quoted stream>``."""
    return "partition-" + quote(stream, safe="")


class _Totals:
    """A live :class:`RunSummary` view for observers: counters of the partitions held."""

    def __init__(self, worker: PartitionedWorker) -> None:
        self._worker = worker

    def __getattr__(self, name: str) -> Any:
        held = list(getattr(self._worker, "_held", {}).values())
        return getattr(merge_summaries(t.summary for t in held), name)


@dataclass
class _Task:
    """One owned partition: its models and where it stands."""

    stream: str
    processor: Processor
    summary: RunSummary
    store: CheckpointStore | None
    position: int | None = None  # next offset to process
    sequence: int | None = None  # newest checkpoint file when this worker last read or wrote it
    since: int = 0  # records since its last checkpoint
    resumed_from: str | None = field(default=None)


class PartitionedWorker:
    """A scale-out worker whose models belong to partitions (``per_partition``, ``per_key``).

    Takes the arguments of :class:`~streamal.runtime.Pipeline`; ``source`` must be
    a :class:`~streamal.connectors.KafkaSource` (in a consumer group, or with an
    explicit assignment). ``per_key`` gives one model per key within each
    partition. The checkpoint schedule counts the records of all partitions.
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
        self.max_classes = max_classes
        self.observer = observer
        self._stop = threading.Event()

    # ---- state ----------------------------------------------------------------------------------
    def _ensure(self) -> None:
        if getattr(self, "_tasks", None) is not None:
            return
        if not hasattr(self.source, "set_rebalance_callbacks"):
            raise TypeError(f"scale-out needs a source with rebalance callbacks (KafkaSource), "
                            f"not a {type(self.source).__name__}")
        self._emitter = Emitter(self.sinks)
        self._observer = self.observer if self.observer is not None else Observer()
        self._prototype = self.model_factory()
        probe = self._processor(RunSummary())
        self._spec = {**checkpointing.spec_of(probe, self._prototype), "scaleout": "partitioned"}
        self._tasks: dict[str, _Task] = {}
        self._parked: dict[str, _Task] = {}  # revoked and checkpointed, in case they come back
        self._held: dict[str, _Task] = {}  # every task held during this run, for the summary
        self._since = 0
        self._schedule = checkpointing.CheckpointSchedule(self.checkpoint_every_records,
                                                          self.checkpoint_every_seconds)
        self.source.set_rebalance_callbacks(self._assign, self._revoke)

    def _processor(self, summary: RunSummary) -> Processor:
        processor = Processor(self.decoder, self.model_factory, self.task, self.alerts,
                              self.drift, self.per_key, self.max_models, self._emitter, summary)
        processor.max_classes = self.max_classes
        processor.observer = self._observer
        return processor

    def _store(self, stream: str) -> CheckpointStore | None:
        if self.checkpoint_dir is None:
            return None
        return CheckpointStore(Path(self.checkpoint_dir) / "partitions",
                               keep=self.keep_checkpoints, prefix=store_prefix(stream))

    @property
    def models(self) -> dict[str, dict[str | None, Any]]:
        """Per owned partition: model per per-key value (``None`` for the partition's model)."""
        self._ensure()
        return {stream: {key: lane.model for key, lane in t.processor.lanes.items()}
                for stream, t in self._tasks.items()}

    @property
    def counters(self) -> dict[str, Any]:
        """Counters summed over the partitions held during this run."""
        self._ensure()
        return merge_summaries(t.summary for t in self._held.values()).counters()

    # ---- rebalance ------------------------------------------------------------------------------
    def _load(self, stream: str) -> _Task:
        summary = RunSummary()
        task = _Task(stream, self._processor(summary), summary, self._store(stream))
        if task.store is not None:
            found = task.store.load_latest()
            task.sequence = task.store.latest_sequence
            if found is not None:
                arrays, meta, path = found
                positions = checkpointing.import_state(task.processor, self._prototype,
                                                       self._spec, arrays, meta, summary, str(path))
                task.position = positions.get(stream)
                task.resumed_from = str(path)
        logger.info("%s: now processed here, %s", stream,
                    f"resumed from {task.resumed_from} at offset {task.position}"
                    if task.resumed_from else "from the start (no checkpoint)")
        return task

    def _assign(self, streams: list[str]) -> dict[str, int]:
        positions = {}
        for stream in streams:
            task = self._tasks.get(stream) or self._parked.pop(stream, None)
            if task is not None and task.store is not None \
                    and task.store.latest_sequence != task.sequence:
                task = None  # another worker checkpointed it meanwhile: load its state
            if task is None:
                task = self._load(stream)
            self._tasks[stream] = self._held[stream] = task
            if task.position is not None:
                positions[stream] = task.position
        self._parked.clear()
        logger.info("partitions held here now: %s", ", ".join(sorted(self._tasks)) or "none")
        return positions

    def _revoke(self, streams: list[str]) -> None:
        tasks = [self._tasks.pop(s) for s in streams if s in self._tasks]
        self._checkpoint(tasks, commit=False)  # the group is rebalancing: offsets wait
        self._parked.update({t.stream: t for t in tasks})
        if tasks:
            logger.info("partitions handed back, checkpointed: %s", ", ".join(
                f"{t.stream} at {t.position}" for t in tasks))

    # ---- checkpoints ----------------------------------------------------------------------------
    def _checkpoint(self, tasks: list[_Task], commit: bool = True) -> None:
        """Flush sinks → write each changed partition's state → commit their positions."""
        started = time.monotonic()
        try:
            self._emitter.flush()
            for t in tasks:
                if t.since > 0:
                    self._save(t)
        except Exception as exc:
            self._observer.checkpoint(time.monotonic() - started, exc)
            raise
        self._observer.checkpoint(time.monotonic() - started, None)
        positions = {t.stream: t.position for t in tasks if t.position is not None}
        if positions and commit:
            self.source.commit(positions)

    def _checkpoint_all(self) -> None:
        self._checkpoint(list(self._tasks.values()))
        self._since = 0
        self._schedule.mark()

    def _save(self, t: _Task) -> None:
        assert t.position is not None
        t.summary.checkpoints += 1
        t.since = 0
        if t.store is None:
            return
        if t.store.latest_sequence != t.sequence:
            raise CheckpointError(f"{t.stream}: another worker checkpointed this partition "
                                  "since this one took it over (was this worker stalled past "
                                  "its group session?); stopping without overwriting it")
        arrays, meta = checkpointing.export_state(t.processor, self._spec,
                                                  {t.stream: t.position}, t.summary)
        t.store.save(arrays, meta)
        t.sequence = t.store.latest_sequence

    # ---- the loop -------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the current micro-batch, checkpoint every partition, and return from run."""
        self._stop.set()

    def _process(self, records: list[Record]) -> None:
        by_stream: dict[str, list[Record]] = {}
        for record in records:
            by_stream.setdefault(record.position[0], []).append(record)
        for stream, recs in by_stream.items():
            task = self._tasks.get(stream)
            if task is None:
                raise RuntimeError(f"{stream}: records arrived for a partition this worker "
                                   "was not assigned")
            task.processor.process(recs)
            task.position = max(next_positions(recs)[stream], task.position or 0)
            task.since += len(recs)
            self._since += len(recs)

    def run(self, max_records: int | None = None,
            stop: threading.Event | None = None) -> RunSummary:
        """Process the partitions this worker is given until the end, a stop or a signal.

        ``stop_at_end`` sources end once every assigned partition is read to its
        end. On return every partition held is checkpointed and the consumer
        has left the group (its partitions go to the other workers).
        """
        started = time.monotonic()
        self._ensure()
        done, why = 0, None
        self._observer.started(_Totals(self), None)
        lag = getattr(self.source, "lag", None)
        with StopSignals(self._stop) as signals:
            try:
                while True:
                    self._observer.beat()
                    if self._stop.is_set() or (stop is not None and stop.is_set()):
                        why = signals.why or "stop"
                        break
                    want = self.poll_records
                    if max_records is not None:
                        want = min(want, max_records - done)
                        if want <= 0:
                            why = "max_records"
                            break
                    records = self.source.poll(want, self.poll_timeout)
                    if records:
                        batch_started = time.perf_counter()
                        self._process(records)
                        self._observer.batch(len(records), time.perf_counter() - batch_started)
                        done += len(records)
                    if lag is not None:
                        self._observer.lag(lag())
                    if self.source.exhausted:
                        why = "exhausted"
                        break
                    if self._schedule.due(self._since):
                        self._checkpoint_all()
                self._checkpoint_all()
                self.source.close()
            finally:
                self._stop.clear()
                self._observer.stopped(_Totals(self))
        summary = merge_summaries(t.summary for t in self._held.values())
        summary.records_this_run = done
        summary.positions = {s: t.position for s, t in self._held.items() if t.position is not None}
        summary.resumed_from = next((t.resumed_from for t in self._held.values()
                                     if t.resumed_from), None)
        summary.stopped_by = why
        summary.seconds = time.monotonic() - started
        return summary
