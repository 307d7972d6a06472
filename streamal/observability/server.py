"""The HTTP endpoint: ``GET /metrics`` (Prometheus text) and ``GET /healthz`` (JSON).

It binds to ``127.0.0.1`` unless told otherwise: metrics say a lot about the
data, so exposing them on every interface is a decision to take explicitly.
Requests are served from a daemon thread and never logged one by one.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamal.observability.metrics import PipelineMetrics

__all__ = ["DEFAULT_BIND", "MetricsServer"]

DEFAULT_BIND = "127.0.0.1"
logger = logging.getLogger("streamal.observability")


class MetricsServer:
    """Serve ``/metrics`` and ``/healthz`` of a :class:`PipelineMetrics` in a thread.

    Parameters
    ----------
    metrics
        What to serve.
    port
        TCP port; ``0`` picks a free one (see :attr:`port` after :meth:`start`).
    bind
        Address to listen on; loopback only by default.

    Examples
    --------
    >>> import json, urllib.request
    >>> server = MetricsServer(PipelineMetrics(), port=0).start()
    >>> server.bind, server.port > 0
    ('127.0.0.1', True)
    >>> try:
    ...     urllib.request.urlopen(server.url("/healthz"))
    ... except urllib.error.HTTPError as error:
    ...     error.code, json.loads(error.read())["status"]
    (503, 'starting')
    >>> server.stop()
    """

    def __init__(self, metrics: PipelineMetrics, port: int = 9108, bind: str = DEFAULT_BIND):
        self.metrics = metrics
        self.port = port
        self.bind = bind
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> MetricsServer:
        """Listen and serve in a daemon thread; raises ``OSError`` if the port is taken."""
        handler = type("Handler", (_Handler,), {"metrics": self.metrics})
        server = ThreadingHTTPServer((self.bind, self.port), handler)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, name="streamal-metrics",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        logger.info("metrics on %s and health on %s", self.url("/metrics"),
                    self.url("/healthz"), extra={"event": "metrics_server"})
        return self

    def url(self, path: str = "/metrics") -> str:
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"http://{host}:{self.port}{path}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    metrics: PipelineMetrics
    server_version = "streamal"

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry))
        elif path in ("/healthz", "/health"):
            health = self.metrics.health()
            body = json.dumps(health).encode()
            self._send(200 if health["status"] == "ok" else 503, "application/json", body)
        else:
            self._send(404, "text/plain; charset=utf-8", b"try /metrics or /healthz\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # no line per request
        pass
