"""Prometheus metrics and health of one pipeline, from the runtime's observer hooks.

:class:`PipelineMetrics` is an :class:`~streamal.runtime.Observer`: the
pipeline calls it once per loop turn, micro-batch, model call and checkpoint
(never per record). Counts of records by outcome are not counted twice: they
are read from the pipeline's own :class:`~streamal.runtime.RunSummary` when
Prometheus scrapes, so they match the checkpointed counters exactly (after a
resume they continue from the checkpoint's values).

Metrics (all prefixed ``streamal_``):

* ``records_in_total`` (counter): records read from the source;
* ``records_out_total{outcome}`` (counter): ``scored``, ``predicted``, ``alerted``,
  ``dead_lettered``;
* ``dead_letters_total{stage}`` (counter): ``decode``, ``validate``, ``score``, ``learn``;
* ``records_learnt_total``, ``drift_detections_total`` (counters);
* ``models`` (gauge): models (one per key with per-key models);
* ``batch_records``, ``batch_seconds`` (histograms): size of a micro-batch, and seconds to
  decode, judge, emit and learn it;
* ``score_seconds``, ``learn_seconds`` (histograms): seconds per model call (a chunk of rows);
* ``consumer_lag{stream}`` (gauge): records behind the end of each partition, from the
  high watermark of fetch responses (tansu's ``ListOffsets`` is wrong on its s3 engine);
* ``checkpoints_total`` (counter), ``checkpoint_failures_total{stage}`` (counter: ``sinks``,
  ``store``, ``source``), ``checkpoint_duration_seconds`` (histogram);
* ``checkpoint_age_seconds`` (gauge): since the newest checkpoint was written (absent before
  the first); ``unsaved_records`` (gauge): records processed since;
* ``healthy`` (gauge): 1 when ``/healthz`` answers 200.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamal.runtime.observer import Observer

__all__ = ["PipelineMetrics"]

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
CHECKPOINT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                      120.0)
OUTCOMES = {"scored": "scored", "predicted": "predicted", "alerted": "alerted"}


class PipelineMetrics(Observer):
    """Metrics (own registry) and health of one pipeline run.

    Parameters
    ----------
    max_loop_seconds
        ``/healthz`` fails when the loop has not turned for this long.
    max_unsaved_seconds
        ``/healthz`` fails when processed records have waited this long for a
        checkpoint (an idle pipeline with nothing unsaved stays healthy).
    registry
        Where the metrics live; a new :class:`~prometheus_client.CollectorRegistry`
        by default, so that several pipelines in one process do not collide.
    clock, wall_clock
        Monotonic and wall-clock time (for tests).

    Examples
    --------
    >>> from prometheus_client import generate_latest
    >>> from streamal import ActivationDetector
    >>> from streamal.connectors import MemorySource
    >>> from streamal.runtime import Pipeline, RecordDecoder
    >>> metrics = PipelineMetrics()
    >>> rows = [{"a": float(i % 7)} for i in range(100)] + [b"not json"]
    >>> _ = Pipeline(MemorySource(rows), {}, lambda: ActivationDetector(seed=0),
    ...              RecordDecoder(), observer=metrics).run()
    >>> text = generate_latest(metrics.registry).decode()
    >>> 'streamal_records_out_total{outcome="scored"} 100.0' in text
    True
    >>> 'streamal_dead_letters_total{stage="decode"} 1.0' in text
    True
    >>> metrics.health()["status"]  # the run has ended
    'stopped'
    """

    def __init__(self, max_loop_seconds: float = 120.0, max_unsaved_seconds: float = 180.0,
                 registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time):
        self.max_loop_seconds = max_loop_seconds
        self.max_unsaved_seconds = max_unsaved_seconds
        self.registry = CollectorRegistry() if registry is None else registry
        self.clock = clock
        self.wall_clock = wall_clock
        self._lock = threading.Lock()
        self._summary: Any = None
        self._running = False
        self._last_beat: float | None = None
        self._last_checkpoint_wall: float | None = None
        self._unsaved_since: float | None = None
        self._unsaved = 0
        self._consecutive_failures = 0
        self._checkpoints = 0
        self._failures: dict[str, int] = {}
        self._lag: Mapping[str, int] = {}
        self._listeners: list[Callable[[str], None]] = []
        self.batch_records = Histogram("streamal_batch_records", "Records per micro-batch.",
                                       buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram(
            "streamal_batch_seconds", "Seconds to decode, judge, emit and learn a micro-batch.",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.score_seconds = Histogram(
            "streamal_score_seconds", "Seconds per scoring / prediction call (a chunk of rows).",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.learn_seconds = Histogram(
            "streamal_learn_seconds", "Seconds per learning call (a chunk of rows).",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.checkpoint_seconds = Histogram(
            "streamal_checkpoint_duration_seconds",
            "Seconds per checkpoint commit (flush sinks, write state, commit positions).",
            buckets=CHECKPOINT_BUCKETS, registry=self.registry)
        self.registry.register(_Collected(self))

    def on_progress(self, listener: Callable[[str], None]) -> None:
        """Call ``listener("records")`` / ``listener("checkpoint")`` when I/O worked again,
        and ``listener("beat")`` at every turn of the pipeline's loop."""
        self._listeners.append(listener)

    # ---- observer hooks (the pipeline's thread) -------------------------------------------------
    def started(self, summary: Any, resumed_at: float | None) -> None:
        with self._lock:
            self._summary = summary
            self._running = True
            self._last_beat = self.clock()
            if resumed_at is not None:
                self._last_checkpoint_wall = float(resumed_at)

    def beat(self) -> None:
        self._last_beat = self.clock()
        for listener in self._listeners:
            listener("beat")

    def batch(self, records: int, seconds: float) -> None:
        self.batch_records.observe(records)
        self.batch_seconds.observe(seconds)
        if self._unsaved_since is None:
            self._unsaved_since = self.clock()
        self._unsaved += records
        for listener in self._listeners:
            listener("records")

    def timed(self, stage: str, seconds: float, records: int) -> None:
        (self.score_seconds if stage == "score" else self.learn_seconds).observe(seconds)

    def lag(self, lags: Mapping[str, int]) -> None:
        self._lag = dict(lags)

    def checkpoint(self, seconds: float, error: BaseException | None) -> None:
        self.checkpoint_seconds.observe(seconds)
        with self._lock:
            if error is None:
                self._checkpoints += 1
                self._consecutive_failures = 0
                self._last_checkpoint_wall = self.wall_clock()
                self._unsaved_since, self._unsaved = None, 0
            else:
                stage = _stage_of(error)
                self._failures[stage] = self._failures.get(stage, 0) + 1
                self._consecutive_failures += 1
        if error is None:
            for listener in self._listeners:
                listener("checkpoint")

    def stopped(self, summary: Any) -> None:
        self._running = False

    # ---- health (any thread) --------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``status`` (``ok``, ``unhealthy``, ``starting`` or ``stopped``) and why.

        ``ok`` needs both: the loop turned within ``max_loop_seconds``, and no
        processed record has waited longer than ``max_unsaved_seconds`` for a
        checkpoint.
        """
        now = self.clock()
        beat, unsaved_since = self._last_beat, self._unsaved_since
        loop_age = None if beat is None else now - beat
        unsaved_for = 0.0 if unsaved_since is None else now - unsaved_since
        alive = loop_age is not None and loop_age <= self.max_loop_seconds
        saved = unsaved_for <= self.max_unsaved_seconds
        if self._summary is None:
            status = "starting"
        elif not self._running:
            status = "stopped"
        else:
            status = "ok" if alive and saved else "unhealthy"
        last = self._last_checkpoint_wall
        return {
            "status": status,
            "loop_alive": alive,
            "loop_age_seconds": None if loop_age is None else round(loop_age, 3),
            "checkpoint_recent": saved,
            "unsaved_records": self._unsaved,
            "unsaved_seconds": round(unsaved_for, 3),
            "checkpoint_age_seconds": None if last is None else round(self.wall_clock() - last,
                                                                      3),
            "checkpoint_failures_in_a_row": self._consecutive_failures,
            "records_in": getattr(self._summary, "records_in", 0),
        }


def _stage_of(error: BaseException) -> str:
    """Which step of a commit failed: ``sinks`` (delivery), ``store`` (state) or ``source``."""
    from streamal.checkpoint import CheckpointError
    from streamal.connectors.base import DeliveryError

    if isinstance(error, CheckpointError):
        return "store"
    if isinstance(error, (DeliveryError, OSError)):
        return "sinks"
    return "source"


class _Collected(Collector):
    """Metrics read from the pipeline's summary and the observer's state at scrape time."""

    def __init__(self, owner: PipelineMetrics):
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        owner = self.owner
        summary = owner._summary
        get = (lambda name: getattr(summary, name, 0) or 0) if summary is not None else (
            lambda name: 0)
        yield _counter("records_in", "Records read from the source.", get("records_in"))
        out = CounterMetricFamily("streamal_records_out", "Records out, by outcome.",
                                  labels=["outcome"])
        for outcome in OUTCOMES:
            out.add_metric([outcome], get(outcome))
        dead = dict(getattr(summary, "dead_lettered", None) or {})
        out.add_metric(["dead_lettered"], sum(dead.values()))
        yield out
        stages = CounterMetricFamily("streamal_dead_letters", "Dead letters, by stage.",
                                     labels=["stage"])
        for stage in ("decode", "validate", "score", "learn"):
            stages.add_metric([stage], dead.get(stage, 0))
        yield stages
        yield _counter("records_learnt", "Records the models learnt.", get("learnt"))
        yield _counter("drift_detections", "Drift events.", get("drift_events"))
        yield GaugeMetricFamily("streamal_models", "Models (one per key with per-key models).",
                                value=get("models"))
        lag = GaugeMetricFamily("streamal_consumer_lag",
                                "Records behind the end of each partition (as the broker's "
                                "fetch responses report it).", labels=["stream"])
        for stream, value in sorted(owner._lag.items()):
            lag.add_metric([stream], value)
        yield lag
        yield _counter("checkpoints", "Successful checkpoints of this process.",
                       owner._checkpoints)
        failures = CounterMetricFamily("streamal_checkpoint_failures",
                                       "Failed checkpoint commits, by stage.", labels=["stage"])
        for stage in ("sinks", "store", "source"):
            failures.add_metric([stage], owner._failures.get(stage, 0))
        yield failures
        last = owner._last_checkpoint_wall
        age = GaugeMetricFamily("streamal_checkpoint_age_seconds",
                                "Seconds since the newest checkpoint was written (absent "
                                "before the first).")
        if last is not None:
            age.add_metric([], owner.wall_clock() - last)
        yield age
        yield GaugeMetricFamily("streamal_unsaved_records",
                                "Records processed since the newest checkpoint.",
                                value=owner._unsaved)
        yield GaugeMetricFamily("streamal_healthy", "1 when /healthz answers 200.",
                                value=1.0 if owner.health()["status"] == "ok" else 0.0)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"streamal_{name}", doc, value=value)
