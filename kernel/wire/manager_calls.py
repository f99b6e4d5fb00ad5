"""The resource manager's per-request methods, called as the daemon must call a plugin's
code: a manager that raises, or answers something other than what its contract says, fails
the request it was asked about (INTERNAL, logged with the manager's name, rate-limited),
never the daemon, and never reads as the client's fault."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from heirloom.core.components import ClientLimits, Resources, manager_name
from heirloom.core.errors import HeirloomError, ResourceExhaustedError
from heirloom.core.placement import WorkerPool
from heirloom.wire.protocol import INTERNAL, RequestError, packb
from heirloom.wire.throttle import Every

log = logging.getLogger("heirloom.wire.resources")
_warned = {"admit": Every(60.0), "release": Every(60.0), "usage": Every(60.0)}
_slow = {"admit": Every(60.0), "release": Every(60.0), "usage": Every(60.0)}  # apart: a slow call hides no failure
#: A call slower than this held the daemon's I/O thread long enough to say so (once a minute).
SLOW_CALL_S = 0.25


def _report(method: str, resources: Resources, problem: str) -> None:
    _warned[method].log(
        log, logging.ERROR, "the resource manager %s: %s() %s", manager_name(resources), method, problem
    )


def _took(method: str, resources: Resources, started: float) -> None:
    """Say when ``method`` held the I/O thread: every request, probe and heartbeat waited on it
    (a usage() of 4 s got every worker killed for missed heartbeats, and no line said why).
    A plain call, not a context manager: admit and release run once per request."""
    if (took := time.perf_counter() - started) > SLOW_CALL_S:
        waited = "every request, probe and heartbeat waited on it"
        _slow[method].log(
            log,
            logging.WARNING,
            "the resource manager %s: %s() took %.2f s on the daemon's I/O thread: %s",
            manager_name(resources),
            method,
            took,
            waited,
        )


def admit(resources: Resources) -> str | None:
    """``resources.admit()``: None when it admitted, else why not (the message of the
    ResourceExhaustedError it raised, naming the limit, or a plain False's generic reason);
    INTERNAL when it raised anything else or answered something other than a bool (a truthy
    string must not admit by accident)."""
    try:
        started = time.perf_counter()
        answer = resources.admit()
        _took("admit", resources, started)
    except ResourceExhaustedError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a plugin's failure, reported as such
        _report("admit", resources, f"raised {type(exc).__name__}: {exc}")
        raise RequestError(
            INTERNAL, f"the resource manager failed to admit the request: {type(exc).__name__}"
        ) from None
    if answer is True or answer is False:
        return None if answer else "an in-flight or memory limit (its admit() said no)"
    _report("admit", resources, f"returned {answer!r}, not a bool")
    raise RequestError(INTERNAL, "the resource manager answered admission with something other than a bool")


def release(resources: Resources) -> None:
    """``resources.release()``; a failure is logged and the request's reply stands."""
    try:
        started = time.perf_counter()
        resources.release()
        _took("release", resources, started)
    except Exception as exc:  # noqa: BLE001 - the request was answered: nothing to fail but the log
        _report("release", resources, f"raised {type(exc).__name__}: {exc}")


def usage(resources: Resources) -> dict[str, Any]:
    """``resources.usage()`` for ``_stats`` and heartbeats, or ``{"error": ...}`` when it
    raised or gave what msgpack cannot send (a heartbeat that fails to encode would stop a
    worker, and a worker restarted would fail the same way)."""
    try:
        started = time.perf_counter()
        report = resources.usage()
        _took("usage", resources, started)
        packb(report)
    except Exception as exc:  # noqa: BLE001 - a plugin's failure, reported in its place
        _report("usage", resources, f"failed: {type(exc).__name__}: {exc}")
        return {"error": f"usage() failed: {type(exc).__name__}"}
    if not isinstance(report, dict):
        _report("usage", resources, f"returned a {type(report).__name__}, not a dict")
        return {"error": f"usage() returned a {type(report).__name__}, not a dict"}
    sizes = {key: report.get(key) for key in ("resident_mb", "memory_budget_mb")}  # read as MiB by /metrics
    if wrong := [f"{k} {v!r:.40}" for k, v in sizes.items() if v is not None and not _mebibytes(v)]:  # (h458 F6)
        _report("usage", resources, f"gave {', '.join(wrong)}: no size in MiB, so /metrics leaves it out")
    return report


def _mebibytes(value: Any) -> bool:
    """Whether ``value`` is a size in MiB: a number, 0 or more, finite (no bool, no text)."""
    return type(value) in (int, float) and 0 <= value < math.inf


def _asked(resources: Resources, method: str, *args: Any) -> Any:
    """``resources.method(*args)`` asked once at start: an exception is an error naming the manager,
    not a raw traceback (``serve`` then exits 1 with one line)."""
    try:
        return getattr(resources, method)(*args)
    except Exception as exc:
        raise HeirloomError(
            f"the resource manager {manager_name(resources)}: {method}() raised {type(exc).__name__}: {exc}"
        ) from exc


def client_limits(resources: Resources) -> ClientLimits | None:
    """``resources.client_limits()``, checked once where the client socket is: a wrong answer
    (or an exception) stopped ``serve`` with a raw traceback, naming no manager."""
    limits = _asked(resources, "client_limits")
    if limits is not None and not isinstance(limits, ClientLimits):
        raise HeirloomError(
            f"the resource manager {manager_name(resources)}: client_limits() returned a {type(limits).__name__}; "
            "it must be None or a heirloom.ClientLimits"
        )
    return limits


def in_flight_limit(resources: Resources) -> int | None:
    """``resources.daemon_in_flight_limit()``, checked once when a broker starts: a wrong
    type would otherwise fail every request the broker routes (and an exception was a raw traceback)."""
    limit = _asked(resources, "daemon_in_flight_limit")
    if limit is not None and (type(limit) is not int or limit < 1):
        raise HeirloomError(
            f"the resource manager {manager_name(resources)}: daemon_in_flight_limit() returned {limit!r}; "
            "it must be None or an int >= 1"
        )
    return limit


def placer(resources: Resources) -> Callable[[list[str]], WorkerPool | None]:
    """``resources.place_workers``, as the broker calls it before it runs: an exception, or an answer other
    than None or a WorkerPool, is an error naming the manager (a 5 crashed the broker at its first check)."""

    def place(argv: list[str]) -> WorkerPool | None:
        pool = _asked(resources, "place_workers", argv)
        if pool is not None and not isinstance(pool, WorkerPool):
            raise HeirloomError(
                f"the resource manager {manager_name(resources)}: place_workers() returned a {type(pool).__name__}; "
                "it must be None or a started heirloom.WorkerPool"
            )
        return pool

    return place
