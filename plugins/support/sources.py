"""Customer-service sources: the StackFAQ collection, out-of-scope hold-outs of a labelled
source, and the resolutions of handed-off queries (the feedback loop of the ``support`` api).

Every split is deterministic (seeded): the same settings give the same partition on every
machine, so model versions compare on the same test data.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import random
import re
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from xml.parsers import expat

import attrs

import heirloom
from heirloom_plugins.decided import RESOLUTION, WAITS_FOR
from heirloom_plugins.textfiles import normal_labels, regular_file

log = logging.getLogger("heirloom.support")

SPLITS = ("train", "validation", "test")
FAQ_FILE = "stackExchange-FAQ.xml"
#: A thread id given in the XML (``<qapair id="...">``).
THREAD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
OUT_OF_SCOPE = "out_of_scope"
#: The fewest labels an out-of-scope source leaves in scope (no classifier fits fewer than two).
MIN_IN_SCOPE = 2
#: What the support profile's ``holdout = 10``, inherited by profiles extending it, is for.
DEVELOPMENT = "the support profile's 10 hold out Banking77 intents to develop the reject rule on"
#: How many held-out labels its log line names.
SAID_LABELS = 20
#: How many new intents waiting for accept_intent a warning names (the most resolved first), before "and K more".
SAID_WAITING = 10


def _check_split(split: str | None) -> None:
    if split not in (None, *SPLITS):
        raise heirloom.HeirloomError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)} or None")


def _digest(settings: dict[str, Any], *paths: Path) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in paths:
        if path.exists():
            heirloom.hash_regular(path, digest)
    return digest.hexdigest()


def _parse_lined(file: Path) -> tuple[ElementTree.Element, dict[ElementTree.Element, int]]:
    """The file's element tree and each element's line: errors in a team's FAQ name where to look.
    Tags are read without their namespace (``xmlns="..."`` or a prefix); internal entities expand
    (expat bounds their amplification) and an external one is refused, never fetched."""
    parser, builder, lines = expat.ParserCreate(namespace_separator="}"), ElementTree.TreeBuilder(), {}

    def start(tag: str, attributes: dict[str, str]) -> None:
        named = {key.rpartition("}")[2]: value for key, value in attributes.items()}
        lines[builder.start(tag.rpartition("}")[2], named)] = parser.CurrentLineNumber

    def external(_context: str, _base: str | None, system_id: str, _public_id: str | None) -> None:
        raise heirloom.HeirloomError(
            f"{file}:{parser.CurrentLineNumber}: an external entity ({system_id!r}) is not read: write its text "
            'into the file, or declare it with the text itself (<!ENTITY name "the text">)'
        )

    parser.StartElementHandler, parser.CharacterDataHandler = start, builder.data
    parser.EndElementHandler = lambda tag: builder.end(tag.rpartition("}")[2])
    parser.ExternalEntityRefHandler = external
    try:
        with open(regular_file(file), "rb") as stream:
            parser.ParseFile(stream)
    except OSError as exc:
        raise heirloom.HeirloomError(f"{file}: cannot read the StackFAQ XML: {exc}") from exc
    except expat.ExpatError as exc:
        reason = f"{expat.ErrorString(exc.code)} (column {exc.offset + 1})"
        raise heirloom.HeirloomError(f"{file}:{exc.lineno}: cannot read the StackFAQ XML: {reason}") from exc
    return builder.close(), lines


def _text(element: ElementTree.Element | None) -> str:
    """The element's whole text, markup inside it included (``<code>``, ``<b>``), spaces folded."""
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


