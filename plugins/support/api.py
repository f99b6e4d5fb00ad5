"""The ``support`` api: answer a customer, hand over to a person when unsure, learn from it.

``<name>.answer`` runs the intent model and the FAQ retriever on a batch of texts (batched
route). A text is handed off when the intent model says "out of scope", and/or (see
``handoff``) the best FAQ answer is below the retriever's confidence threshold; a handoff
is appended to a durable log (``heirloom.AppendLog``) before the reply, so an acknowledged
handoff is never lost. ``<name>.handoffs`` lists them, ``<name>.resolve`` records what a
person decided (an intent or an FAQ answer); the ``handoffs`` source turns those
decisions into training records for the next ``heirloom train``, those naming a new intent
once ``<name>.accept_intent`` accepts it (so a typo never becomes an intent).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import attrs

import heirloom
from heirloom_plugins.model_needs import (
    PerInstance,
    failed_answer,
    first_problem,
    missing_members,
    predictions_of,
    probed,
    refusal,
)
from heirloom_plugins.support.queue import HandoffQueue
from heirloom_plugins.support.sources import decide
from heirloom_plugins.support.vetting import (
    IntentTerms,
    answer_ids,
    best_answers,
    faq_problem,
    intent_problem,
    intent_terms,
)

#: What ``resolve`` reads of each model: the intents a person may name, and the ids of the answers.
INTENT_MEMBERS, FAQ_MEMBERS = ("labels", "out_of_scope_label"), ("document_ids()",)
SUPPORT_DOC = "docs/SUPPORT.md, 'Other models behind support'"
#: How each model's terms are read, and each of its answers checked against them (vetting.py).
TERMS = {"intent": intent_terms, "faq": answer_ids}
VETS = {"intent": intent_problem, "faq": faq_problem}

POLICIES = ("either", "both", "out_of_scope")
#: When each policy hands a question off, in words: the answer route's description states the api's (the console
#: reads it there, as ``_routes`` carries no api setting).
HANDOFF_WHEN = {
    "either": "when the intent is out of scope or the best FAQ answer is below the confidence threshold",
    "both": "only when the intent is out of scope and the best FAQ answer is below the confidence threshold",
    "out_of_scope": "when the intent is out of scope, whatever the answer",
}
STATED_POLICY = re.compile(r"handoff policy '(\w+)'")


def stated_policy(description: str) -> str | None:
    """The handoff policy an answer route's description states (None from a daemon that states none)."""
    found = STATED_POLICY.search(description)
    return found.group(1) if found and found.group(1) in POLICIES else None


#: Bytes of the log kept free for each decision or acceptance the queue still needs while a handoff is
#: decided again: a resolution line naming an intent or answer id of up to 140 bytes fits (the shipped
#: pattern's intents are at most 64), an acceptance too.
ROOM = 256
#: How many of a thread's answers an unknown ``answer_id``'s refusal lists.
MAX_HINTED = 10
#: How many new intents waiting for accept_intent a ``handoffs`` reply names (the most resolved first).
MAX_WAITING = 100
#: The share of ``[server] max_message_bytes`` a ``handoffs`` reply's listed handoffs may take (the rest: the
#: reply's other fields and its envelope): 10,000 long texts made a frame over the limit, INTERNAL (h333 F5).
LISTING_SHARE = 2
#: Why a resolution will not train (``resolve``'s ``why`` beside ``"trains": false``).
UNTRAINED = (
    "the intent model reads too little of this text (no letter or digit, or as many word pieces it does not know "
    "as ones it knows: an emoji, most Chinese): the resolution "
    "is kept, but no retrain learns from it, and such a text is always handed off"
)
log = logging.getLogger("heirloom.support")


