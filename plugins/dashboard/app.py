"""The dashboard's web application: server-rendered pages over an artifact store.

Read-only by construction: every route is a GET that reads the store (``list``,
``lineage``, ``resolve``) or, with ``--connect``, calls the daemon's ``_stats`` and
``_ready``. Pages are Jinja2 templates with autoescaping; pictures are drawn by
:mod:`heirloom.reports` when a version is first viewed and kept for the next views.
Endpoints are plain functions, so Starlette runs them on its thread pool and a slow store
or daemon never blocks the event loop.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import heirloom
from heirloom.options import host_guard
from heirloom.reports import report_css, report_fragment, scalar_metrics, template_environment
from heirloom_plugins.dashboard.lineage import (
    GENERATIONS_DRAWN,
    LINE_CHARS,
    NODE_HEIGHT,
    NODE_WIDTH,
    REF_CHARS,
    VERSIONS_PER_GENERATION,
    Graph,
    chain_graph,
    cut,
    model_graph,
)

#: Scalar metrics shown per version in listings.
LISTED_METRICS = 3
#: Seconds the live page waits for the daemon's answers.
LIVE_TIMEOUT = 2
#: Versions whose report HTML (with its pictures) is kept, the most recently viewed.
REPORTS_KEPT = 32


def version_url(artifact: Any) -> str:
    return f"/models/{artifact.project}/{artifact.model}/{artifact.version}"


def model_url(project: str, model: str) -> str:
    return f"/models/{project}/{model}"


def listed_metrics(artifact: Any) -> list[tuple[str, Any]]:
    return list(scalar_metrics(artifact.metrics).items())[:LISTED_METRICS]


class Reports:
    """Report HTML by version (ref and digest), the ``REPORTS_KEPT`` most recently viewed: a stored
    version never changes, and drawing its pictures took a third of a second each view. A version is
    drawn by one request at a time: simultaneous first views wait for that drawing (each drew its own)."""

    def __init__(self) -> None:
        self._kept: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._drawing: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def __call__(self, artifact: Any) -> str:
        key = (artifact.ref, artifact.digest)  # a version number gc freed and put gave again has another digest
        with self._lock:
            if (html := self._kept_html(key)) is not None:
                return html
            drawing = self._drawing.setdefault(key, threading.Lock())
        with drawing:  # other versions' pages are not held up: only this version's views wait
            with self._lock:
                if (html := self._kept_html(key)) is not None:
                    return html
            html = None
            try:
                html = report_fragment(artifact.metrics)
            finally:
                with self._lock:  # kept before the drawing is forgotten: a view in between finds it
                    if html is not None:
                        self._kept[key] = html
                        if len(self._kept) > REPORTS_KEPT:
                            self._kept.popitem(last=False)
                    self._drawing.pop(key, None)
        return html

    def _kept_html(self, key: tuple[str, str]) -> str | None:
        if key in self._kept:
            self._kept.move_to_end(key)
            return self._kept[key]
        return None


class Dashboard:
    """The state behind the pages: the store, and a client for the daemon when connected."""

    def __init__(self, store: Any, connect: str | None, refresh: int, curve: heirloom.CurveClient | None = None):
        self.store = store
        self.connect = connect
        self.curve = curve
        self.refresh = refresh
        self._client: heirloom.Client | None = None
        self._client_lock = threading.Lock()
        self.reports = Reports()
        self.templates = Jinja2Templates(env=template_environment("heirloom_plugins.dashboard"))
        self.templates.env.globals.update(
            version_url=version_url,
            report_css=report_css(),
            store_root=str(getattr(store, "root", store)),
            connect=connect,
            refresh=None,
            node_width=NODE_WIDTH,
            node_height=NODE_HEIGHT,
            cut=cut,
            ref_chars=REF_CHARS,
            line_chars=LINE_CHARS,
        )

    def page(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        return self.templates.TemplateResponse(request, template, context, status_code=status_code)

    def svg(self, graph: Graph) -> str:
        return self.templates.env.get_template("lineage.svg.j2").render(graph=graph)

    @staticmethod
    def lineage_note(graph: Graph) -> str | None:
        """What a graph cut to its last ``GENERATIONS_DRAWN`` generations, and to the newest
        ``VERSIONS_PER_GENERATION`` versions of each, leaves out."""
        said = []
        if graph.hidden_versions:
            said.append(
                f"The graph shows the last {GENERATIONS_DRAWN} generations: the {graph.hidden_versions} version(s) of "
                f"the {graph.hidden_generations} earliest generations are not drawn (each version's page names its "
                "parent)."
            )
        if graph.crowded:
            said.append(
                f"It draws the newest {VERSIONS_PER_GENERATION} versions of each generation, this model's first, and "
                f"their parents: {graph.crowded} more are not drawn (the table below lists this model's versions)."
            )
        return " ".join(said) or None

    # -- pages ---------------------------------------------------------------------------
    def index(self, request: Request) -> Response:
        models: dict[tuple[str, str], list[Any]] = {}
        for artifact in self.store.list():
            models.setdefault((artifact.project, artifact.model), []).append(artifact)
        entries = []
        for (project, model), versions in sorted(models.items()):
            latest = versions[-1]
            entries.append(
                {
                    "name": f"{project}/{model}",
                    "url": model_url(project, model),
                    "versions": len(versions),
                    "latest": latest,
                    "aliases": [(alias, a.version) for a in versions for alias in a.aliases],
                    "metrics": listed_metrics(latest),
                }
            )
        return self.page(request, "index.html.j2", models=entries)

    def model(self, request: Request) -> Response:
        project, model = request.path_params["project"], request.path_params["model"]
        artifacts = self.store.list()
        versions = [a for a in artifacts if a.project == project and a.model == model]
        if not versions:
            raise HTTPException(404, f"the store holds no version of {project}/{model}")
        graph = model_graph(artifacts, project, model)
        return self.page(
            request,
            "model.html.j2",
            name=f"{project}/{model}",
            graph_svg=self.svg(graph),
            lineage_note=self.lineage_note(graph),
            versions=[(a, listed_metrics(a)) for a in reversed(versions)],
        )

    def version(self, request: Request) -> Response:
        params = request.path_params
        ref = f"{params['project']}/{params['model']}@{params['version']}"
        try:
            chain = self.store.lineage(ref)
        except heirloom.RefError as exc:  # names nothing stored; any other failure is the store's (503)
            raise HTTPException(404, str(exc)) from exc
        artifact = chain[0]
        report_html, report_error = None, None
        try:
            report_html = self.reports(artifact) if artifact.metrics else None
        except Exception as exc:  # noqa: BLE001 - a plugin's metrics may have any shape; the page still shows
            report_error = f"cannot draw the recorded metrics: {type(exc).__name__}: {exc}"
        graph = chain_graph(chain, artifact.ref)
        return self.page(
            request,
            "version.html.j2",
            artifact=artifact,
            chain=chain,
            model_url=model_url(artifact.project, artifact.model),
            graph_svg=self.svg(graph),
            lineage_note=self.lineage_note(graph),
            report_html=report_html,
            report_error=report_error,
        )

    def live(self, request: Request) -> Response:
        """The daemon's stats, reloading every ``--refresh`` s unless paused (``?refresh=0``: a screen-reader
        user reading the table is not sent back to its top)."""
        paused = request.query_params.get("refresh") == "0"
        context: dict[str, Any] = {
            "refresh": self.refresh if self.connect and not paused else None,
            "every": self.refresh,
            "paused": paused,
            "error": None,
        }
        if self.connect:
            try:
                client = self.client()
                stats, ready = client.call("_stats"), client.call("_ready")
            except heirloom.DeadlineExceeded:  # the client's words advise a timeout option this page has not
                context["error"] = f"no answer within {LIVE_TIMEOUT} s: {self.silence()}"
            except heirloom.HeirloomError as exc:
                context["error"] = str(exc)
            else:
                routes = sorted(stats.get("routes", {}).items(), key=lambda item: (item[0].startswith("_"), item[0]))
                context.update(
                    stats=stats,
                    ready=ready.get("ready"),
                    routes=routes,
                    models=stats.get("models", {}),
                    workers=stats.get("workers", []),
                )
        return self.page(request, "live.html.j2", **context)

    def not_found(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        detail = getattr(exc, "detail", None) or "no such page"
        if status == 405:  # Starlette's words were "Method Not Allowed"; its Allow header is kept
            detail = f"the dashboard is read-only: it answers GET and HEAD, not {request.method}"
        response = self.page(request, "error.html.j2", status_code=status, status=status, message=detail)
        response.headers.update(getattr(exc, "headers", None) or {})
        return response

    def unreadable(self, request: Request, exc: Exception) -> Response:
        """A store that cannot be read now (a damaged or vanished index) is a 503 saying why on any
        page, not a bare 500: the message names the file and the way out."""
        return self.page(request, "error.html.j2", status_code=503, status=503, message=str(exc))

    # -- the daemon ----------------------------------------------------------------------
    def client(self) -> heirloom.Client:
        with self._client_lock:
            if self._client is None:
                self._client = heirloom.Client(self.connect, timeout=LIVE_TIMEOUT, retries=0, curve=self.curve)
            return self._client

    def silence(self) -> str:
        """What to check when the daemon never answers (a CurveZMQ daemon ignores a client it does not know)."""
        if self.curve is not None:
            return "is the daemon running and reachable, and the --curve-secret key one it authorises?"
        return (
            "is the daemon running and reachable? One serving over CurveZMQ answers only a client with an "
            "authorised key (--curve-secret, --curve-server)"
        )

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None


#: Headers on every page and error: no other site may frame the dashboard (clickjacking) nor a browser sniff a
#: reply's type, as the gateway's pages say (checker h360 F1: a page on another port framed it).
GUARDED_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),  # what a browser or proxy keeps of a page (h460 F1, the gateway's)
]


def guarded_headers(app: ASGIApp) -> ASGIApp:
    """``app`` with GUARDED_HEADERS added to each HTTP reply's start."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *GUARDED_HEADERS]}
            await send(message)

        await app(scope, receive, send_guarded if scope["type"] == "http" else send)

    return guarded


def create_app(
    store: Any,
    connect: str | None = None,
    refresh: int = 5,
    curve: heirloom.CurveClient | None = None,
    hosts: frozenset[str] | None = None,
) -> Starlette:
    """The dashboard over ``store`` (anything with ``list``, ``lineage``); ``connect``: a daemon
    (``curve``: this client's keys, for a daemon serving over CurveZMQ); ``hosts``: the Host
    names it answers besides loopback ones (None: any), so a page rebinding its own name to
    127.0.0.1 cannot read the store's models and metrics."""
    dashboard = Dashboard(store, connect, refresh, curve)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        dashboard.close()

    routes = [
        Route("/", dashboard.index),
        Route("/live", dashboard.live),
        Route("/models/{project}/{model}", dashboard.model),
        Route("/models/{project}/{model}/{version}", dashboard.version),
    ]
    middleware = [Middleware(guarded_headers), Middleware(host_guard, hosts=hosts)]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers={HTTPException: dashboard.not_found, heirloom.HeirloomError: dashboard.unreadable},
    )
