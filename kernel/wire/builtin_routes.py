"""The kernel's own api: ``_health``, ``_ready``, ``_routes``, ``_stats``, ``_reload``.

An :class:`~heirloom.core.components.Api` like any plugin's, mounted by every daemon
without a profile table and under bare names (no ``api.`` prefix). Its routes are inline
(they answer on the I/O loop, so they answer even when every worker thread is busy).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from heirloom.core.components import Api, Route
from heirloom.core.errors import HeirloomError
from heirloom.core.quota import MIB, quota_mb
from heirloom.store.artifacts import ArtifactStore
from heirloom.wire import manager_calls
from heirloom.wire.local_workers import local_token
from heirloom.wire.metrics import daemon_snapshot, usage_snapshot
from heirloom.wire.protocol import HEADER_LIMIT, INVALID_ARGUMENT, NIL, RequestError, without_paths
from heirloom.wire.throttle import RELOAD_LOG_SECONDS, Every

if TYPE_CHECKING:
    from heirloom.core.system import System
    from heirloom.wire.server import Server

log = logging.getLogger("heirloom.wire.server")
#: The built-in routes and what each answers.
KERNEL_ROUTES = {
    "_health": "Liveness: answers while the process runs.",
    "_ready": "Readiness: every component started and warm, and not draining.",
    "_routes": "Every route with its limits and input schema.",
    "_stats": "Per-route counts, errors, latency percentiles, queue depth and batch sizes.",
    "_reload": "Admin: re-read the Curve key folders; check the artifact store for moved aliases.",
}
ADMIN_ROUTES = frozenset({"_reload"})


def kernel_route(name: str, handler: Callable[..., Any], description: str = "", admin: bool = False) -> Route:
    """A built-in route: inline, with KERNEL_ROUTES' description and admin rights unless told
    (the broker describes its own with these too, so ``_routes`` reads the same behind one)."""
    return Route(
        name,
        handler=handler,
        inline=True,
        description=description or KERNEL_ROUTES[name],
        admin=admin or name in ADMIN_ROUTES,
        max_payload=HEADER_LIMIT,
    )


@attrs.define
class KernelApi(Api):
    """What a daemon says about itself, read from its :class:`Server`."""

    daemon: Server
    _reloads: Every = attrs.field(init=False, factory=lambda: Every(RELOAD_LOG_SECONDS))

    def routes(self) -> list[Route]:
        handlers = {
            "_health": self.health,
            "_ready": self.ready,
            "_routes": self.routes_table,
            "_stats": self.stats,
            "_reload": self.reload,
        }
        return [kernel_route(name, handlers[name]) for name in KERNEL_ROUTES]

    def health(self, body: Any) -> dict[str, Any]:
        return {"live": True, "draining": self.daemon.draining, "pid": os.getpid()}

    def ready(self, body: Any) -> dict[str, Any]:
        components = self.daemon.system.readiness()
        report = {
            "ready": self.daemon.ready(),
            "draining": self.daemon.draining,
            "serving": self.daemon.ready(),
            "components": components,
        }
        if components.get("resources") is False:  # why, in the manager's words (local: past its memory budget)
            report["resources"] = resource_usage(self.daemon.system)
        if unready := self.daemon.system.unready:  # a plugin's ready() that raises: whose, and what (not only the log)
            report["not_ready"] = dict(unready)
        return report

    def routes_table(self, body: Any) -> dict[str, Any]:
        return {"routes": self.daemon.router.describe()}

    def stats(self, body: Any) -> dict[str, Any]:
        daemon, system = self.daemon, self.daemon.system
        return {
            "uptime_s": round(time.time() - daemon.started_at, 3),
            "in_flight": daemon.admission.in_flight,
            "dropped_frames": daemon.dropped,
            "refused_unrouted": dict(daemon.unrouted),
            "dropped_replies": daemon.outbox.dropped,
            "reply_backlog_bytes": daemon.outbox.release(),
            "undeliverable_replies": daemon.outbox.undeliverable,
            "draining": daemon.draining,
            "idempotency": daemon.idempotency.usage(),
            "routes": {name: e.stats.snapshot(e.pending) for name, e in daemon.router.endpoints.items()},
            "resources": resource_usage(system),
            "models": models_status(system),
            "storage": storage_usage(system),
            "network": daemon.buckets.usage() if daemon.buckets is not None else {},
        }

    def reload(self, body: Any) -> dict[str, Any]:
        """Re-read the Curve key folders; ask the model watcher to check the store now (it
        loads new versions off this thread)."""
        keys = self.daemon.curve.reload() if self.daemon.curve is not None else ""
        serving = self.daemon.system.serving
        checking = serving.check_now() if serving is not None else []
        self._reloads.log(
            log, logging.INFO, "_reload: checking the store for %s%s", ", ".join(checking) or "no model", keys
        )
        return {"checking": checking}


def check_no_body(route: str, after_header: list[bytes]) -> None:
    """A built-in route's message carries a nil body and nothing after it (INVALID_ARGUMENT
    naming which of the two was sent)."""
    if after_header[0] != NIL:
        raise RequestError(INVALID_ARGUMENT, f"{route} takes no body (send nil)", "body")
    if len(after_header) > 1:
        raise RequestError(
            INVALID_ARGUMENT,
            f"{route} takes no buffers: {len(after_header) - 1} frame(s) came after the body",
            "header.buffers",
        )


def worker_status(daemon: Server) -> dict[str, Any]:
    """What a broker needs to know about a worker (its heartbeat; the broker's ``_stats``
    shows it): the same facts ``_stats`` reads, plus the routes and the metrics snapshot."""
    system = daemon.system
    return {
        "pid": os.getpid(),
        "ready": daemon.ready(),
        "in_flight": daemon.admission.in_flight,
        "draining": daemon.draining,
        "heartbeat": daemon.settings.heartbeat,
        "routes": [e.describe() for e in daemon.router.endpoints.values() if not e.builtin],
        "apis": [spec.name for spec in system.specs if spec.kind == "api"],  # one with no routes counts as served
        "resources": resource_usage(system),
        "models": models_status(system),
        "storage": storage_usage(system),
        "metrics": daemon_snapshot(daemon),
        **({"not_ready": dict(system.unready)} if system.unready else {}),  # a ready() that raises: _ready says whose
        **local_token(),
    }


def exported_snapshot(daemon: Server) -> dict[str, Any]:
    """What one process's ``/metrics`` reads: the snapshot a worker heartbeats, with its storage,
    memory and undelivered replies (as ``_stats`` gives them)."""
    usage = usage_snapshot(
        storage_usage(daemon.system), {str(os.getpid()): resource_usage(daemon.system)}, daemon.outbox
    )
    return {**daemon_snapshot(daemon), **usage}


def resource_usage(system: System) -> dict[str, Any]:
    """The resource manager's ``usage()`` (``_stats`` ``resources``); {} while the system is not running."""
    return manager_calls.usage(system.resources) if system.state == "running" else {}


