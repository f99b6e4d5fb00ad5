"""The HTTP side of ``heirloom serve --metrics-port PORT``: prometheus-client's server for ``GET /metrics``.

``prometheus-client`` is an extra (``pip install 'heirloom[metrics]'``), imported only when the
exporter starts, and then all of it that a scrape uses: a first scrape importing a module while
the process was at its descriptor limit failed (it could not open the module's file).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from heirloom.core.errors import HeirloomError
from heirloom.wire.metrics import Snapshot, SnapshotCollector

log = logging.getLogger("heirloom.wire.metrics")
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


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
            from prometheus_client import start_http_server
            from prometheus_client.core import CollectorRegistry  # core: what SnapshotCollector.collect imports
            from prometheus_client.gc_collector import GCCollector
            from prometheus_client.platform_collector import PlatformCollector
            from prometheus_client.process_collector import ProcessCollector
        except ImportError as exc:
            raise HeirloomError(
                f"--metrics-port needs prometheus-client ({exc}): pip install 'heirloom[metrics]'"
            ) from exc
        registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=registry)
        registry.register(SnapshotCollector(snapshot))
        try:
            self._server, self._thread = start_http_server(address.port, address.host, registry=registry)
        except OSError as exc:
            raise HeirloomError(f"cannot serve metrics on {address.host}:{address.port}: {exc.strerror}") from exc
        self._server.set_app(_logged(self._server.get_app()))
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
