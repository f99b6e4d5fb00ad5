"""What a shipped api reads of its model beyond ``predict``'s call, checked in the api's ``check``.

``check`` runs where a stored version meets the api: ``heirloom profile check``, ``serve``'s
start and every hot swap. Another model type behind a shipped api (a third party's, or the
one ``heirloom new plugin`` generates) passed them all, then answered INTERNAL on every
request; now it is refused there, naming what it lacks and the page that says what to give.
Its members are checked everywhere; a prediction only of a started model (``serve``'s start,
a hot swap): ``profile check`` starts none, and a model's ``predict`` may need what ``start``
sets.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgpack

import heirloom

log = logging.getLogger("heirloom.serving")
#: ``model type -> its failed answers' log``: at most one line a minute for each.
_LOGGED: dict[str, heirloom.Every] = {}

#: Texts every text model can read: what ``check`` asks ``predict`` about, two at once (a model
#: answering one prediction whatever the batch passed a probe of one, then failed every batch).
PROBE = "Where is my order?"
PROBES = [PROBE, "How do I reset my password?"]
#: How long it may take: a predict that hung left serve "starting" for ever, saying nothing.
PROBE_SECONDS = 60.0
_ABSENT = object()
#: How many keys a message names at most (a model's answer may hold thousands).
MAX_SHOWN = 5
#: Each started instance's answer to a probe (or why none), by ``id`` and question, with a weak reference
#: that tells a live instance from a later one at the same address (models need not be hashable).
_PROBED: dict[tuple[int, str], tuple[weakref.ref, tuple[Any, str | None]]] = {}
_PROBED_LOCK = threading.Lock()

#: What a prediction's value must be, by the words the messages use.
KINDS: dict[str, Any] = {
    "a string": str,
    "a string or null": (str, type(None)),
    "true or false": bool,
    "a number": (int, float),
    "a whole number or null": (int, type(None)),
    "a finite number": (int, float),  # NaN reached clients and a log strict JSON parsers refuse
    "a number from 0 to 1": (int, float),  # a probability: NaN, negative and 1e300 ones were served
    "a list": list,
    "a map of label to probability": dict,
}


#: What the ``classify`` and ``label-monitor`` apis read of each prediction.
CLASSIFIER_NEEDS = {"label": "a string", "probabilities": "a map of label to probability"}


def classifier_problems(field: str, model: Any, api: str, doc: str) -> list[tuple[str, str]]:
    """A classifier's ``labels`` (a list of strings) and its predictions, as ``check`` reports them."""
    labels = getattr(model, "labels", _ABSENT)
    if labels is _ABSENT:
        return [refusal(field, model, api, "it has no 'labels' (the labels it predicts, a list of strings)", doc)]
    listed = strings_of(labels)
    if not listed:  # a numpy array of str is one
        return [refusal(field, model, api, f"its 'labels' is {_shown(labels)}, not a list of strings", doc)]
    known = frozenset(listed)  # a list: 50,000 labels took 50 s to check, quadratic
    predictions, problem = probed(model)
    problem = problem or first_problem(predictions or (), _probe_problem, known)
    return [refusal(field, model, api, problem, doc)] if problem else []


def strings_of(value: Any) -> list[str] | None:
    """``value`` as a list of strings (a tuple or numpy array of them too), or None."""
    if not isinstance(value, Iterable) or isinstance(value, str | bytes | Mapping):
        return None
    listed = list(value)
    return listed if all(isinstance(item, str) for item in listed) else None


def first_problem(predictions: Iterable[Any], problem_of: Callable[[Any, Any], str | None], terms: Any) -> str | None:
    """The first of ``problem_of(prediction, terms)`` that is not None, or None: the check an api
    runs on each answer, over a batch of them."""
    return next(filter(None, (problem_of(prediction, terms) for prediction in predictions)), None)


def _probe_problem(prediction: Any, labels: frozenset[str]) -> str | None:
    """A probe answer's problem: as every answer's, and one msgpack cannot send (numpy's floats)."""
    return classification_problem(prediction, labels) or unsendable(prediction)


def classification_problem(prediction: Any, labels: frozenset[str]) -> str | None:
    """What is wrong with one prediction the ``classify`` and ``label-monitor`` routes send, or None:
    a label (a string; none of ``labels`` is a model's "I don't know") and probabilities mapping
    its labels to numbers from 0 to 1. Checked on every answer: a model right on the probe then
    sent None, NaN probabilities or a list for a label."""
    if problem := prediction_problem_of(prediction, CLASSIFIER_NEEDS, "its prediction for a text"):
        return problem
    odd = ((k, v) for k, v in prediction["probabilities"].items() if not _probability(k, v, labels))
    if (found := next(odd, None)) is not None:
        said = f"{found[0]!r}: {_shown(found[1])}"
        return f"its prediction's probabilities must map its labels to numbers from 0 to 1, got {said}"
    return None


