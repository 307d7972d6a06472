"""The live loop that joins a source, a model and sinks.

Per micro-batch polled from the source: decode → validate → score/predict
(before learning: prequential) → emit → learn → drift update → checkpoint when
due (see :mod:`streamal.runtime.process` and :mod:`streamal.runtime.checkpointing`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from streamal.connectors.base import Sink, Source, next_positions
from streamal.drift import DriftMonitor
from streamal.runtime import checkpointing
from streamal.runtime.alerts import AlertPolicy
from streamal.runtime.decode import RecordDecoder
from streamal.runtime.observer import Observer
from streamal.runtime.outputs import Emitter, RunSummary
from streamal.runtime.process import Processor

__all__ = ["Pipeline"]

logger = logging.getLogger(__name__)
TASKS = ("anomaly", "classification")


class Pipeline:
    """Score or classify a stream record by record, learn from it, checkpoint, resume.

    Parameters
    ----------
    source
        A :class:`~streamal.connectors.Source`.
    sinks
        Output name → :class:`~streamal.connectors.Sink`, names among
        ``"scores"``, ``"predictions"``, ``"alerts"``, ``"drift"`` and
        ``"dead_letter"``; an absent name means that output is not produced.
    model_factory
        Builds a fresh estimator (an ``ActivationDetector`` for ``"anomaly"``,
        an ``ActivationClassifier`` for ``"classification"``); called once per
        model.
    decoder
        A :class:`~streamal.runtime.RecordDecoder`.
    task
        ``"anomaly"`` (scores, alerts, drift on the score stream) or
        ``"classification"`` (predictions; drift on the 0/1 error stream of
        labelled records; unlabelled records are learnt without a label).
    alerts
        An alert policy (:class:`~streamal.runtime.QuantileThreshold`,
        :class:`~streamal.runtime.FixedThreshold`), anomaly task only; cloned
        per model.
    drift
        A :class:`~streamal.drift.DriftMonitor`, cloned per model.
    per_key
        Record field whose value (text or integer, compared as text) picks the
        model: one model per value, created on first sight.
    max_models
        Cap on per-key models; records of further keys go to the dead letter.
    max_classes
        Cap on the classes a classifier learns (each one grows its input);
        records labelled with a further class go to the dead letter.
    checkpoint_dir
        Directory of the checkpoints; ``None`` keeps no state (sinks are still
        flushed and positions committed on the checkpoint schedule).
    checkpoint_every_records, checkpoint_every_seconds
        When a checkpoint is due; one is also taken on stop and at the end of a
        finite source.
    keep_checkpoints
        Valid checkpoints kept.
    poll_records
        Records per micro-batch (at most).
    poll_timeout
        Seconds one poll may wait; also bounds how long a stop request waits.
    observer
        An :class:`~streamal.runtime.Observer` told about loop turns, batches,
        model-call timings, lag and checkpoints (metrics and health, see
        :mod:`streamal.observability`); it may also be set before :meth:`run`.

    Examples
    --------
    >>> import random
    >>> from streamal import ActivationDetector
    >>> from streamal.connectors import MemorySink, MemorySource
    >>> rng = random.Random(0)
    >>> rows = [{"a": rng.gauss(0, 1), "b": rng.gauss(5, 1)} for _ in range(300)]
    >>> rows += [{"a": 40.0, "b": -30.0}, b"not json"]
    >>> scores, dead = MemorySink(), MemorySink()
    >>> pipe = Pipeline(MemorySource(rows), {"scores": scores, "dead_letter": dead},
    ...                 lambda: ActivationDetector(seed=0), RecordDecoder())
    >>> summary = pipe.run()
    >>> summary.scored, summary.dead_lettered["decode"], summary.stopped_by
    (301, 1, 'exhausted')
    >>> scores.records[0]["score"], scores.records[-1]["score"] > 0.9
    (1.0, True)
    """

    def __init__(
        self,
        source: Source,
        sinks: Mapping[str, Sink],
        model_factory: Callable[[], Any],
        decoder: RecordDecoder,
        task: str = "anomaly",
        alerts: AlertPolicy | None = None,
        drift: DriftMonitor | None = None,
        per_key: str | None = None,
        max_models: int = 1000,
        max_classes: int = 1000,
        checkpoint_dir: Any = None,
        checkpoint_every_records: int | None = 10_000,
        checkpoint_every_seconds: float | None = 60.0,
        keep_checkpoints: int = 3,
        poll_records: int = 500,
        poll_timeout: float = 1.0,
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
        self.max_classes = max_classes
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every_records = checkpoint_every_records
        self.checkpoint_every_seconds = checkpoint_every_seconds
        self.keep_checkpoints = keep_checkpoints
        self.poll_records = poll_records
        self.poll_timeout = poll_timeout
        self.observer = observer
        self._stop = threading.Event()

    # ---- state ----------------------------------------------------------------------------------
    def _ensure(self) -> None:
        if getattr(self, "_processor", None) is not None:
            return
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.alerts is not None and self.task != "anomaly":
            raise ValueError("alerts apply to anomaly scores: use them with task='anomaly'")
        if self.poll_records < 1 or self.max_models < 1 or self.max_classes < 1:
            raise ValueError("poll_records, max_models and max_classes must be at least 1")
        self._summary = RunSummary()
        self._emitter = Emitter(self.sinks)
        self._processor = Processor(self.decoder, self.model_factory, self.task, self.alerts,
                                    self.drift, self.per_key, self.max_models, self._emitter,
                                    self._summary)
        self._processor.max_classes = self.max_classes
        self._prototype = self.model_factory()
        self._spec = checkpointing.spec_of(self._processor, self._prototype)
        self._checkpointer = checkpointing.Checkpointer(
            self.checkpoint_dir, self.keep_checkpoints, self.checkpoint_every_records,
            self.checkpoint_every_seconds)
        self._positions: dict[str, int] = {}
        self._since_checkpoint = 0
        self._resumed_at: float | None = None
        self._restore()

    def _restore(self) -> None:
        found = self._checkpointer.load()
        if found is None:
            return
        arrays, meta, path = found
        self._positions = checkpointing.import_state(
            self._processor, self._prototype, self._spec, arrays, meta, self._summary, path)
        self.source.seek(self._positions)
        self._summary.resumed_from = path
        self._resumed_at = meta.get("written_at")
        logger.info("resumed from %s at %s", path, self._positions)

    @property
    def models(self) -> dict[str | None, Any]:
        """Model per per-key value (``None`` when there is one model)."""
        self._ensure()
        return {key: lane.model for key, lane in self._processor.lanes.items()}

    @property
    def counters(self) -> dict[str, Any]:
        """The live counters, as a dict."""
        self._ensure()
        return self._summary.counters()

    # ---- control --------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the current micro-batch, checkpoint, and return from :meth:`run`.

        Thread-safe; a request made before :meth:`run` starts stops it at once.
        """
        self._stop.set()

    def _checkpoint(self) -> BaseException | None:
        """Commit; a retryable failure is returned (and retried later), anything else raised."""
        self._summary.checkpoints += 1
        started = time.monotonic()
        error = self._checkpointer.try_commit(
            self._emitter, self.source, self._positions,
            lambda: checkpointing.export_state(self._processor, self._spec, self._positions,
                                               self._summary))
        self._observer.checkpoint(time.monotonic() - started, error)
        if error is not None:
            self._summary.checkpoints -= 1
            return error
        self._since_checkpoint = 0
        return None

    def _final_checkpoint(self, patient: bool, stopping: Callable[[], bool]) -> None:
        """The checkpoint at the end of a run; ``patient``: retry until it works or a stop."""
        while (error := self._checkpoint()) is not None:
            if not patient or stopping():
                raise error
            self._wait(self._checkpointer.wait_hint(), stopping)
            self._observer.beat()

    def _wait(self, seconds: float, stopping: Callable[[], bool]) -> None:
        """Sleep up to ``seconds``, waking early on a stop request."""
        deadline = time.monotonic() + seconds
        while not stopping() and (left := deadline - time.monotonic()) > 0:
            self._stop.wait(min(left, 0.1))

    def run(self, max_records: int | None = None,
            stop: threading.Event | None = None) -> RunSummary:
        """Process records until the source is exhausted, ``max_records`` are done, or a stop.

        The first call resumes from the newest valid checkpoint (models, alert
        and drift state, counters; the source is sought to the saved positions).
        Called in the main thread, SIGTERM and SIGINT request a stop for the
        duration of the call. Any exception ends the run *without* a final
        checkpoint, so the next run resumes from the last consistent one.

        A checkpoint that fails because a sink cannot deliver or the
        checkpoint directory cannot be written is retried with backoff (see
        :mod:`streamal.runtime.checkpointing`); while a sink fails no new
        records are taken. The final checkpoint of a stop request is tried
        once (its error is raised); that of an exhausted source or of
        ``max_records`` is retried until it succeeds or a stop is requested.
        """
        started = time.monotonic()
        self._ensure()
        self._observer = self.observer if self.observer is not None else Observer()
        self._processor.observer = self._observer
        self._observer.started(self._summary, self._resumed_at)

        def stopping() -> bool:
            return self._stop.is_set() or (stop is not None and stop.is_set())

        stopped_by: dict[str, str | None] = {"why": None}
        previous = self._install_signals(stopped_by)
        done = 0
        try:
            while True:
                self._observer.beat()
                if stopping():
                    stopped_by["why"] = stopped_by["why"] or "stop"
                    break
                if self._checkpointer.blocked:  # undelivered outputs: retry, take nothing new
                    if self._checkpointer.due(self._since_checkpoint):
                        self._checkpoint()
                    else:
                        self._wait(min(self._checkpointer.wait_hint(), self.poll_timeout),
                                   stopping)
                    continue
                want = self.poll_records
                if max_records is not None:
                    want = min(want, max_records - done)
                    if want <= 0:
                        stopped_by["why"] = "max_records"
                        break
                records = self.source.poll(want, self.poll_timeout)
                if records:
                    batch_started = time.perf_counter()
                    self._processor.process(records)
                    self._observer.batch(len(records), time.perf_counter() - batch_started)
                    done += len(records)
                    self._since_checkpoint += len(records)
                    for stream, offset in next_positions(records).items():
                        self._positions[stream] = max(offset, self._positions.get(stream, 0))
                lag = getattr(self.source, "lag", None)
                if lag is not None:
                    self._observer.lag(lag())
                if self.source.exhausted:
                    stopped_by["why"] = "exhausted"
                    break
                if self._checkpointer.due(self._since_checkpoint):
                    self._checkpoint()
            if self._since_checkpoint > 0:
                self._final_checkpoint(stopped_by["why"] in ("exhausted", "max_records"),
                                       stopping)
            else:
                self._emitter.flush()
        finally:
            self._restore_signals(previous)
            self._stop.clear()
            self._observer.stopped(self._summary)
        summary = RunSummary(**{**self._summary.__dict__})
        summary.dead_lettered = dict(self._summary.dead_lettered)
        summary.records_this_run = done
        summary.positions = dict(self._positions)
        summary.stopped_by = stopped_by["why"]
        summary.seconds = time.monotonic() - started
        return summary

    def _install_signals(self, stopped_by: dict[str, Any]) -> dict[Any, Any] | None:
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum: int, frame: Any) -> None:
            stopped_by["why"] = "signal"
            self._stop.set()

        previous: dict[Any, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, handler)
        return previous

    @staticmethod
    def _restore_signals(previous: dict[Any, Any] | None) -> None:
        for signum, old in (previous or {}).items():
            signal.signal(signum, old)
