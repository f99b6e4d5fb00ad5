"""The ``recommend`` api: ``<name>.recommend`` (batched), ``.similar``, ``.similar_text``
and ``.event``.

Replies come from the model's handle, read once per batch or request, so a hot swap
never mixes versions inside a reply and every reply names the version that produced it.
Events are appended to a durable log (synced before the OK) that the ``events`` source
reads, so the next ``heirloom train`` learns from them.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np

import heirloom
from heirloom_plugins.model_needs import PerInstance, answer_within, failed_answer, missing_members, refusal, started
from heirloom_plugins.recommend.events import EventInput, event_log_path
from heirloom_plugins.recommend.model import HybridRecommender
from heirloom_plugins.recommend.records import ID_SCHEMA, TEXT_ID, Id, id_key, id_ok, parse_year
from heirloom_plugins.recommend.tower import ItemText
from heirloom_plugins.recommend.vetting import RECOMMEND_DOC, asked, described, position_problem, ranked_items

Reply = heirloom.Versioned | heirloom.RequestError
MAX_TITLE_CHARS = 1000


def _k_between(low: int, high: int):
    def check(instance: Any, attribute: attrs.Attribute, value: int) -> None:
        if not low <= value <= high:
            raise ValueError(f"'{attribute.name}' must be between {low} and {high}, got {value!r}")

    return check


def inputs(max_k: int, max_history: int) -> dict[str, type]:
    """The attrs classes of the request bodies, with this api's limits in their validators."""
    k_ok = _k_between(1, max_k)
    k_schema = {"schema": {"minimum": 1, "maximum": max_k}}  # what the validators enforce, for _routes and OpenAPI

    ids = heirloom.list_limit(max_history, each=id_ok, min_items=0)
    ids_schema = {"schema": {"items": {"anyOf": [{"type": "string", **TEXT_ID}, {"type": "integer"}]}}}

    @attrs.define
    class RecommendInput:
        """A known ``user``, the ``history`` (item ids) of someone the model has not seen, or both
        (a known user's items since the served version learnt them); items to ``exclude``; ``k``."""

        __schema__: ClassVar[dict[str, Any]] = {
            "anyOf": [
                {"required": ["user"], "properties": {"user": {"type": ["string", "integer"]}}},
                {"required": ["history"], "properties": {"history": {"type": "array"}}},
            ]
        }

        user: Id | None = attrs.field(default=None, validator=id_ok, metadata=ID_SCHEMA)
        history: list[Id] | None = attrs.field(default=None, validator=ids, metadata=ids_schema)
        exclude: list[Id] = attrs.field(factory=list, validator=ids, metadata=ids_schema)
        k: int = attrs.field(default=10, validator=k_ok, metadata=k_schema)

        def __attrs_post_init__(self) -> None:
            if self.user is None and self.history is None:
                raise ValueError("'user' (a known user id), 'history' (a list of item ids) or both is required")

    @attrs.define
    class SimilarInput:
        """A catalogue item and how many neighbours."""

        item: Id = attrs.field(validator=id_ok, metadata=ID_SCHEMA)
        k: int = attrs.field(default=10, validator=k_ok, metadata=k_schema)

    def title_ok(instance: Any, attribute: attrs.Attribute, value: str) -> None:
        if len(value) > MAX_TITLE_CHARS:  # the length got, as the other limits say it (checker 270)
            raise ValueError(f"'title' is {len(value)} characters; at most {MAX_TITLE_CHARS} are accepted")
        if not value.strip():
            raise ValueError(f"'title' must be 1 to {MAX_TITLE_CHARS} characters, not blank")

    @attrs.define
    class SimilarTextInput:
        """An item that is not in the catalogue, by its title (``Name (1999)``) and genres."""

        title: str = attrs.field(
            validator=title_ok, metadata={"schema": {"minLength": 1, "maxLength": MAX_TITLE_CHARS, "pattern": r"\S"}}
        )
        genres: list[str] = attrs.field(factory=list)
        k: int = attrs.field(default=10, validator=k_ok, metadata=k_schema)

    @attrs.define
    class HistoryInput:
        """A known ``user`` and at most ``limit`` of their items."""

        user: Id = attrs.field(validator=id_ok, metadata=ID_SCHEMA)
        limit: int = attrs.field(
            default=max_history,
            validator=_k_between(1, max_history),
            metadata={"schema": {"minimum": 1, "maximum": max_history}},
        )

    return {
        "recommend": RecommendInput,
        "similar": SimilarInput,
        "similar_text": SimilarTextInput,
        "history": HistoryInput,
    }