def labels_of(model: Any) -> frozenset[str]:
    """The labels a served classifier predicts (its check made sure they are strings)."""
    return frozenset(getattr(model, "labels", ()))


class PerInstance:
    """``compute(model)``, worked out again only for another model instance (a hot swap serves a
    new one): what a route reads of its model on every request, read once. The model is held
    weakly (every model is a :class:`heirloom.Model`, which can be): a swapped-out version stayed
    in memory until the route's next request."""

    def __init__(self, compute: Callable[[Any], Any]):
        self._compute = compute
        self._last: tuple[Callable[[], Any], Any] = (lambda: None, None)

    def __call__(self, model: Any) -> Any:
        last = self._last
        if last[0]() is not model:
            self._last = last = (weakref.ref(model), self._compute(model))
        return last[1]


def refusal(field: str, model: Any, api: str, problem: str, doc: str) -> tuple[str, str]:
    """The ``(field, message)`` an api's ``check`` returns for the model ``field`` names."""
    return field, f"{type(model).__name__} cannot serve behind the {api} api: {problem} ({doc})"


def failed_answer(model: Any, problem: str, doc: str) -> heirloom.RequestError:
    """The INTERNAL error of one request whose answer from ``model`` the route cannot send (``problem``;
    ``doc``: the page that says what the api needs): that request fails, not its batch. Logged, naming the model
    type and its plugin, at most once a minute for each: the client alone was told (checker h433 F5)."""
    kind = type(model).__name__
    whose = getattr(type(model), "heirloom_registered", None)
    _LOGGED.setdefault(kind, heirloom.Every(60)).log(
        log, logging.ERROR, "%s%s answered what its api cannot send: %s; that request failed INTERNAL (said at most "
        "once a minute)", kind, f" ({whose})" if whose else "", problem)  # fmt: skip
    return heirloom.RequestError("INTERNAL", f"{kind}: {problem} ({doc})")


def missing_members(model: Any, members: Sequence[str]) -> list[str]:
    """Of ``members`` (``"catalogue.index"``, ``"recommend()"``: a call), those ``model`` lacks."""
    missing = []
    for member in members:
        target: Any = model
        for part in member.removesuffix("()").split("."):
            target = getattr(target, part, _ABSENT)
            if target is _ABSENT:
                break
        if target is _ABSENT or (member.endswith("()") and not callable(target)):
            missing.append(member)
    return missing


def started(model: Any) -> bool:
    """Whether ``model`` was started (``Component.start`` keeps its context): only such a one is
    asked for an answer (see the module's docstring)."""
    return getattr(model, "ctx", None) is not None


def probed(
    model: Any, batch: Sequence[Any] = PROBES, shown: str | None = None
) -> tuple[Sequence[Any] | None, str | None]:
    """``model``'s predictions for ``batch`` (PROBES, or an api's own probe; ``shown``: how messages
    write it), one per input, or ``(None, what is wrong)``; ``(None, None)`` for a model never
    started. Asked once per instance and batch (see :func:`_probed`)."""
    if not started(model):
        return None, None
    asked = f"its predict({shown or '[' + ', '.join(map(repr, batch)) + ']'})"
    predictions, problem = _probed(model, asked, lambda: answer_within(lambda: model.predict(list(batch)), asked))
    if problem is not None:
        return None, problem
    if not isinstance(predictions, Sequence) or isinstance(predictions, str | bytes):
        return None, f"{asked} returned {_shown(predictions)}, not a list of one prediction per input"
    if len(predictions) != len(batch):  # as train says it
        return None, f"{asked} returned {len(predictions)} predictions for {len(batch)} inputs, not one per input"
    return predictions, None


def shape_problem(value: Any, needs: Mapping[str, Any], what: str, *, exact: bool = True) -> str | None:
    """What ``value`` (``what``: how a message names it) lacks of ``needs``, or None: ``{key:
    kind}`` (a kind of :data:`KINDS`), or ``{key: [need]}``, a list each of whose items is of
    that kind or has those needs (``{"codes": [{"code": "a string"}]}``), checked item by item.
    With ``exact``, ``needs`` is the whole shape: a key it does not name is a problem too (a
    model's ``debug`` and ``internal_path`` reached clients, past the route's schema, which names
    every key); an api that sends only the keys it names passes ``exact=False``."""
    kinds = {key: "a list" if isinstance(need, list) else need for key, need in needs.items()}
    if problem := prediction_problem_of(value, kinds, what):
        return problem
    if exact and (extra := [key for key in value if key not in needs]):
        more = f" and {len(extra) - MAX_SHOWN} more" if len(extra) > MAX_SHOWN else ""
        named = _keys(needs)
        return f"{what} has {_keys(extra[:MAX_SHOWN])}{more}: keys the route's reply does not name (it names {named})"
    for key, need in needs.items():
        if not isinstance(need, list):
            continue
        for index, item in enumerate(value[key]):
            where, wanted = f"{what}'s {key}[{index}]", need[0]
            if isinstance(wanted, Mapping):
                problem = shape_problem(item, wanted, where, exact=exact)
            else:
                problem = None if isinstance(item, KINDS[wanted]) else f"{where} is {_shown(item)}, not {wanted}"
            if problem:
                return problem
    return None


