"""Prometheus metrics for ``heirloom serve --metrics-port PORT``: ``GET /metrics``.

Nothing is counted twice: the numbers are the per-route stats the daemon already keeps
for ``_stats`` (:mod:`heirloom.wire.stats`), read when Prometheus scrapes, so the request
path pays nothing for the exporter. A daemon reports its own process; a broker
(``--workers N``) reports what every worker did: request counts, latency and queue time
as the broker saw the replies pass, batch sizes, queue depth and served versions from the
snapshot each worker sends with its heartbeat (a dead worker's last numbers are kept, so
counters never go backwards). The process metrics are those of the process serving
``/metrics``; each serving process's memory, and the project's storage, are the gauges
``_stats`` reads (a broker's: from its workers' heartbeats).

``prometheus-client`` is an extra (``pip install 'heirloom[metrics]'``), imported only
when the exporter (:mod:`heirloom.wire.exporter`) starts; the snapshots are plain data and need nothing.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from heirloom.core.quota import MIB
from heirloom.wire.protocol import CODES
from heirloom.wire.stats import RouteStats

if TYPE_CHECKING:
    from heirloom.core.system import System
    from heirloom.wire.broker import Broker
    from heirloom.wire.server import Server
    from heirloom.wire.transport import Outbox

Snapshot = dict[str, Any]
HISTOGRAMS = {
    "latency": ("heirloom_request_duration_seconds", "Seconds from receiving a request to sending its reply."),
    "queue": ("heirloom_request_queue_seconds", "Seconds a request waited before its handler started."),
    "batch": ("heirloom_batch_size", "Items per handler call of a batched route."),
}


# -- snapshots: plain data, cheap, sent in worker heartbeats --------------------------------
def daemon_snapshot(server: Server) -> Snapshot:
    """Everything one daemon process has counted since it started."""
    return {
        "routes": {
            name: {**endpoint.stats.totals(), "queue_depth": endpoint.pending}
            for name, endpoint in list(server.router.endpoints.items())
        },
        "in_flight": server.admission.in_flight,
        "dropped_frames": server.dropped,
        "refused_unrouted": dict(server.unrouted),
        **model_states(server.system),
        "ready": server.ready(),
    }


def model_states(system: System) -> dict[str, Any]:
    """``models``: ``[{"model", "ref", "digest"}]`` of every model serving a stored version;
    ``waiting_models``: the names of those serving none (nothing trained, or a failed load);
    ``stale_models``: those serving a version while their ``serve`` ref names another they
    could not load (a promoted version that is corrupt), or nothing any more."""
    states = system.serving.status() if system.serving is not None else {}
    return {
        "stale_models": sorted(name for name, s in states.items() if s["version"] is not None and s["error"]),
        "models": [
            {"model": name, "ref": status["version"], "digest": status["digest"] or ""}
            for name, status in states.items()
            if status["version"] is not None
        ],
        "waiting_models": sorted(name for name, status in states.items() if status["version"] is None),
    }


class WorkerTotals:
    """A broker's view of its workers' snapshots: the latest of each live worker, plus the
    last numbers of workers that died (so sums never decrease)."""

    def __init__(self) -> None:
        self.live: dict[bytes, Snapshot] = {}
        self.retired: list[Snapshot] = []

    def update(self, identity: bytes, snapshot: Snapshot | None) -> bool:
        """Keep ``snapshot`` as the worker's latest; False (kept nothing) when it is not what
        ``daemon_snapshot`` sends: a heartbeat is untrusted, and a text where a count belongs
        stopped the broker at the next merge."""
        if snapshot is None:
            return True
        if not _is_snapshot(snapshot):
            return False
        self.live[identity] = snapshot
        return True

    def retire(self, identity: bytes) -> None:
        snapshot = self.live.pop(identity, None)
        if snapshot is not None:
            retired = merge([*self.retired, snapshot], live=False)
            if len(retired["routes"]) > MAX_RETIRED_ROUTES:  # peers long gone, each naming its own routes
                retired["routes"] = dict(list(retired["routes"].items())[:MAX_RETIRED_ROUTES])
            self.retired = [retired]

    def merged(self) -> tuple[Snapshot, Snapshot]:
        """``(since start, now)``: every worker's counters summed (the dead ones' too), and
        the live workers' gauges summed."""
        live = list(self.live.values())
        return merge(live + self.retired, live=False), merge(live, live=True)