@attrs.define(kw_only=True)
class StackFaqSource(heirloom.Source):
    """StackFAQ (Karan & Šnajder 2018): 719 question-answer pairs in 125 threads, each with
    10 paraphrased queries. Documents are the pairs (``label``: the thread); per thread,
    ``train_queries`` paraphrases (a seeded choice) are training queries and the others
    test queries; ``validation_queries`` of the training ones may form a validation split.
    A thread is ``thread-N`` by its position, or the ``id`` its ``<qapair id="...">`` gives
    (ids that stay put when the file changes, so recorded resolutions keep their answer).
    """

    #: The XML file, or a folder holding ``stackExchange-FAQ.xml``.
    path: str = heirloom.path_field()
    train_queries: int = attrs.field(
        default=5, validator=attrs.validators.and_(heirloom.at_least(0), attrs.validators.le(10))
    )
    validation_queries: int = attrs.field(default=0, validator=heirloom.at_least(0))
    #: Only the first N threads (0: all of them), for quick experiments and tests.
    threads_limit: int = attrs.field(default=0, validator=heirloom.at_least(0))
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        if self.validation_queries and self.validation_queries >= self.train_queries:
            raise ValueError(  # equal left no training paraphrase: the retriever trained on documents alone
                f"'validation_queries' ({self.validation_queries}) must be below 'train_queries' "
                f"({self.train_queries}): the training paraphrases it leaves train the retriever"
            )

    def splits(self) -> list[str]:
        return list(SPLITS) if self.validation_queries else ["train", "test"]

    def threads(self) -> list[dict[str, Any]]:
        """``{"label", "question", "answers", "queries"}`` per thread, in file order (``answers``: by
        their place in the thread, from 1; a blank one is left out, with a warning)."""
        file = self._file()
        root, lines = _parse_lined(file)
        threads, first = [], {}  # first: a thread id's line
        for number, pair in enumerate(root.iter("qapair"), 1):
            label, where = pair.get("id", f"thread-{number}").strip(), f"{file}:{lines[pair]}: <qapair>"
            if label in first:
                raise heirloom.HeirloomError(f"{where} id {label!r} appears twice (first at line {first[label]})")
            if not THREAD_ID.fullmatch(label):
                raise heirloom.HeirloomError(
                    f"{where} id {label[:120]!r} is not 1-100 ASCII letters, digits, '.', '_' or '-'"
                )
            first[label] = lines[pair]
            if (inner := next(itertools.islice(pair.iter("qapair"), 1, None), None)) is not None:  # [0]: pair itself
                raise heirloom.HeirloomError(  # its answers and paraphrases would count for both threads
                    f"{where} {label!r} holds another <qapair> ({inner.get('id', 'no id')!r}, line {lines[inner]}): "
                    "threads do not nest"
                )
            queries = [_text(r) for r in pair.iter("rephr")]
            written = list(pair.iter("answer"))
            answers = {n: text for n, a in enumerate(written, 1) if (text := _text(a))}  # ids keep their place: label/2
            if not answers:  # its paraphrases would train and test against no document
                raise heirloom.HeirloomError(f"{where} {label!r}: no <answer> with text")
            for n, answer in enumerate(written, 1):
                if n not in answers:
                    self._warn_once("%s:%d: <qapair> %r: blank <answer> %d left out", file, lines[answer], label, n)
            if not (question := _text(pair.find("question"))):  # found by its answers; shown with a blank question
                self._warn_once(
                    "%s:%d: <qapair> %r: no <question> with text (answers show it blank)", file, lines[pair], label
                )
            threads.append(
                {
                    "label": label,
                    "question": question,
                    "answers": answers,
                    "queries": [q for q in queries if q and q.strip("*")],
                }
            )
        if not threads:
            raise heirloom.HeirloomError(f"{file}: no <qapair> threads")
        threads = threads[: self.threads_limit] if self.threads_limit else threads
        most = max(len(thread["queries"]) for thread in threads)
        if most <= self.train_queries:
            raise heirloom.HeirloomError(
                f"{file}: train_queries = {self.train_queries} leaves no test query (a thread has at most {most} "
                "<rephr> paraphrases): lower it"
            )
        self._say_untested(file, threads)
        return threads

    def _say_untested(self, file: Path, threads: list[dict[str, Any]]) -> None:
        """Warn of threads with no test query: data stats counted fewer test records without a word."""
        few = [thread["label"] for thread in threads if len(thread["queries"]) <= self.train_queries]
        if few:
            self._warn_once(
                "%s: %d thread(s) have at most train_queries = %d paraphrases, so none of theirs is a test query (%s)",
                file,
                len(few),
                self.train_queries,
                ", ".join(few[:5]),
            )

    def _warn_once(self, message: str, *args: Any) -> None:
        """A warning about the file, said once per source: each split's records read the file again
        (data stats said a blank answer three times)."""
        said: set[str] = self.__dict__.setdefault("_said", set())
        if (line := message % args) not in said:
            said.add(line)
            log.warning("%s", line)

    def _file(self) -> Path:
        path = Path(self.path)
        return path / FAQ_FILE if path.is_dir() else path

    def records(self, split: str | None = None) -> Iterator[dict[str, str]]:
        _check_split(split)
        for thread in self.threads():
            label, queries = thread["label"], thread["queries"]
            if split in (None, "train"):
                for number, answer in thread["answers"].items():
                    yield {
                        "role": "document",
                        "id": f"{label}/{number}",
                        "label": label,
                        "question": thread["question"],
                        "answer": answer,
                        "text": f"{thread['question']}\n{answer}",
                    }
            # seeded per thread by its id: a thread added or removed moves no other thread's queries
            order = random.Random(f"{self.seed}/{label}").sample(range(len(queries)), len(queries))
            roles = {i: "train" for i in order[: self.train_queries]}
            roles.update(
                {i: "validation" for i in order[self.train_queries - self.validation_queries : self.train_queries]}
            )
            for i, text in enumerate(queries):
                if split is None or roles.get(i, "test") == split:
                    yield {"role": "query", "id": f"{label}/q{i + 1}", "label": label, "text": text}

    def fingerprint(self) -> str:
        settings = {
            "type": "stackfaq",
            "train_queries": self.train_queries,
            "validation_queries": self.validation_queries,
            "threads_limit": self.threads_limit,
            "seed": self.seed,
        }
        return _digest(settings, self._file())