def one_typo(new: str, known: str) -> bool:
    """Whether ``new`` is ``known`` but for its case or one letter added, dropped, changed or two
    swapped (``tex``/``tax``, ``refund_statsu``; difflib's ratio missed short names and case)."""
    a, b = new.casefold(), known.casefold()
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False  # card_arrival_late is no typo of card_arrival
    start = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    if len(a) == len(b):
        swapped = a[start + 2 :] == b[start + 2 :] and a[start : start + 2] == b[start : start + 2][::-1]
        return a[start + 1 :] == b[start + 1 :] or swapped
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return longer[start + 1 :] == shorter[start:]


def typo_of(new: str, names: Iterable[str]) -> str | None:
    """The first of ``names`` (sorted) that ``new`` is one typo from, other than ``new`` itself."""
    return min((name for name in names if name != new and one_typo(new, name)), default=None)


def _decided(decision: dict[str, Any]) -> dict[str, Any]:
    """What a decision decides (its intent, its answer), without whether the model knew the intent then."""
    return {key: value for key, value in decision.items() if key != "new_intent"}


def thread_hint(answer_id: str, ids: frozenset[str]) -> str:
    """The answers of the thread ``answer_id`` names or is one of (``faq-porting``,
    ``faq-roaming/9``), as its refusal's hint, so a person picks one that is there."""
    for thread in (answer_id, answer_id.rpartition("/")[0]):
        answers = sorted((i for i in ids if thread and i.startswith(f"{thread}/")), key=answer_order)
        if answers:
            more = " ..." if len(answers) > MAX_HINTED else ""
            return f"; the thread's answers are {', '.join(map(repr, answers[:MAX_HINTED]))}{more}"
    return ""


def answer_order(answer_id: str) -> tuple[str, int]:
    """``thread/N`` by thread, then by N as a number (``/2`` before ``/10``)."""
    thread, _, number = answer_id.rpartition("/")
    return thread, int(number) if number.isdigit() else 0


@attrs.define
class ResolveInput:
    """A person's decision about a handed-off query: its intent or the FAQ answer that fits."""

    __schema__: ClassVar[dict[str, Any]] = heirloom.one_of(intent="string", answer_id="string")

    id: str
    intent: str | None = attrs.field(default=None, metadata={"schema": heirloom.LABEL_SCHEMA})
    answer_id: str | None = None

    def __attrs_post_init__(self) -> None:
        if (self.intent is None) == (self.answer_id is None):
            raise ValueError("send exactly one of 'intent' or 'answer_id'")


@attrs.define
class AcceptInput:
    """A new intent that resolutions named, accepted: those resolutions train from now on. One that is one typo
    from an intent the model knows (or one accepted) is refused unless ``even_if_close`` says it is meant."""

    intent: str = attrs.field(validator=heirloom.text_limit(heirloom.MAX_LABEL_CHARS, blank=False))
    even_if_close: bool = False


@attrs.define
class HandoffsInput:
    """Which handoffs to list: the open ones (default) or all, newest first; ``before``: only those older than
    that handoff (a reply's ``next``), to page through a queue longer than ``limit``."""

    include_resolved: bool = False
    limit: int = attrs.field(
        default=100, validator=attrs.validators.and_(attrs.validators.ge(1), attrs.validators.le(10_000))
    )
    before: str | None = attrs.field(default=None, validator=heirloom.text_limit(200))