def usage_snapshot(storage: Any, resources: dict[str, Any], outbox: Outbox) -> Snapshot:
    """What ``_stats`` alone said: ``storage`` (its ``storage`` map), each process's memory
    (``resources``: its pid -> its ``_stats`` ``resources`` map) and the replies ``outbox``
    dropped or could not deliver."""
    return {
        "storage": storage,
        "memory": resources,
        "replies": {"dropped": outbox.dropped, "undeliverable": outbox.undeliverable},
    }


def broker_snapshot(broker: Broker) -> Snapshot:
    """The broker's own request counts and latencies (every reply passes through it), with
    the batch sizes, queue times, queue depths and models its workers report; the storage the
    first ready worker reports (as ``_stats``), and each connected worker's memory."""
    workers, current = broker.worker_totals.merged()
    seen = {**dict.fromkeys(broker.OWN_ROUTES), **broker.stats}
    routes: dict[str, dict[str, Any]] = {}
    unmeasured = RouteStats().totals()  # what the broker answers itself (or refuses) waited in no queue
    for name in [*seen, *(name for name in workers["routes"] if name not in seen)]:
        routes[name] = (seen.get(name) or RouteStats()).totals()
        for measured_by_workers in ("batch", "queue", "batched"):  # the broker reads no reply header
            routes[name][measured_by_workers] = (
                workers["routes"].get(name, {}).get(measured_by_workers, unmeasured[measured_by_workers])
            )
        routes[name]["queue_depth"] = current["routes"].get(name, {}).get("queue_depth", 0)
    connected = list(broker.workers.values())
    ready = [worker for worker in connected if worker.ready]
    return {
        "routes": routes,
        "in_flight": len(broker.forwarded),
        "dropped_frames": broker.dropped + workers["dropped_frames"],
        "refused_unrouted": dict(Counter(broker.unrouted) + Counter(workers["refused_unrouted"])),
        "models": current["models"],
        "waiting_models": current["waiting_models"],
        "stale_models": current["stale_models"],
        "ready": broker.is_ready(),
        "workers": {"connected": len(connected), "ready": len(ready), "expected": broker.expected_workers()},
        "workers_lost": broker.workers_lost,
        **usage_snapshot(
            ready[0].status.get("storage", {}) if ready else {},
            {str(worker.pid): worker.status.get("resources", {}) for worker in connected},
            broker.outbox,
        ),
    }


def broker_route_stats(stats: dict[str, RouteStats], totals: WorkerTotals) -> dict[str, dict[str, Any]]:
    """A broker's ``_stats`` routes: its own counts and latencies, its workers' queue depths
    and batch sizes (from their histograms: since start, p50 and max as bucket bounds)."""
    workers, current = totals.merged()
    routes = {}
    for name, seen in list(stats.items()):
        routes[name] = seen.snapshot(current["routes"].get(name, {}).get("queue_depth", 0))
        batches = batch_summary(workers["routes"].get(name, {}).get("batch"))
        if batches is not None:
            routes[name]["batch_sizes"] = batches
    return routes