def models_status(system: System) -> dict[str, dict[str, Any]]:
    """What each model serves and why not, for clients: no server path in an error."""
    if system.serving is None:
        return {}
    return {
        name: {**entry, "error": entry["error"] and for_clients(entry["error"], system)}
        for name, entry in system.serving.status().items()
    }


def for_clients(message: str, system: System) -> str:
    """``message`` without the server's paths (the home's, the store's): ``without_paths``."""
    store = system.serving.store if system.serving is not None else None
    return without_paths(message, *([store.root] if isinstance(store, ArtifactStore) else []))


def storage_usage(system: System) -> dict[str, Any]:
    """``{"artifacts": {"used_mb", "quota_mb"}, "logs": {...}}`` of the system's project."""
    if system.state != "running":
        return {}
    store = system.serving.store if system.serving is not None else None
    try:
        quota = quota_mb(system.resources, "artifacts")
        logs = system.log_quota.usage()
    except HeirloomError as exc:  # the manager's wrong answer, said in its place (as usage() is)
        return {"error": str(exc)}
    try:
        used = store.usage().get(system.profile.project, 0) if isinstance(store, ArtifactStore) else None
    except (HeirloomError, OSError) as exc:  # a store made read-only, or moved, under the daemon: it serves on
        unread = {"used_mb": None, "quota_mb": quota, "error": for_clients(str(exc), system)}
        return {"artifacts": unread, "logs": logs}  # a heartbeat raising it stopped every worker at once
    return {
        "artifacts": {"used_mb": None if used is None else round(used / MIB, 3), "quota_mb": quota},
        "logs": logs,
    }