@attrs.define
class SupportApi(heirloom.Api):
    """Intent + FAQ answers + out-of-scope handoff to a person, with a durable queue."""

    #: The intent model (an ``encoder-classifier`` with ``reject = true``).
    intent: str = heirloom.ref("model")
    #: The FAQ retriever (an ``encoder-retriever``).
    faq: str = heirloom.ref("model")
    #: ``either``: hand off when the intent is out of scope OR the best answer is below
    #: the retriever's confidence rule (a knowledge base covering every intent). ``both``:
    #: only when both are true (a knowledge base about other things than the intents).
    #: ``out_of_scope``: when the intent is, whatever the answer (one covering some intents).
    handoff: str = attrs.field(default="either", validator=attrs.validators.in_(POLICIES))
    #: FAQ answers per reply.
    answers: int = attrs.field(default=3, validator=heirloom.above(0))
    max_batch: int = attrs.field(default=64, validator=heirloom.route_limit("max_batch"))
    max_wait_ms: float = attrs.field(default=2.0, validator=heirloom.route_limit("max_wait_ms"))
    max_text_chars: int = attrs.field(default=2_000, validator=heirloom.above(0))
    #: The handoff log (default ``$HEIRLOOM_HOME/handoffs/<project>/<api>.jsonl``) and its
    #: size limit in MiB (with the project's log quota): past it, a handoff is refused
    #: RESOURCE_EXHAUSTED rather than acknowledged and lost. People's decisions (resolve,
    #: accept_intent) may use a quarter more, so a full queue can still be worked off (a handoff decided
    #: again only what the open handoffs' first decisions and acceptances leave of it).
    handoff_path: str | None = None
    handoff_max_mb: int = attrs.field(default=256, validator=heirloom.mebibytes())
    #: Let ``<name>.resolve`` name an intent the intent model does not know (a new intent
    #: the next training learns), matching ``new_intent_pattern`` in full when it is set.
    new_intents: bool = False
    new_intent_pattern: str | None = attrs.field(
        default=None,
        converter=lambda value: value or None,
        validator=heirloom.label_pattern,  # "": unset
    )

    def check(self, models: dict[str, heirloom.Model]) -> list[tuple[str, str]]:
        """Models of other types must predict what ``answer`` reads (vetting.py): an intent they
        know and whether it is in scope; answers from their documents, and whether the best is
        one to give."""
        problems = []
        for field, members in (("intent", INTENT_MEMBERS), ("faq", FAQ_MEMBERS)):
            if (model := models.get(getattr(self, field))) is None:
                continue
            lacks = missing_members(model, members)
            problem = f"it lacks {', '.join(lacks)}" if lacks else self._answers_problem(field, model)
            if problem:
                problems.append(refusal(field, model, "support", problem, SUPPORT_DOC))
        return problems

    def _answers_problem(self, field: str, model: heirloom.Model) -> str | None:
        """What is wrong with ``model``'s terms or with its answers to the probe texts, or None."""
        terms = TERMS[field](model)
        if isinstance(terms, str):
            return terms
        predictions, problem = probed(model)
        return problem or first_problem(predictions or (), VETS[field], terms)

    def _terms_of(self, field: str, model: heirloom.Model) -> Any:
        """The served model's labels (intent) or answer ids (faq), read once per instance; INTERNAL
        naming the model when they are wrong."""
        terms = self._terms[field](model)
        if isinstance(terms, str):
            raise failed_answer(model, terms, SUPPORT_DOC)
        return terms

    def start(self, ctx: heirloom.Context) -> None:
        super().start(ctx)
        self.intent_handle = ctx.model(self.intent)
        self.faq_handle = ctx.model(self.faq)
        path = Path(self.handoff_path) if self.handoff_path else heirloom.log_path("handoffs", ctx.project, ctx.name)
        self.handoff_bytes = self.handoff_max_mb << 20
        # what a full log names, never its path: the setting that sizes it (whole MiB)
        self._limit = f"apis.{ctx.name}.handoff_max_mb = {self.handoff_max_mb} MiB"
        self._decisions_limit = f"apis.{ctx.name}.handoff_max_mb = {self.handoff_max_mb} MiB and a quarter more"
        self.log_bytes = self.handoff_bytes * 5 // 4
        self.log = heirloom.AppendLog(path, max_bytes=self.log_bytes, quota=ctx.log_quota())
        self.queue = HandoffQueue(path)
        self.queue.catch_up()  # the whole log now, before ready: not in the first request (16 s on 256 MiB)
        self._terms = {field: PerInstance(read) for field, read in TERMS.items()}

        @attrs.define
        class AnswerInput:
            """The customer's message."""

            text: str = attrs.field(validator=heirloom.text_limit(self.max_text_chars, blank=False))

        self.answer_input = AnswerInput

    def stop(self) -> None:
        log = getattr(self, "log", None)
        if log is not None:
            log.close()

    def routes(self) -> list[heirloom.Route]:
        return [
            heirloom.Route(
                "answer",
                handler=self.answer_batch,
                input=self.answer_input,
                batched=True,
                max_batch=self.max_batch,
                max_wait_ms=self.max_wait_ms,
                description="{'text'} -> intent, confidence, FAQ answers, handoff (durably queued when true); "
                f"handoff policy '{self.handoff}': {HANDOFF_WHEN[self.handoff]}.",
            ),
            heirloom.Route(
                "handoffs",
                handler=self.handoffs,
                input=HandoffsInput,
                admin=True,  # customers' own words: for the people who answer them, not for every client
                description="Handed-off queries, newest first: open ones, or all with include_resolved; "
                "{'before': a reply's 'next'} lists the older ones.",
            ),
            heirloom.Route(
                "resolve",
                handler=self.resolve,
                input=ResolveInput,
                admin=True,  # a decision trains the next model
                description="Record a person's decision {'id', 'intent' | 'answer_id'}; the next train learns it.",
            ),
            heirloom.Route(
                "accept_intent",
                handler=self.accept_intent,
                input=AcceptInput,
                admin=True,
                description="Accept a new intent {'intent'} resolutions named: they train from the next train on "
                "(one a typo from a known intent only with 'even_if_close': true).",
            ),
        ]

    def answer_batch(self, inputs: list[Any]) -> list[heirloom.Versioned | heirloom.RequestError]:
        intent_model, intent_version = heirloom.served_model(self.intent_handle)
        faq_model, faq_version = heirloom.served_model(self.faq_handle)
        texts = [body.text for body in inputs]
        intents, found = predictions_of(intent_model, texts), predictions_of(faq_model, texts)
        terms, ids = self._terms_of("intent", intent_model), self._terms_of("faq", faq_model)
        version = f"{intent_version}+{faq_version}"
        results: list[heirloom.Versioned | heirloom.RequestError] = []
        for text, intent, faq in zip(texts, intents, found, strict=True):
            if problem := intent_problem(intent, terms):  # vetting.py: this request fails, not the batch
                results.append(failed_answer(intent_model, problem, SUPPORT_DOC))
                continue
            if problem := faq_problem(faq, ids):
                results.append(failed_answer(faq_model, problem, SUPPORT_DOC))
                continue
            results.append(self._reply(text, intent, faq, version))
        return results

    def _reply(
        self, text: str, intent: dict[str, Any], faq: dict[str, Any], version: str
    ) -> heirloom.Versioned | heirloom.RequestError:
        """The reply to ``text`` from the two models' vetted predictions, its handoff queued first."""
        out_of_scope, unsure = not intent["in_scope"], not faq["confident"]
        rules = {"either": out_of_scope or unsure, "both": out_of_scope and unsure, "out_of_scope": out_of_scope}
        handoff = rules[self.handoff]
        answers = best_answers(faq["answers"], self.answers)
        reply: dict[str, Any] = {
            "intent": intent["label"] if intent["in_scope"] else None,
            "confidence": intent["confidence"],
            "answers": answers,
            # whether the top answer is one to show, for an app when no handoff reads it
            "answer_confidence": faq["confidence"],
            "answer_confident": faq["confident"],
            "handoff": handoff,
            "version": version,
        }
        if handoff:
            reasons = ["out_of_scope"] if out_of_scope else []
            if unsure and self.handoff != "out_of_scope":  # under that policy, an unsure answer was no reason
                reasons.append("low_answer_confidence")
            try:
                with heirloom.durable_write("handoff", self._limit):
                    reply["handoff_id"] = self._queue(text, intent, faq, answers, reasons, version)
            except heirloom.RequestError as refused:  # nothing queued: this request fails, not the batch
                return refused
            reply["handoff_reasons"] = reasons
        return heirloom.Versioned(reply, version)

    def _queue(
        self,
        text: str,
        intent: dict[str, Any],
        faq: dict[str, Any],
        answers: list[dict[str, Any]],
        reasons: list[str],
        version: str,
    ) -> str:
        handoff_id = uuid.uuid4().hex[:16]
        self.log.append(
            {
                "type": "handoff",
                "id": handoff_id,
                "text": text,
                "reasons": reasons,
                "intent_guess": intent["guess"],
                "confidence": intent["confidence"],
                "answer_guess": answers[0]["id"] if answers else None,
                "answer_confidence": faq["confidence"],
                "version": version,
            },
            max_bytes=self.handoff_bytes,
        )
        return handoff_id

    def handoffs(self, body: HandoffsInput) -> dict[str, Any]:
        room = self.ctx.system.profile.settings["server"].max_message_bytes // LISTING_SHARE
        listed, after, cut = self.queue.page(body.include_resolved, body.limit, body.before, room)
        waiting = self.queue.waiting()
        named = dict(sorted(waiting.items(), key=lambda item: (-item[1], item[0]))[:MAX_WAITING])
        known = self._known_intents() if named else []
        close = {intent: near for intent in named if (near := typo_of(intent, known))}
        # never the log's path: a client learns nothing of the server's files
        return {
            "handoffs": listed,
            "next": after,
            **({"truncated": True} if cut else {}),  # fewer than limit: the bytes a reply may take were reached
            "open": self.queue.open_count(),
            "waiting_intents": named,
            "waiting_count": len(waiting),
            **({"waiting_close_to": close} if close else {}),
        }

    def _known_intents(self) -> list[str]:
        """The intents a waiting one must not be a typo of: the served model's (its "none of them" too) and
        those accepted (the model may not know them yet)."""
        terms: IntentTerms = self._terms_of("intent", heirloom.served_model(self.intent_handle)[0])
        return [*sorted(terms.labels), terms.out_of_scope, *sorted(self.queue.accepted())]

    def resolve(self, body: ResolveInput) -> dict[str, Any]:
        if not self.queue.holds(body.id):
            raise heirloom.RequestError("NOT_FOUND", f"no handoff with id {body.id!r}", "body.id")
        out_of_scope = None
        if body.intent is not None:
            terms: IntentTerms = self._terms_of("intent", heirloom.served_model(self.intent_handle)[0])
            out_of_scope = terms.out_of_scope  # a person's "none of them": closes it
            known = [*sorted(terms.labels), out_of_scope]
            new_intent = heirloom.check_label(
                body.intent, known, "body.intent", allow_new=self.new_intents, pattern=self.new_intent_pattern
            )
        else:
            ids = self._terms_of("faq", heirloom.served_model(self.faq_handle)[0])
            if body.answer_id not in ids:  # a thread's id or its missing answer: its answers; else the closest id
                hint = thread_hint(body.answer_id, ids) or heirloom.did_you_mean(body.answer_id, sorted(ids))
                raise heirloom.RequestError(
                    "INVALID_ARGUMENT", f"unknown answer_id {body.answer_id!r}{hint}", "body.answer_id"
                )
            new_intent = False
        given = {"intent": body.intent} if body.intent is not None else {"answer_id": body.answer_id}
        decision = dict(given)
        if body.intent is not None and body.intent == out_of_scope:  # "none of them": no answer stands either
            decision["answer_id"] = ""  # in the log, where it withdraws one; the reply says what was sent
        new = {"new_intent": True} if new_intent else {}  # trains once accepted (accept_intent)
        resent = self._record({"type": "resolution", "id": body.id, **decision, **new})
        if resent is not None and body.intent is not None:  # answered as the first was, though the model learnt it
            new_intent = bool(resent.get("new_intent"))
        # a new intent one typo from a known or a waiting one (port_numbr, router_hlep): said, to resolve again;
        # waiting once this resolution is in, so a fixed typo (geogrphy, then geography) is not pointed back to
        close = self._close_to(body.intent, known) if new_intent else None
        untrained = body.intent is not None and body.intent != out_of_scope and not self._trains_on(body.id)
        return {
            "resolved": True,
            "id": body.id,
            **given,
            "new_intent": new_intent,
            **({"close_to": close} if close else {}),
            **({"trains": False, "why": UNTRAINED} if untrained else {}),
        }

    def _record(self, resolution: dict[str, Any]) -> dict[str, Any] | None:
        """Append ``resolution``, unless it decides what its handoff's latest decision says already (a resent
        or repeated one: acknowledged, not appended, and that decision returned). A handoff's first decision may
        use all the room kept for decisions; another one for a resolved handoff only what leaves ``ROOM`` bytes
        per open handoff's first decision and per acceptance the queue may still need (of the intent an open
        handoff's decision may name, of a waiting one, of the one this names): one client re-resolving one
        handoff over and over filled that room, and no other handoff could be resolved nor intent accepted
        (h309 F2). The cap is checked under the log's lock against its size, so workers sharing the log cannot
        pass it together. The check and the append are one step under the log's lock (``AppendLog.locked``, the
        queue caught up inside it): two workers or threads sent the same resolution at once both found no
        earlier decision and both appended it (h335 F1)."""
        with heirloom.durable_write("resolution", self._decisions_limit), self.log.locked() as write:
            earlier = self.queue.decision_of(resolution["id"])
            if earlier is not None and self._resent(earlier, resolution):
                return earlier
            opened, waiting = self.queue.owed() if earlier is not None else (0, 0)
            kept = ROOM * (2 * opened + waiting + 1)
            try:
                write([resolution], self.log_bytes - kept if earlier is not None else None)
            except heirloom.LogFull as full:
                if earlier is None or full.quota:
                    raise
                message = (
                    f"{self.ctx.name}.resolve: handoff {resolution['id']!r} is resolved already, and another "
                    f"decision for it would take the room kept to resolve the {opened} open handoff(s) and accept "
                    f"the new intents they or waiting resolutions name ({kept} bytes: {ROOM} a decision or an "
                    f"acceptance, within {self._decisions_limit}); nothing was recorded: resolve the open "
                    "handoffs first"
                )
                raise heirloom.RequestError("RESOURCE_EXHAUSTED", message, "body.id") from None
        return None

    def _resent(self, earlier: dict[str, Any], resolution: dict[str, Any]) -> bool:
        """Whether ``resolution`` decides what ``earlier`` decided. Whether the served model knew the intent
        (``new_intent``) counts only while ``earlier`` waits for accept_intent, where a model that has learnt
        it since makes the resolution train without: a resend once the accepted intent was trained was
        appended again, and answered ``new_intent: false`` (h315 F5)."""
        decided = decide(earlier, resolution)
        waits = bool(earlier.get("new_intent")) and earlier["intent"] in self.queue.waiting()
        return decided == earlier or (not waits and _decided(decided) == _decided(earlier))

    def _trains_on(self, handoff_id: str) -> bool:
        """Whether the served intent model would train on the handoff's text (its optional ``trains_on``): one
        of "?" or an emoji was resolved ``resolved: true`` and never trained, no one told (checker 262)."""
        model = heirloom.served_model(self.intent_handle)[0]
        trains_on, text = getattr(model, "trains_on", None), self.queue.text_of(handoff_id)
        if not callable(trains_on) or text is None:
            return True
        try:
            return bool(trains_on([text])[0])
        except Exception:  # the decision is stored: another model type's bug only loses the hint
            log.exception("support.resolve: the intent model's trains_on() failed (%s)", type(model).__name__)
            return True

    def _close_to(self, intent: str, known: list[str]) -> str | None:
        """The known intent, else the one waiting for accept_intent (after this resolution: not the one it
        replaced on its handoff), that ``intent`` is one typo from."""
        return typo_of(intent, known) or typo_of(intent, self.queue.waiting())  # the log read only if needed

    def accept_intent(self, body: AcceptInput) -> dict[str, Any]:
        """A person reviewed a new intent: the resolutions naming it train (a typo is never accepted). Checked
        and appended as one step under the log's lock: the same acceptance sent to two workers at once was
        appended twice (as a resolution was, h335 F1)."""
        with heirloom.durable_write("acceptance", self._decisions_limit), self.log.locked() as write:
            waiting = self.queue.waiting()
            if body.intent not in waiting:
                return self._accepted_before(body.intent, waiting)
            close = typo_of(body.intent, self._known_intents())  # resolve's rule: "a typo never becomes an intent"
            # nor one of a waiting intent as often named: accepted, it refused the right one (checker h459 F2)
            rival = typo_of(body.intent, [name for name, count in waiting.items() if count >= waiting[body.intent]])
            if (close or rival) is not None and not body.even_if_close:
                whose = (
                    "an intent the model knows or one accepted"
                    if close is not None
                    else f"waiting with {waiting[rival]} resolution(s) against its {waiting[body.intent]}"
                )
                message = (
                    f"{body.intent!r} is one typo from {close or rival!r}, {whose}: resolve its "
                    f'{waiting[body.intent]} resolution(s) again with {close or rival!r}, or send "even_if_close": '
                    "true to accept it as an intent of its own; nothing was recorded"
                )
                raise heirloom.RequestError("INVALID_ARGUMENT", message, "body.intent")
            write([{"type": "acceptance", "intent": body.intent}])
        reply = {"accepted": True, "intent": body.intent, "resolutions": waiting[body.intent]}
        return {**reply, "close_to": close or rival} if close or rival else reply  # a waiting one's too (v44 F5)

    def _accepted_before(self, intent: str, waiting: dict[str, int]) -> dict[str, Any]:
        """The reply to accepting ``intent``, which no resolution waits with: the first reply again for one
        accepted already (a retry whose reply was lost), else an error saying why there is nothing to accept."""
        if intent in (accepted := self.queue.accepted()):  # the same answer, not NOT_FOUND pointing at a typo
            reply = {"accepted": True, "intent": intent, "resolutions": accepted[intent]}
            rivals = [name for name, count in waiting.items() if count >= accepted[intent]]
            close = typo_of(intent, self._known_intents()) or typo_of(intent, rivals)  # said again (v7 F3)
            return {**reply, "close_to": close} if close else reply
        listed = ", ".join(sorted(waiting)) or "none"
        terms: IntentTerms = self._terms_of("intent", heirloom.served_model(self.intent_handle)[0])
        if intent in (*terms.labels, terms.out_of_scope):  # it steered a right name to a waiting typo
            said = (  # h387 F2: "is an intent it knows to the served intent model"; out_of_scope texts train nothing
                "the served intent model's label for texts out of scope: resolutions naming it hand those texts off "
                "and leave them out of training"
                if intent == terms.out_of_scope
                else "an intent the served intent model knows: resolutions naming it train already"
            )
            message = f"{intent!r} is {said}; there is nothing to accept (waiting: {listed})"
            raise heirloom.RequestError("INVALID_ARGUMENT", message, "body.intent")
        close = heirloom.did_you_mean(intent, waiting)
        message = f"no resolution waits with new intent {intent!r}{close} (waiting: {listed})"
        raise heirloom.RequestError("NOT_FOUND", message, "body.intent")