def merge(snapshots: Iterable[Snapshot], *, live: bool) -> Snapshot:
    """Sum snapshots route by route. ``live``: gauges (queue depth, in flight, models) are
    summed too; otherwise only counters and histograms are."""
    routes: dict[str, dict[str, Any]] = {}
    dropped, in_flight, unrouted, waiting, stale = 0, 0, Counter(), set(), set()
    models: Counter[tuple[str, str, str]] = Counter()
    for snapshot in snapshots:
        dropped += snapshot.get("dropped_frames", 0)
        unrouted.update(snapshot.get("refused_unrouted", {}))
        for name, totals in snapshot.get("routes", {}).items():
            if name not in routes and len(routes) >= MAX_RETIRED_ROUTES:  # many peers, each naming its own
                continue
            into = routes.setdefault(name, {"requests": Counter(), "queue_depth": 0})
            into["requests"].update(totals["requests"])
            for key in HISTOGRAMS:
                into[key] = _add_histograms(into.get(key), totals[key])
            into["batched"] = into.get("batched") is True or totals.get("batched") is True
            if live:
                into["queue_depth"] += totals.get("queue_depth", 0)
        if live:
            in_flight += snapshot.get("in_flight", 0)
            models.update((m["model"], m["ref"], m["digest"]) for m in snapshot.get("models", []))
            waiting.update(snapshot.get("waiting_models", []))
            stale.update(snapshot.get("stale_models", []))
    return {
        "routes": {name: {**totals, "requests": _capped(totals["requests"])} for name, totals in routes.items()},
        "in_flight": in_flight,
        "dropped_frames": min(dropped, MAX_COUNT),
        "refused_unrouted": _capped(unrouted),
        "models": [{"model": m, "ref": r, "digest": d, "count": n} for (m, r, d), n in sorted(models.items())],
        "waiting_models": sorted(waiting),
        "stale_models": sorted(stale),
    }


#: What each entry of a snapshot's ``models`` holds.
MODEL_KEYS = ("model", "ref", "digest")
#: The most routes, models or histogram buckets one snapshot may list (50,000 made-up route
#: names made every scrape 114 MB, and ``_stats`` block the broker for 7 s).
MAX_SNAPSHOT_ITEMS = 1_000
#: The largest count a snapshot may hold: 2**53, a double's exact integers.
MAX_COUNT = 1 << 53
#: Routes whose counts a broker keeps of workers that are gone (the first ones).
MAX_RETIRED_ROUTES = 10_000


def _is_snapshot(snapshot: Any) -> bool:
    """Whether ``snapshot`` has the shape and the number types ``merge`` and the exporter read."""
    if not isinstance(snapshot, dict):
        return False
    routes, unrouted = snapshot.get("routes", {}), snapshot.get("refused_unrouted", {})
    models = snapshot.get("models", [])
    return (
        all(_is_count(snapshot.get(key, 0)) for key in ("dropped_frames", "in_flight"))
        and _counts(unrouted)
        and set(unrouted) <= set(CODES)
        and isinstance(routes, dict)
        and len(routes) <= MAX_SNAPSHOT_ITEMS
        and all(isinstance(name, str) and _is_route_totals(totals) for name, totals in routes.items())
        and isinstance(models, list)
        and len(models) <= MAX_SNAPSHOT_ITEMS
        and all(isinstance(m, dict) and all(isinstance(m.get(k), str) for k in MODEL_KEYS) for m in models)
        and all(_names(snapshot.get(key, [])) for key in ("waiting_models", "stale_models"))
    )


def _is_route_totals(totals: Any) -> bool:
    return (
        isinstance(totals, dict)
        and _counts(totals.get("requests"))
        and _is_count(totals.get("queue_depth", 0))
        and isinstance(totals.get("batched", False), bool)
        and all(_is_histogram(totals.get(key)) for key in HISTOGRAMS)
    )


def _is_histogram(histogram: Any) -> bool:
    if not isinstance(histogram, dict):
        return False
    bounds, counts = histogram.get("bounds"), histogram.get("counts")
    return (
        isinstance(bounds, list)
        and 0 < len(bounds) <= MAX_SNAPSHOT_ITEMS
        and all(_is_number(bound) for bound in bounds)
        and all(a < b for a, b in itertools.pairwise(bounds))
        and isinstance(counts, list)
        and len(counts) == len(bounds) + 1
        and all(_is_count(count) for count in counts)
        and _is_number(total := histogram.get("sum"))
        and 0 <= total <= MAX_COUNT  # seconds or batch sizes: never below 0 (a peer's -1.7e308 summed to -inf)
    )


def _counts(values: Any) -> bool:
    return isinstance(values, dict) and all(isinstance(k, str) and _is_count(v) for k, v in values.items())


def _names(values: Any) -> bool:
    return isinstance(values, list) and len(values) <= MAX_SNAPSHOT_ITEMS and all(isinstance(v, str) for v in values)