def too_many_held(held: int, labels: int) -> str | None:
    """Why holding ``held`` of ``labels`` labels out of scope is refused, or None: it must leave
    ``MIN_IN_SCOPE`` labels in scope and hold out no more than it leaves, so out-of-scope texts stay
    a minority of what the models know (a classifier fitted on 2 labels of 12 taught nothing)."""
    kept = labels - held
    if kept >= max(MIN_IN_SCOPE, held):
        return None
    return (
        f"it holds {held} of the data's {labels} labels out of scope, leaving {max(kept, 0)} in scope; it may hold "
        f"out at most half of them and must leave at least {MIN_IN_SCOPE}"
    )


@attrs.define(kw_only=True)
class OutOfScopeSource(heirloom.Source):
    """Another source's labelled records with ``holdout`` labels (a seeded choice) held out
    entirely: they never reach training, and their test records carry the ``label``
    ``out_of_scope``, so a model with a reject option is measured on texts it never saw a
    label for. ``validation_fraction`` of each kept label's training records (the inner
    source's train and validation splits together) may form a deterministic validation split;
    it then also holds, labelled ``out_of_scope``, every non-test record of the held-out labels
    and every one the data labels ``out_of_scope`` (no model trains on either), so validation
    scores the reject rule too: ``promote --if-better oos_recall`` had nothing to compare."""

    #: The labelled source (``{"text", "label"}`` records).
    data: str = heirloom.ref("source")
    #: How many labels to hold out (a seeded choice), or name them in ``labels``.
    holdout: int = attrs.field(default=10, validator=heirloom.at_least(0))
    labels: list[str] = attrs.field(factory=list, converter=normal_labels)  # read as the data's labels are
    seed: int = 0
    validation_fraction: float = attrs.field(
        default=0.0, validator=attrs.validators.and_(heirloom.at_least(0), attrs.validators.lt(1))
    )
    #: The label out-of-scope test records get.
    label: str = OUT_OF_SCOPE

    def start(self, ctx: heirloom.Context) -> None:
        super().start(ctx)
        self.inner = ctx.get(self.data, "source")
        self._held: list[str] | None = None

    def splits(self) -> list[str]:
        return list(SPLITS) if self.validation_fraction else ["train", "test"]

    @property
    def out_of_scope_label(self) -> str:
        """``label``, by the name the models give it: a held-out text so labelled is scored as out of
        scope, not as a label training lacks (the text sources' stats read it, as a union's parts' one)."""
        return self.label

    def _training_records(self) -> Iterator[dict[str, Any]]:
        """The inner source's records that are not test: its train split, and its validation
        split when it carves one (this source carves its own; the csv source's default 10%
        would otherwise be lost to training)."""
        for split in ("train", "validation"):
            if split in self.inner.splits():
                yield from self.inner.records(split)

    def held_out(self) -> list[str]:
        """The held-out labels, sorted (computed once from the training labels, and said: a team's
        profile extending ``support`` kept its ``holdout = 10`` and lost 10 of its 12 intents unsaid)."""
        if self._held is None:  # out-of-scope examples are no intent to hold out
            known = sorted({str(record["label"]) for record in self._training_records()} - {self.label})
            if not known:
                raise heirloom.HeirloomError(f"sources.{self.ctx.name}: sources.{self.data} has no training records")
            unknown = sorted(set(self.labels) - set(known))
            if unknown:
                raise heirloom.HeirloomError(f"sources.{self.ctx.name}.labels: not in the data: {', '.join(unknown)}")
            key = f"sources.{self.ctx.name}.{'labels' if self.labels else 'holdout'}"
            count = len(set(self.labels)) if self.labels else self.holdout
            if (problem := too_many_held(count, len(known))) is not None:
                fix = "name fewer" if self.labels else f"set holdout = 0 for your own data ({DEVELOPMENT}), or fewer"
                raise heirloom.HeirloomError(f"{key}: {problem}: {fix}")
            self._held = sorted(set(self.labels) or random.Random(self.seed).sample(known, self.holdout))
            if self._held:
                named = ", ".join(self._held[:SAID_LABELS]) + (" ..." if len(self._held) > SAID_LABELS else "")
                log.warning(
                    "%s: %d of %d labels held out as out of scope (no model trains on them; their test texts are "
                    "labelled %s): %s",
                    key,
                    len(self._held),
                    len(known),
                    self.label,
                    named,
                )
        return self._held

    def stats(self) -> dict[str, Any]:
        """Records per split and per label, as a text source's: SUPPORT.md counts each kept intent's texts with
        ``data stats``, and the base counted records only (h347 F7); how many of a team's own ``out_of_scope``
        texts went to validation is a row too."""
        records, labels = {}, {}
        for split in self.splits():
            counts = Counter(str(record["label"]) for record in self.records(split))
            records[split], labels[split] = sum(counts.values()), dict(sorted(counts.items()))
        return {"records": records, "labels": labels}

    def records(self, split: str | None = None) -> Iterator[dict[str, Any]]:
        _check_split(split)
        held = set(self.held_out())
        if split in (None, "train", "validation"):
            outside = held | {self.label} if self.validation_fraction else held
            kept = [dict(r) for r in self._training_records() if str(r["label"]) not in outside]
            validation = self._validation(kept)
            for index, record in enumerate(kept):
                if split is None or (index in validation) == (split == "validation"):
                    yield record
            if split in (None, "validation") and self.validation_fraction:
                for record in self._training_records():
                    if str(record["label"]) in outside:
                        yield {**record, "label": self.label}
        if split in (None, "test"):
            for record in self.inner.records("test"):
                yield {**record, "label": self.label} if str(record["label"]) in held else dict(record)

    def _validation(self, records: list[dict[str, Any]]) -> set[int]:
        if not self.validation_fraction:
            return set()
        by_label: dict[str, list[int]] = {}
        for index, record in enumerate(records):
            by_label.setdefault(str(record["label"]), []).append(index)
        rng = random.Random(self.seed + 1)
        chosen: set[int] = set()
        for label in sorted(by_label):
            members = by_label[label]
            chosen.update(rng.sample(members, min(round(len(members) * self.validation_fraction), len(members) - 1)))
        return chosen

    def fingerprint(self) -> str:
        settings = {
            "type": "out-of-scope",
            "from": ["train", "validation"],  # the inner splits it trains on
            "held": self.held_out(),
            "validation_fraction": self.validation_fraction,
            "seed": self.seed,
            "label": self.label,
        }
        if self.validation_fraction:  # validation holds out-of-scope texts since: versions before differ
            settings["validation_out_of_scope"] = True
        return hashlib.sha256((self.inner.fingerprint() + json.dumps(settings, sort_keys=True)).encode()).hexdigest()


