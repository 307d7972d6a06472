"""Logs an operator can read: one line per event, no per-record or per-retry floods.

* :class:`JsonFormatter` writes each log record as one JSON object on one line
  (a traceback included, as a field).
* :class:`ClientOutages` stands between a client library's logger (kafka-python
  logs several errors per second while a broker is away) and the log: the first
  warning of an outage is logged once, as one line, the rest are counted, and
  the end of the outage is one more line with the count.
* :class:`RateLimit` lets through a burst of lines per kind and minute (alerts,
  drift events and dead letters are logged one per line by ``streamal run``)
  and then counts them, with one summary line when the minute is over. The
  metrics count every record regardless.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ClientOutages", "JsonFormatter", "RateLimit"]

logger = logging.getLogger("streamal.observability")

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message",
                                                                                 "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, extras, ``exc``.

    Examples
    --------
    >>> import logging
    >>> record = logging.LogRecord("x", logging.WARNING, "", 0, "a %s\\nb", ("c",), None)
    >>> record.created = 0.0
    >>> print(JsonFormatter().format(record))
    {"time": "1970-01-01T00:00:00.000Z", "level": "WARNING", "logger": "x", "message": "a c\\nb"}
    """

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
        doc: dict[str, Any] = {
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class ClientOutages(logging.Handler):
    """Collapse a client library's warnings and errors into one line per outage.

    Install it with :meth:`install` on the library's logger (``"kafka"``): its
    records then stop propagating, and its level becomes WARNING (DEBUG when
    the root logger is at DEBUG), since its INFO lines are per connection.
    Records below WARNING pass on to the root logger's handlers. The first
    WARNING or worse opens an outage: one WARNING line through
    ``streamal.observability`` quoting it. Later ones are counted (and passed
    on at DEBUG). :meth:`recovered` closes the outage with one INFO line once
    the client has been quiet for ``quiet`` seconds; the pipeline calls it
    when records arrive or a checkpoint commits (records may still arrive from
    the client's buffer just after a broker died: hence the quiet period).
    Messages within ``settle`` seconds after a recovery (the client cleaning up
    after the broker came back) count for the outage just closed.

    Examples
    --------
    >>> import logging
    >>> now = [0.0]
    >>> outages = ClientOutages("example-client", clock=lambda: now[0])
    >>> outages.install()
    >>> client = logging.getLogger("example-client.net")
    >>> for _ in range(50):
    ...     client.error("Connection failed: ECONNREFUSED")
    >>> outages.recovered()  # records from the buffer, the client still complains
    >>> outages.in_outage
    True
    >>> now[0] = 5.0
    >>> outages.recovered()
    >>> outages.outages, outages.suppressed, outages.in_outage
    (1, 49, False)
    >>> outages.uninstall()
    """

    def __init__(self, name: str = "kafka", quiet: float = 1.0, settle: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(logging.DEBUG)
        self.name = name
        self.quiet = quiet
        self.settle = settle
        self.clock = clock
        self.outages = 0
        self.suppressed = 0
        self._open_since: float | None = None
        self._closed_at: float | None = None
        self._last_seen = 0.0
        self._last_progress = float("-inf")
        self._in_outage = 0
        self._lock_outage = threading.Lock()
        self._saved: tuple[bool, int] | None = None

    def install(self) -> None:
        target = logging.getLogger(self.name)
        self._saved = (target.propagate, target.level)
        target.addHandler(self)
        target.propagate = False
        target.setLevel(logging.DEBUG if logging.getLogger().isEnabledFor(logging.DEBUG)
                        else logging.WARNING)

    def uninstall(self) -> None:
        target = logging.getLogger(self.name)
        target.removeHandler(self)
        if self._saved is not None:
            target.propagate, level = self._saved
            target.setLevel(level)
            self._saved = None

    @property
    def in_outage(self) -> bool:
        return self._open_since is not None

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING:
            _pass_on(record)
            return
        with self._lock_outage:
            now = self.clock()
            self._last_seen = now
            settling = self._closed_at is not None and now - self._closed_at <= self.settle
            if self._open_since is None and not settling:
                self._open_since = now
                self._in_outage = 0
                self.outages += 1
                first = True
            else:
                self.suppressed += 1
                self._in_outage += 1
                first = False
        if first:
            logger.warning("%s client trouble (broker unreachable?): %s; retrying in the "
                           "background, its further messages are counted until it works again",
                           self.name, record.getMessage(), extra={"event": "client_outage"})
        else:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            _pass_on(record)

    def recovered(self, force: bool = False) -> None:
        """The client works again (records came in, outputs were delivered).

        Ignored while the client complained less than ``quiet`` seconds ago,
        unless ``force``.
        """
        with self._lock_outage:
            self._last_progress = self.clock()
            if self._open_since is None or (
                    not force and self.clock() - self._last_seen < self.quiet):
                return
            lasted = self.clock() - self._open_since
            count = self._in_outage
            self._open_since = None
            self._closed_at = self.clock()
        logger.info("%s client works again after %.1f s (%d repeated client messages were "
                    "counted, not logged)", self.name, lasted, count,
                    extra={"event": "client_recovered"})

    def idle(self) -> None:
        """A turn of the pipeline's loop: close the outage once the client has been quiet
        for ``quiet`` seconds since its last complaint, if it worked after it (a pipeline
        that caught up within the quiet period has no further progress to report).

        Examples
        --------
        >>> now = [0.0]
        >>> outages = ClientOutages("idle-client", clock=lambda: now[0])
        >>> outages.emit(logging.makeLogRecord({"levelno": logging.ERROR, "msg": "down"}))
        >>> now[0] = 0.5
        >>> outages.recovered()  # too soon after the complaint
        >>> now[0] = 2.0
        >>> outages.idle()
        >>> outages.in_outage
        False
        """
        with self._lock_outage:
            if (self._open_since is None or self._last_progress <= self._last_seen
                    or self.clock() - self._last_seen < self.quiet):
                return
        self.recovered(force=True)

    def finish(self) -> None:
        """At the end of a run: close an open outage (said to be over if the client worked
        after its last complaint, else still going), then :meth:`uninstall`."""
        with self._lock_outage:
            worked = self._last_progress > self._last_seen
        if worked:
            self.recovered(force=True)
        with self._lock_outage:
            open_since, count = self._open_since, self._in_outage
            self._open_since = None
        if open_since is not None:
            logger.warning("%s client still failing after %.1f s at the end of the run (%d "
                           "repeated client messages were counted, not logged)", self.name,
                           self.clock() - open_since, count, extra={"event": "client_outage_end"})
        self.uninstall()


def _pass_on(record: logging.LogRecord) -> None:
    root = logging.getLogger()
    if root.isEnabledFor(record.levelno):
        root.handle(record)


class RateLimit(logging.Filter):
    """Let ``burst`` records per message format and ``window`` seconds through; count the rest.

    Attach it to a logger (``logger.addFilter``). When a window with suppressed
    records is over, the next record of that kind is preceded by one summary
    line; :meth:`flush` writes the summaries still pending.

    Examples
    --------
    >>> import logging
    >>> limit = RateLimit(burst=2, window=60.0, clock=lambda: 0.0)
    >>> record = lambda: logging.LogRecord("x", logging.INFO, "", 0, "alert %s", (1,), None)
    >>> [limit.filter(record()) for _ in range(5)]
    [True, True, False, False, False]
    >>> limit.pending()
    {'alert %s': 3}
    """

    def __init__(self, burst: int = 20, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.burst = burst
        self.window = window
        self.clock = clock
        self._kinds: dict[str, list[Any]] = {}  # format -> [window start, passed, suppressed]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_summary", False):
            return True
        kind = str(record.msg)
        now = self.clock()
        with self._lock:
            state = self._kinds.setdefault(kind, [now, 0, 0])
            summary = None
            if now - state[0] >= self.window:
                if state[2]:
                    summary = (state[2], now - state[0])
                state[:] = [now, 0, 0]
            state[1] += 1
            allowed = state[1] <= self.burst
            if not allowed:
                state[2] += 1
        if summary is not None:
            self._summarise(record.name, kind, *summary)
        return allowed

    def pending(self) -> dict[str, int]:
        """Suppressed counts per message format not yet summarised."""
        return {kind: state[2] for kind, state in self._kinds.items() if state[2]}

    def flush(self) -> None:
        """Write a summary line for every kind with suppressed records."""
        now = self.clock()
        with self._lock:
            due = [(kind, state[2], now - state[0]) for kind, state in self._kinds.items()
                   if state[2]]
            for kind, _, _ in due:
                self._kinds[kind][2] = 0
        for kind, count, seconds in due:
            self._summarise("streamal.events", kind, count, seconds)

    @staticmethod
    def _summarise(name: str, kind: str, count: int, seconds: float) -> None:
        words = kind.split("%")[0].strip() or kind
        logging.getLogger(name).warning(
            "%d more %r lines in the last %.0f s were counted, not logged (see the metrics)",
            count, words, seconds, extra={"_summary": True, "event": "log_summary",
                                          "suppressed": count})