def _is_count(value: Any) -> bool:
    """A whole number a sum of many stays exact in (counts near 2**64 overflowed msgpack in ``_stats``)."""
    return type(value) is int and 0 <= value <= MAX_COUNT


def _is_number(value: Any) -> bool:
    return (type(value) is int and abs(value) <= MAX_COUNT) or (type(value) is float and math.isfinite(value))


def _add_histograms(total: dict[str, Any] | None, more: dict[str, Any]) -> dict[str, Any]:
    if total is None:
        return {"bounds": list(more["bounds"]), "counts": list(more["counts"]), "sum": more["sum"]}
    if total["bounds"] != more["bounds"]:  # workers of another heirloom version: keep what we can add
        return total
    return {
        "bounds": total["bounds"],
        "counts": [min(a + b, MAX_COUNT) for a, b in zip(total["counts"], more["counts"], strict=True)],
        "sum": float(min(total["sum"] + more["sum"], MAX_COUNT)),
    }


def _capped(counts: dict[str, int]) -> dict[str, int]:
    """Summed counts held at ``MAX_COUNT``: the sum of many valid snapshots (the gone workers'
    kept for good) passed 2**64, and ``_stats`` failed for good on packing it."""
    return {key: min(count, MAX_COUNT) for key, count in counts.items()}


# -- the Prometheus side ----------------------------------------------------------------------
class SnapshotCollector:
    """A prometheus-client collector that turns a snapshot into metric families per scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]):
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        snap = self.snapshot()
        routes = snap["routes"]
        requests = CounterMetricFamily(
            "heirloom_requests", "Requests answered, by route and status code.", labels=["route", "status"]
        )
        for route, totals in routes.items():  # every code from the start, at 0: Prometheus' increase()
            for status in CODES:  # takes a series' first sample as its start, so a first error would not count
                requests.add_metric([route, status], totals["requests"].get(status, 0))
        yield requests
        for key, (name, documentation) in HISTOGRAMS.items():
            family = HistogramMetricFamily(name, documentation, labels=["route"])
            for route, totals in routes.items():
                histogram = totals[key]
                if key == "batch" and not totals.get("batched") and not sum(histogram["counts"]):
                    continue  # not a batched route (a batched one is exported from the start, at 0 batches)
                family.add_metric([route], _cumulative(histogram), histogram["sum"])
            yield family
        depth = GaugeMetricFamily("heirloom_queue_depth", "Requests admitted and not yet answered.", labels=["route"])
        for route, totals in routes.items():
            depth.add_metric([route], totals.get("queue_depth", 0))
        yield depth
        in_flight = "Requests admitted and not yet answered (queued ones too)."
        yield GaugeMetricFamily("heirloom_in_flight", in_flight, value=snap["in_flight"])
        yield CounterMetricFamily(
            "heirloom_dropped_frames",
            "ZeroMQ messages dropped without a reply (not heirloom's: no envelope).",
            value=snap["dropped_frames"],
        )
        unrouted = CounterMetricFamily(
            "heirloom_refused_unrouted",
            "Requests refused before a route was known (unknown route, unreadable header, client rate limit).",
            labels=["status"],
        )
        for status in CODES[1:]:
            unrouted.add_metric([status], snap.get("refused_unrouted", {}).get(status, 0))
        yield unrouted
        info = GaugeMetricFamily(
            "heirloom_model_info",
            "The stored version each model serves (the value counts the processes serving it).",
            labels=["model", "ref", "digest"],
        )
        for model in snap["models"]:
            info.add_metric([model["model"], model["ref"], model["digest"]], model.get("count", 1))
        yield info
        ready = GaugeMetricFamily(
            "heirloom_model_ready",
            "1 while every process serves a stored version of the model, 0 while one has none (_stats.models: why).",
            labels=["model"],
        )
        waiting = set(snap.get("waiting_models", []))
        stale = set(snap.get("stale_models", []))
        behind = GaugeMetricFamily(
            "heirloom_model_stale",
            "1 while a process serves another version than the serve ref names (it failed to load: _stats.models).",
            labels=["model"],
        )
        for name in sorted(waiting | {model["model"] for model in snap["models"]}):
            ready.add_metric([name], 0 if name in waiting else 1)
            behind.add_metric([name], 1 if name in stale else 0)
        yield ready
        yield behind
        yield GaugeMetricFamily(
            "heirloom_ready",
            "1 while _ready answers true, else 0 (starting, a model unserved, draining).",
            value=snap["ready"],
        )
        if "workers" in snap:
            workers = GaugeMetricFamily(
                "heirloom_workers",
                "Worker processes: connected, ready, expected (what _ready waits for).",
                labels=["state"],
            )
            for state, count in snap["workers"].items():
                workers.add_metric([state], count)
            yield workers
            yield CounterMetricFamily(
                "heirloom_workers_lost",
                "Workers lost without a planned stop (exited, killed, silent, key revoked); local ones are respawned.",
                value=snap["workers_lost"],
            )
        yield from usage_families(snap)


def usage_families(snap: Snapshot) -> Iterator[Any]:
    """Storage and memory against their limits, and the replies not delivered: a heartbeat's
    numbers are untrusted, so one that is not a size in MiB is left out, as a limit of none."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    used = GaugeMetricFamily("heirloom_storage_used_bytes", "Bytes the project holds, by store.", labels=["store"])
    quota = GaugeMetricFamily(
        "heirloom_storage_quota_bytes", "The project's quota, by store (none: no series).", labels=["store"]
    )
    storage = snap.get("storage") if isinstance(snap.get("storage"), dict) else {}
    for store in ("artifacts", "logs"):
        usage = storage.get(store) if isinstance(storage.get(store), dict) else {}
        for family, key in ((used, "used_mb"), (quota, "quota_mb")):
            if (mb := _mib(usage.get(key))) is not None and (mb or family is used):
                family.add_metric([store], round(mb * MIB))  # whole bytes (used_mb is to the KiB)
    yield used
    yield quota
    resident = GaugeMetricFamily("heirloom_resident_bytes", "Resident memory, by process id.", labels=["worker"])
    budget = GaugeMetricFamily(
        "heirloom_memory_budget_bytes", "Resident memory past which a process refuses requests.", labels=["worker"]
    )
    for pid, usage in snap.get("memory", {}).items():
        usage = usage if isinstance(usage, dict) else {}
        for family, key in ((resident, "resident_mb"), (budget, "memory_budget_mb")):
            if (mb := _mib(usage.get(key))) is not None and (mb or family is resident):
                family.add_metric([pid], mb * MIB)
    yield resident
    yield budget
    replies = snap.get("replies", {})
    yield CounterMetricFamily(
        "heirloom_dropped_replies",
        "Large replies dropped: their client was not reading them (reply_backlog_mb).",
        value=replies.get("dropped", 0),
    )
    yield CounterMetricFamily(
        "heirloom_undeliverable_replies",
        "Replies ZeroMQ refused: the client had gone, or its queue was full.",
        value=replies.get("undeliverable", 0),
    )