@attrs.define(kw_only=True)
class HandoffSource(heirloom.Source):
    """What people decided about the queries a ``support`` api handed off, as training
    records (all in ``train``): ``kind = "intent"`` gives ``{"text", "label", "resolution": true}``
    for an intent model (``resolution`` marks a person's decision: docs/SUPPORT.md), ``kind =
    "answer"`` gives ``{"role": "query", "text", "answer_id"}`` for a retriever. A query's latest
    intent and latest answer win, each (``decide``)."""

    #: The support api whose handoff log to read (its component name).
    api: str = attrs.field(validator=attrs.validators.min_len(1))
    kind: str = attrs.field(default="intent", validator=attrs.validators.in_(("intent", "answer")))
    #: The project that api runs in (default: this profile's project), or an explicit log.
    project: str | None = None
    path: str | None = heirloom.path_field(default=None, must_exist=False)

    def start(self, ctx: heirloom.Context) -> None:
        super().start(ctx)
        self.log_path = (
            Path(self.path) if self.path else heirloom.log_path("handoffs", self.project or ctx.project, self.api)
        )

    def splits(self) -> list[str]:
        return ["train"]  # every resolution is training data

    def records(self, split: str | None = None) -> Iterator[dict[str, Any]]:
        _check_split(split)
        if split not in (None, "train"):
            return
        texts, decisions, accepted = resolved(heirloom.AppendLog.read(self.log_path, check=handoff_fault))
        waiting = waiting_intents(decisions.values(), accepted)
        if waiting and self.kind == "intent" and not getattr(self, "_said_waiting", False):
            self._said_waiting = True  # once per run: a train reads the split more than once
            log.warning(
                "%s: resolutions naming %d new intent(s) wait for %s.accept_intent and train nothing (the intent "
                "model checks the new version hands their texts off): %s",
                self.log_path.name,
                len(waiting),
                self.api,
                most_resolved(waiting, SAID_WAITING),
            )
        for handoff_id, decision in decisions.items():
            intent = decision.get("intent")
            if self.kind == "intent" and intent:
                yield {
                    "id": f"handoff:{handoff_id}",
                    "text": texts[handoff_id],
                    # a person's decision: the intent model weighs it more, and checks it learnt it; one naming a
                    # waiting intent trains nothing (out of scope to a model that knows no waits_for) but is checked
                    "label": OUT_OF_SCOPE if intent in waiting else intent,
                    RESOLUTION: True,
                    **({WAITS_FOR: intent} if intent in waiting else {}),
                }
            elif self.kind == "answer" and decision.get("answer_id"):
                yield {
                    "id": f"handoff:{handoff_id}",
                    "role": "query",
                    "text": texts[handoff_id],
                    "answer_id": decision["answer_id"],
                }

    def fingerprint(self) -> str:
        """The records this source trains, not the log's bytes: a new open handoff, or a resolution naming
        an intent that waits for accept_intent (a ``waits_for`` record, only checked), changes no training
        record, and a train with nothing new stores nothing (every queued handoff refitted and stored a version)."""
        digest = hashlib.sha256(json.dumps({"type": "handoffs", "kind": self.kind}).encode())
        for record in self.records("train"):
            if WAITS_FOR in record:
                continue
            digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode() + b"\n")
        return digest.hexdigest()