#: What the routes read of the model (a call: ``()``), as a hybrid-recommender has them.
RECOMMENDER_NEEDS = (
    "catalogue.index",
    "catalogue.describe()",
    "histories.index",
    "histories.of()",
    "recommend()",
    "similar()",
    "similar_text()",
)
#: What a reply never holds, as messages say it.
LEFT_OUT = "an item of the request's user, history or exclude, which the reply never holds"
ASKED_ABOUT = "the item it was asked about, which the reply never holds"
#: How many items the start check's batch-order probe asks per history.
PROBE_K = 10


@attrs.define
class RecommendApi(heirloom.Api):
    """Serves a hybrid recommender: recommendations, similar items, new items by text, events."""

    #: The hybrid-recommender model.
    model: str = heirloom.ref("model")
    #: Largest ``k``, and longest ``history``, a request may ask for.
    max_k: int = attrs.field(default=100, validator=heirloom.at_least(1))
    max_history: int = attrs.field(default=1000, validator=heirloom.at_least(1))
    #: Batching of ``recommend``: at most this many requests per model call. A request waits
    #: at most ``max_wait_ms`` for company; 0 batches what queues while the previous batch
    #: computes, which suits a model whose call costs well under a millisecond.
    max_batch: int = attrs.field(default=64, validator=heirloom.route_limit("max_batch"))
    max_wait_ms: float = attrs.field(default=0.0, validator=heirloom.route_limit("max_wait_ms"))
    #: Where ``<name>.event`` appends (default: under HEIRLOOM_HOME, where the ``events`` source reads).
    events_path: str | None = None
    #: The event log's size limit in MiB (with the project's log quota): past it, an event is
    #: refused RESOURCE_EXHAUSTED.
    events_max_mb: int = attrs.field(default=256, validator=heirloom.mebibytes())

    def check(self, models: dict[str, heirloom.Model]) -> list[tuple[str, str]]:
        """A model of another type must have what the routes read of a hybrid recommender."""
        if (model := models.get(self.model)) is None:
            return []
        if missing := missing_members(model, RECOMMENDER_NEEDS):
            return [refusal("model", model, "recommend", f"it lacks {', '.join(missing)}", RECOMMEND_DOC)]
        problem = _ranking_problem(model) if started(model) else None  # only a started one is asked
        return [refusal("model", model, "recommend", problem, RECOMMEND_DOC)] if problem else []

    def start(self, ctx: heirloom.Context) -> None:
        super().start(ctx)
        self.handle = ctx.model(self.model)
        self.inputs = inputs(self.max_k, self.max_history)
        self._kept = PerInstance(lambda model: {})  # each served version's vetted items (vetting.KEPT)
        path = Path(self.events_path) if self.events_path else event_log_path(ctx.project, ctx.name)
        self.events = heirloom.AppendLog(path, max_bytes=self.events_max_mb << 20, quota=ctx.log_quota())

    def stop(self) -> None:
        events = getattr(self, "events", None)
        if events is not None:
            events.close()

    def routes(self) -> list[heirloom.Route]:
        return [
            heirloom.Route(
                "recommend",
                handler=self.recommend_batch,
                input=self.inputs["recommend"],
                batched=True,
                max_batch=self.max_batch,
                max_wait_ms=self.max_wait_ms,
                description="The k best items for {'user': id}, {'history': [item ids]} or both, never ones they "
                "have or 'exclude'.",
            ),
            heirloom.Route(
                "similar",
                handler=self.similar,
                input=self.inputs["similar"],
                inline=True,
                description="Items a user who has {'item': id} should see next.",
            ),
            heirloom.Route(
                "similar_text",
                handler=self.similar_text,
                input=self.inputs["similar_text"],
                description="Catalogue items for a new item known by {'title', 'genres'} alone.",
            ),
            heirloom.Route(
                "history",
                handler=self.history,
                input=self.inputs["history"],
                inline=True,
                description="The catalogue items a known {'user': id} has, as the served version learnt them.",
            ),
            heirloom.Route(
                "event",
                handler=self.event,
                input=EventInput,
                description="Record {'user', 'item', 'kind', 'value'} (durable before OK); the next train learns it.",
            ),
        ]

    def _serving(self) -> tuple[HybridRecommender, str | None]:
        return heirloom.served_model(self.handle)

    def recommend_batch(self, bodies: list[Any]) -> list[Any]:
        model, version = self._serving()
        results: list[Any] = [None] * len(bodies)
        wanted: list[tuple[int, np.ndarray, np.ndarray, int]] = []
        for position, body in enumerate(bodies):
            try:
                had = _withheld(model, body.user)
                wanted.append(
                    (position, self._history(model, version, body, had), _excluded(model, body.exclude, had), body.k)
                )
            except heirloom.RequestError as error:
                results[position] = error
        if not wanted:
            return results
        _, histories, excluded, ks = zip(*wanted, strict=True)
        arguments = [list(histories), list(ks), list(excluded)]
        if (weigh := getattr(model, "strengths", None)) is not None:  # a hybrid-recommender's half_life_days
            users = [bodies[position].user for position, *_ in wanted]
            rows = [None if user is None else model.histories.index.get(id_key(user)) for user in users]
            arguments.append([asked(model, "strengths()", weigh, *pair) for pair in zip(rows, histories, strict=True)])
        lists = asked(model, "recommend()", model.recommend, *arguments)
        if not isinstance(lists, list) or len(lists) != len(wanted):
            said = f"{len(lists)} lists" if isinstance(lists, list) else type(lists).__name__
            problem = f"its recommend() returned {said} for {len(wanted)} requests, not one list each"
            error = failed_answer(model, problem, RECOMMEND_DOC)
            return [error if result is None else result for result in results]
        for (position, history, left, k), ranked in zip(wanted, lists, strict=True):
            leave = {*history.tolist(), *left.tolist()}
            results[position] = self._reply(model, version, ranked, k, leave, ("its recommend()", LEFT_OUT))
        return results

    def _history(self, model: HybridRecommender, version: str | None, body: Any, had: np.ndarray) -> np.ndarray:
        """The user's learnt items and the request's ``history`` together, read-only: they are
        what the reply leaves out, read again after the model's call. A user the version has only
        validation items of (``had``) is known, with no learnt items."""
        learnt = np.zeros(0, dtype=np.int64)
        if body.user is not None:
            row = model.histories.index.get(id_key(body.user))
            if row is None and body.history is None and not len(had):
                raise heirloom.RequestError(
                    "NOT_FOUND",
                    f"user {body.user!r} is unknown to {version}; send their 'history' instead",
                    "body.user",
                )
            if row is not None:  # a new user: their history alone
                learnt = asked(model, "histories.of()", model.histories.of, row)
        index = model.catalogue.index
        positions = []
        for number, item in enumerate(body.history or ()):
            if id_key(item) not in index:
                raise heirloom.RequestError(
                    "NOT_FOUND", f"item {item!r} is not in the catalogue of {version}", f"body.history[{number}]"
                )
            positions.append(index[id_key(item)])
        merged = np.union1d(learnt, np.asarray(positions, dtype=np.int64))
        merged.flags.writeable = False
        return merged

    def similar(self, body: Any) -> Reply:
        model, version = self._serving()
        position = self._item(model, version, body.item)
        what = f"similar({position}, {body.k})"
        ranked = asked(model, what, model.similar, position, body.k)
        return self._reply(model, version, ranked, body.k, {position}, (f"its {what}", ASKED_ABOUT))

    def similar_text(self, body: Any) -> Reply:
        model, version = self._serving()
        text = ItemText(body.title, parse_year(body.title), tuple(body.genres))
        ranked = asked(model, "similar_text()", model.similar_text, text, body.k)
        return self._reply(model, version, ranked, body.k, frozenset(), ("its similar_text()", ""))

    def _reply(
        self, model: Any, version: str | None, ranked: Any, k: int, left_out: AbstractSet[int], said: tuple[str, str]
    ) -> Reply:
        """``{"items": [{"item", "title", "year", "genres", "score"}], "version"}``, best first, from
        the model's ``ranked`` pairs, or INTERNAL naming the model (for this request alone) when they
        break a promise the reply makes (vetting.py; ``said``: the call, and whose items ``left_out``
        holds)."""
        items = ranked_items(model, ranked, k, left_out, *said, kept=self._kept(model))
        if isinstance(items, str):
            return failed_answer(model, items, RECOMMEND_DOC)
        return heirloom.Versioned({"items": items, "version": version}, version)

    def history(self, body: Any) -> heirloom.Versioned:
        model, version = self._serving()
        row = model.histories.index.get(id_key(body.user))
        if row is None and not len(_withheld(model, body.user)):  # one only validation names is known, as to recommend
            raise heirloom.RequestError("NOT_FOUND", f"user {body.user!r} is unknown to {version}", "body.user")
        positions = [] if row is None else asked(model, "histories.of()", model.histories.of, row).tolist()
        size, kept, items = len(model.catalogue.index), self._kept(model), []
        for position in positions[: body.limit]:
            item = position_problem(position, size, "its histories.of()") or described(model, position, kept)
            if isinstance(item, str):
                raise failed_answer(model, item, RECOMMEND_DOC)
            items.append(item)
        return heirloom.Versioned({"items": items, "count": len(positions), "version": version}, version)

    def event(self, body: EventInput) -> dict[str, Any]:
        model, version = self._serving()
        self._item(model, version, body.item)
        with heirloom.durable_write("event", f"apis.{self.ctx.name}.events_max_mb = {self.events_max_mb} MiB"):
            user, item = id_key(body.user), id_key(body.item)
            self.events.append({"user": user, "item": item, "kind": body.kind, "value": body.value})
        return {"recorded": True}

    @staticmethod
    def _item(model: HybridRecommender, version: str | None, item: Any) -> int:
        position = model.catalogue.index.get(id_key(item))
        if position is None:
            raise heirloom.RequestError("NOT_FOUND", f"item {item!r} is not in the catalogue of {version}", "body.item")
        return position