def unsendable(prediction: Any) -> str | None:
    """Why msgpack cannot send ``prediction`` (a reply's encoding would fail), or None."""
    try:
        msgpack.packb(prediction)
    except (TypeError, ValueError, OverflowError) as exc:  # a numpy float32: every reply failed to encode
        return f"its prediction cannot be sent as msgpack ({exc}): give Python str, int, float, bool, list, dict"
    return None


def prediction_problem_of(value: Any, needs: Mapping[str, str], what: str) -> str | None:
    """What ``value`` (``what``: how a message names it) lacks of ``needs``, or None."""
    if not isinstance(value, Mapping):
        return f"{what} is {_shown(value)}, not a map of {_keys(needs)}"
    for key, kind in needs.items():
        found = value.get(key, _ABSENT)
        if found is _ABSENT:
            return f"{what} has no {key!r} (it has {_keys(value) or 'no keys'})"
        numeric = "number" in kind
        if not isinstance(found, KINDS[kind]) or (numeric and isinstance(found, bool)) or not _within(kind, found):
            return f"{what.removesuffix(' for a text')}'s {key!r} is {_shown(found)}, not {kind}"
    return None


def _probed(model: Any, asked: str, probe: Callable[[], tuple[Any, str | None]]) -> tuple[Any, str | None]:
    """``probe()``'s outcome for ``model``, asked once per instance and question (``asked``): classify
    and its label monitor on one model that hung waited 60 s each, and each left a thread spinning."""
    with _PROBED_LOCK:
        for key in [key for key, (ref, _) in _PROBED.items() if ref() is None]:
            del _PROBED[key]
        if (known := _PROBED.get((id(model), asked))) is not None and known[0]() is model:
            return known[1]
        outcome = probe()
        _PROBED[(id(model), asked)] = (weakref.ref(model), outcome)
        return outcome


def predictions_of(model: Any, batch: list[Any]) -> list[Any]:
    """``model.predict(batch)``, one prediction per input, or an error naming the model (a model
    that answered fewer failed the route with zip's or next's words, or none at all)."""
    predictions = model.predict(batch)
    if not isinstance(predictions, Sequence) or len(predictions) != len(batch):
        count = f"{len(predictions)} predictions" if isinstance(predictions, Sequence) else _shown(predictions)
        raise RuntimeError(f"{type(model).__name__}.predict returned {count} for {len(batch)} inputs, not one each")
    return list(predictions)


def answer_within(call: Callable[[], Any], what: str) -> tuple[Any, str | None]:
    """``(call(), None)``, or ``(None, why it gave no answer)``: it raised, or it did not answer
    within PROBE_SECONDS (its thread is left behind, a daemon thread). ``what`` names the call."""
    outcome: list[tuple[Any, BaseException | None]] = []

    def run() -> None:
        try:
            outcome.append((call(), None))
        except Exception as exc:  # noqa: BLE001 - the plugin's bug, said as the api's check
            outcome.append((None, exc))

    thread = threading.Thread(target=run, name="heirloom-check-probe", daemon=True)
    thread.start()
    thread.join(PROBE_SECONDS)
    if not outcome:
        return None, f"{what} gave no answer within {PROBE_SECONDS:.0f} s"
    answer, raised = outcome[0]
    if raised is not None:
        said = str(raised) if len(str(raised)) <= 200 else f"{str(raised)[:197]}..."  # 5,000 characters were said whole
        return None, f"{what} raised {type(raised).__name__}: {said}"
    return answer, None


def _within(kind: str, value: Any) -> bool:
    if kind == "a finite number":
        return isinstance(value, int) or math.isfinite(value)
    return kind != "a number from 0 to 1" or 0 <= value <= 1


def _probability(label: Any, value: Any, labels: frozenset[str]) -> bool:
    """Whether ``value`` is ``label``'s chance: NaN, infinite and negative ones were served."""
    return label in labels and isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1


def _keys(keys: Iterable[Any]) -> str:
    return ", ".join(f"{key!r:.80}" for key in keys)  # a model's key may be long


def _shown(value: Any) -> str:
    text = str(value) if hasattr(value, "dtype") else repr(value)  # numpy's repr: np.float32(0.75)
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:77] + '...'}"