def _mib(value: Any) -> float | None:
    """``value`` if it is a size in MiB (0 up to MAX_COUNT bytes), else None."""
    return float(value) if _is_number(value) and 0 <= value <= MAX_COUNT / MIB else None


def batch_summary(histogram: dict[str, Any] | None) -> dict[str, Any] | None:
    """``_stats``' ``batch_sizes`` from a batch histogram: the count and mean are exact, p50 and
    max the upper bounds of their buckets; None for a route that never ran a batch."""
    if histogram is None or not sum(histogram["counts"]):
        return None
    batches, bounds = sum(histogram["counts"]), [*histogram["bounds"], histogram["bounds"][-1]]
    filled = [bound for bound, count in zip(bounds, histogram["counts"], strict=True) if count]
    running, median = 0, filled[-1]
    for bound, count in zip(bounds, histogram["counts"], strict=True):
        running += count
        if running * 2 >= batches:
            median = bound
            break
    return {"batches": batches, "mean": round(histogram["sum"] / batches, 2), "p50": median, "max": filled[-1]}


def _cumulative(histogram: dict[str, Any]) -> list[tuple[str, float]]:
    running, buckets = 0, []
    for bound, count in zip([*histogram["bounds"], float("inf")], histogram["counts"], strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
    return buckets
