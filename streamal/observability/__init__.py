"""Seeing what a running pipeline does: Prometheus metrics, ``/healthz``, structured logs.

:func:`observe` is what ``streamal run`` uses (the ``[observability]`` table of
a spec): it makes a :class:`PipelineMetrics` to hand to the pipeline as its
observer, serves
``/metrics`` and ``/healthz`` on ``127.0.0.1`` when a port is given, writes
logs as JSON lines when asked, collapses the Kafka client's connection errors
into one line per outage, and rate-limits the per-event log lines.

Examples
--------
>>> import json, urllib.request
>>> from streamal import ActivationDetector
>>> from streamal.connectors import MemorySource
>>> from streamal.runtime import Pipeline, RecordDecoder
>>> with observe({"metrics_port": 0}) as watch:
...     pipe = Pipeline(MemorySource([{"a": float(i % 5)} for i in range(200)]), {},
...                     lambda: ActivationDetector(seed=0), RecordDecoder(),
...                     observer=watch.metrics)
...     summary = pipe.run()
...     text = urllib.request.urlopen(watch.server.url("/metrics")).read().decode()
>>> [line for line in text.splitlines() if line.startswith("streamal_records_in_total")]
['streamal_records_in_total 200.0']
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from streamal.observability.logs import ClientOutages, JsonFormatter, RateLimit
from streamal.observability.metrics import PipelineMetrics
from streamal.observability.server import DEFAULT_BIND, MetricsServer

__all__ = [
    "DEFAULTS",
    "ClientOutages",
    "JsonFormatter",
    "MetricsServer",
    "Observed",
    "PipelineMetrics",
    "RateLimit",
    "configure_logging",
    "observe",
]

DEFAULTS: dict[str, Any] = {
    "metrics_port": None,
    "bind": DEFAULT_BIND,
    "log_format": "text",
    "max_loop_seconds": 120.0,
    "max_unsaved_seconds": None,
    "event_log_burst": 20,
}
"""The ``[observability]`` settings :func:`observe` uses for keys not given."""

EVENT_LOGGER = "streamal.events"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str | int = "INFO", log_format: str = "text") -> None:
    """Log to stderr, one line per event: ``text`` (time level logger: message) or ``json``."""
    if log_format not in ("text", "json"):
        raise ValueError(f"log_format must be 'text' or 'json', got {log_format!r}")
    logging.basicConfig(level=level, format=TEXT_FORMAT)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)


@dataclass
class Observed:
    """What :func:`observe` set up: the metrics, the server (or None), the outage log."""

    metrics: PipelineMetrics
    server: MetricsServer | None
    outages: ClientOutages
    events: RateLimit


@contextmanager
def observe(settings: Mapping[str, Any] | None = None,
            checkpoint_every_seconds: float | None = None) -> Iterator[Observed]:
    """Metrics for a pipeline (its observer), served while the ``with`` block runs.

    ``settings`` are the ``[observability]`` keys (see :data:`DEFAULTS`);
    ``max_unsaved_seconds`` defaults to three checkpoint intervals (at least a
    minute). Raises ``OSError`` when the metrics port cannot be bound.
    """
    given = {**DEFAULTS, **{k: v for k, v in (settings or {}).items() if v is not None}}
    unsaved = given["max_unsaved_seconds"]
    if unsaved is None:
        unsaved = max(60.0, 3 * (checkpoint_every_seconds or 60.0))
    metrics = PipelineMetrics(max_loop_seconds=float(given["max_loop_seconds"]),
                              max_unsaved_seconds=float(unsaved))
    formatters = [(h, h.formatter) for h in logging.getLogger().handlers]
    if given["log_format"] == "json":
        configure_logging(logging.getLogger().level or logging.INFO, "json")
    outages = ClientOutages("kafka")
    outages.install()
    metrics.on_progress(lambda what: outages.idle() if what == "beat" else outages.recovered())
    events = RateLimit(burst=int(given["event_log_burst"]))
    event_logger = logging.getLogger(EVENT_LOGGER)
    event_logger.addFilter(events)
    server = None
    try:
        if given["metrics_port"] is not None:
            server = MetricsServer(metrics, int(given["metrics_port"]), str(given["bind"]))
            server.start()
        yield Observed(metrics, server, outages, events)
    finally:
        if server is not None:
            server.stop()
        events.flush()
        event_logger.removeFilter(events)
        outages.finish()
        for handler, formatter in formatters:
            handler.setFormatter(formatter)