def _ranking_problem(model: Any) -> str | None:
    """What is wrong with the model's answer for an empty history (as each request's answer is
    checked: numpy's float32 scores failed every reply), or with the order of its batch's answers."""
    nothing = np.zeros(0, dtype=np.int64)
    what = "its recommend([an empty history], [1], [nothing excluded])"
    ranked, problem = answer_within(lambda: model.recommend([nothing], [1], [nothing]), what)
    if problem is not None:
        return problem
    if not isinstance(ranked, list) or len(ranked) != 1:
        return f"{what} returned {type(ranked).__name__}, not a list of one list of (position, score) pairs"
    items, problem = answer_within(lambda: ranked_items(model, ranked[0], 1, frozenset(), what, "", kept={}), what)
    return problem or (items if isinstance(items, str) else None) or _order_problem(model, nothing)


def _order_problem(model: Any, nothing: np.ndarray) -> str | None:
    """Whether the model answers a batch of two requests in another order: each of 16 concurrent
    clients got another's items. Only answers that differ asked alone tell (never ties)."""
    if not len(model.catalogue.index):
        return None
    first = np.zeros(1, dtype=np.int64)  # the history of position 0

    def ask() -> tuple[list[Any], Any]:
        alone = [model.recommend([history], [PROBE_K], [nothing])[0] for history in (nothing, first)]
        return alone, model.recommend([nothing, first], [PROBE_K, PROBE_K], [nothing, nothing])

    what = f"its recommend([an empty history, [0]], [{PROBE_K}, {PROBE_K}], [nothing excluded, nothing excluded])"
    answers, problem = answer_within(ask, what)
    if problem is not None:
        return problem
    alone, together = (_positions(answer) for answer in (answers[0], answers[1]))
    if alone and alone[0] != alone[1] and together == alone[::-1]:
        return f"{what} answered each request with the other's items (asked alone, they get different ones)"
    return None


