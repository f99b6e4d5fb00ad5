"""The HTTP side of ``heirloom serve --metrics-port PORT``: prometheus-client's server for ``GET /metrics``.

``prometheus-client`` is an extra (``pip install 'heirloom[metrics]'``), imported only when the
exporter starts, and then all of it that a scrape uses: a first scrape importing a module while
the process was at its descriptor limit failed (it could not open the module's file).

The port is for a scraper: whatever a connection does wrong is the exporter's to log, never the
standard library's (its raw traceback on stderr broke ``--log-format json``, one per reset
connection), and a connection that sends nothing for ``READ_TIMEOUT`` seconds is closed (one left
idle held a thread for as long as its client kept it open).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

import attrs

from heirloom.core.errors import HeirloomError
from heirloom.wire.metrics import Snapshot, SnapshotCollector
from heirloom.wire.throttle import Every

log = logging.getLogger("heirloom.wire.metrics")
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType]

#: Seconds a connection to the metrics port may send nothing (or read nothing of its answer)
#: before it is closed (OPERATIONS.md).
READ_TIMEOUT = 10.0
#: Seconds between two log lines about failed metrics connections: a stranger who reaches the port
#: can fail as many as they like.
ERROR_LOG_SECONDS = 60.0


@attrs.frozen
class MetricsAddress:
    """Where ``/metrics`` listens (``--metrics-host``, ``--metrics-port``)."""

    host: str
    port: int


def url_host(host: str) -> str:
    """``host`` as a URL writes it: an IPv6 address in brackets (``http://[::1]:8000/``): the metrics
    address logged at start, and the HTTP servers' (``heirloom.options``)."""
    return f"[{host}]" if ":" in host else host


class Exporter:
    """prometheus-client's HTTP server on its own thread, serving one snapshot source."""

    def __init__(self, address: MetricsAddress, snapshot: Callable[[], Snapshot]):
        try:
            from prometheus_client import make_wsgi_app
            from prometheus_client.core import CollectorRegistry  # core: what SnapshotCollector.collect imports
            from prometheus_client.gc_collector import GCCollector
            from prometheus_client.platform_collector import PlatformCollector
            from prometheus_client.process_collector import ProcessCollector
        except ImportError as exc:
            raise HeirloomError(
                f"--metrics-port needs prometheus-client ({exc}): pip install 'heirloom[metrics]'"
            ) from exc
        # ?name[]=... answers those series: a collector without describe() (ours, the process one) was left out
        registry = CollectorRegistry(support_collectors_without_names=True)  # of every such answer (h434 F3)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=registry)
        registry.register(SnapshotCollector(snapshot))
        try:
            self._server = _server(address)
        except OSError as exc:
            raise HeirloomError(f"cannot serve metrics on {address.host}:{address.port}: {exc.strerror}") from exc
        self._server.set_app(_logged(make_wsgi_app(registry)))
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        self.port = self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _logged(app: WsgiApp) -> WsgiApp:
    """``app`` with a scrape's exception logged (one JSON line under ``--log-format json``) and answered
    500: left to wsgiref, its raw traceback went to stderr past the log's formatter."""

    def logged(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            return app(environ, start_response)
        except Exception:
            log.exception("a /metrics scrape failed (%s %s)", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
            return [b"the scrape failed: the daemon's log says why\n"]

    return logged


class _Logged:
    """What went wrong on metrics connections, said through ``log`` and rate-limited: a connection
    the client broke or left idle (an ``OSError``: reset, timed out) at DEBUG, anything else as one
    ERROR with its traceback (``exc`` under ``--log-format json``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one thread per connection
        self._dropped, self._failed = Every(ERROR_LOG_SECONDS), Every(ERROR_LOG_SECONDS)

    def __call__(self, what: str, error: BaseException | None) -> None:
        with self._lock:
            if isinstance(error, OSError):
                self._dropped.log(log, logging.DEBUG, "a metrics connection ended early (%s): %r", what, error)
            else:
                self._failed.log(log, logging.ERROR, "a metrics connection failed (%s)", what, exc_info=error)


_said = _Logged()


class _Answer(ServerHandler):
    """wsgiref's answer to one request, whose failures (past those of the app, which ``_logged``
    answers) went to stderr as a raw traceback."""

    def log_exception(self, exc_info: ExcInfo) -> None:
        _said("answering a request", exc_info[1])


class _Handler(WSGIRequestHandler):
    """One connection: ``READ_TIMEOUT`` on its socket, no access log, errors to ``_said``."""

    timeout = READ_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        """No line per request (wsgiref's went to stderr)."""

    def handle(self) -> None:
        """``WSGIRequestHandler.handle``, answering through ``_Answer``."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():  # answered 400 already
            return
        answer = _Answer(self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=False)
        answer.request_handler = self  # wsgiref's back pointer, for its log_request
        answer.run(self.server.get_app())


class _Server(ThreadingMixIn, WSGIServer):
    """A thread per connection, as prometheus-client's, and its failures logged by ``_said``
    instead of socketserver's raw traceback on stderr."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        _said(f"from {client_address[0]}", sys.exc_info()[1])


def _server(address: MetricsAddress) -> _Server:
    """The metrics server bound to ``address`` (IPv4 or IPv6, as the host names it)."""
    family, _, _, _, sockaddr = socket.getaddrinfo(
        address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    server_class = type("_Server", (_Server,), {"address_family": family})
    return server_class((sockaddr[0], address.port), _Handler)