def most_resolved(waiting: Counter[str], shown: int) -> str:
    """The ``shown`` new intents with the most resolutions (then by name), and how many more there are."""
    ranked = sorted(waiting.items(), key=lambda item: (-item[1], item[0]))
    named = ", ".join(f"{intent} ({count})" for intent, count in ranked[:shown])
    return named + (f" and {len(ranked) - shown} more" if len(ranked) > shown else "")


def waiting_intents(decisions: Iterable[dict[str, Any]], accepted: set[str]) -> Counter[str]:
    """``new intent -> resolutions`` of the latest decisions naming an intent nobody accepted yet."""
    return Counter(d["intent"] for d in decisions if d.get("new_intent") and d["intent"] not in accepted)


def decide(earlier: dict[str, Any] | None, entry: dict[str, Any]) -> dict[str, Any]:
    """A handoff's decision once ``entry`` (a resolution) is read: the latest intent and the
    latest answer, each kept (a person records both: an answer recorded after the intent
    dropped the intent, and the intent model never learnt it)."""
    decision = dict(earlier or {})
    if entry.get("intent"):
        decision.pop("new_intent", None)
        decision.update((key, entry[key]) for key in ("intent", "new_intent") if entry.get(key))
    if entry.get("answer_id"):
        decision["answer_id"] = entry["answer_id"]
    elif entry.get("answer_id") == "":  # withdrawn: a person's "none of them" (out of scope)
        decision.pop("answer_id", None)
    return decision