def _positions(answers: Any) -> list[list[Any]] | None:
    """The positions each of ``answers`` ranks, or None where they are not lists of pairs (each
    request's check says what is wrong with those)."""
    try:
        return [[pair[0] for pair in ranked] for ranked in answers]
    except (TypeError, IndexError, KeyError):
        return None


def _withheld(model: HybridRecommender, user: Id | None) -> np.ndarray:
    """The items the version has of ``user`` but did not learn from (a hybrid-recommender's
    validation pairs; a model without ``withheld`` has none): never recommended."""
    withheld = getattr(model, "withheld", None)
    if user is None or withheld is None:
        return np.zeros(0, dtype=np.int64)
    return asked(model, "withheld()", lambda key: np.asarray(withheld(key), dtype=np.int64), id_key(user))


def _excluded(model: HybridRecommender, items: list[Id], withheld: np.ndarray) -> np.ndarray:
    """Catalogue positions of the items a request excludes (one the catalogue lacks is never
    recommended anyway: a basket may hold items newer than the served version) and of the
    user's ``withheld`` items."""
    index = model.catalogue.index
    keys = [id_key(item) for item in items]
    positions = np.union1d(withheld, np.asarray([index[key] for key in keys if key in index], dtype=np.int64))
    positions.flags.writeable = False  # what the reply leaves out, read after the model's call
    return positions