def resolved(entries: Iterator[dict[str, Any]]) -> tuple[dict[str, str], dict[str, dict[str, Any]], set[str]]:
    """``({id: text}, {id: its decision}, accepted new intents)`` of a handoff log's entries."""
    texts: dict[str, str] = {}
    decisions: dict[str, dict[str, Any]] = {}
    accepted: set[str] = set()
    for entry in entries:
        if entry.get("type") == "handoff":
            texts[entry["id"]] = entry["text"]
        elif entry.get("type") == "acceptance":
            accepted.add(entry["intent"])
        elif entry.get("type") == "resolution" and entry.get("id") in texts:
            decisions[entry["id"]] = decide(decisions.get(entry["id"]), entry)
    return texts, decisions, accepted


def handoff_fault(entry: dict[str, Any]) -> str | None:
    """What makes a handoff log line unusable (AppendLog.read skips it, naming its line): a line
    edited by hand is held to what the api refuses, a blank text or an intent no model may learn
    (``heirloom.label_problem``, as the text sources check their files' labels)."""
    kind = entry.get("type")
    needed = {"handoff": ("id", "text"), "resolution": ("id",), "acceptance": ("intent",)}.get(kind)
    if needed is None:
        return f"unknown type {str(kind)[:40]!r}"
    wrong = [name for name in needed if not isinstance(entry.get(name), str)]
    if kind == "resolution":
        wrong += [name for name in ("intent", "answer_id") if name in entry and not isinstance(entry[name], str)]
    if wrong:
        return f"{', '.join(map(repr, wrong))} must be text"
    if kind == "handoff" and heirloom.blank(entry["text"]):  # the api refuses a blank text
        return "'text' is blank"
    if kind == "resolution" and not (entry.get("intent") or entry.get("answer_id")):  # resolve writes one of them
        return "a resolution names no 'intent' and no 'answer_id'"
    if kind == "resolution" and entry.get("new_intent") and not entry.get("intent"):  # it broke every listing
        return "'new_intent' is set on a resolution that names no 'intent'"
    intent = entry.get("intent")  # a resolution's or an acceptance's (a handoff records 'intent_guess')
    return heirloom.label_problem(intent, (), "intent", allow_new=True) if intent else None
