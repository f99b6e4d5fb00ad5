"""A model reading a source's records: progress, one-pass fingerprints of what was scored,
and a source's errors told apart from the model's (a source's bug is not the model's).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Set, Sized
from datetime import date, datetime
from reprlib import repr as short
from typing import Any

import attrs

from heirloom.core.components import Progress, Report, Source
from heirloom.core.errors import HeirloomError
from heirloom.store.content import canonical_json, finite

#: Records between two progress updates while a split streams into a model.
PROGRESS_EVERY = 256


@attrs.frozen
class Evaluation:
    """A fitted model scored on one split, and the fingerprint of that split's records."""

    split: str
    fingerprint: str
    report: Report


class SourceReadError(HeirloomError):
    """A source failed while a model consumed its records: the data's fault, whatever the model. A source
    raises it itself, saying which split it read, when it reads another split while one streams (the
    held-out texts its training records may repeat): the kernel's words would name the streaming split."""


class PluginBug(Exception):
    """An exception no plugin raised on purpose, in code other than the model's (a source's as the model read its
    records, the resource manager's ``run_fit``): ``args[0]`` says whose, not to blame the model; ``__cause__``: it."""


def reading(source: Source, split: str, progress: Progress, description: str, said: str = "") -> Iterator[Any]:
    """``source``'s records of ``split`` unchanged, counted on a progress bar (``description``) as the model consumes
    them; a source's error says what was being read (``said``, default ``description``), not blamed on the model."""
    progress.start(description)
    pending = 0
    with blaming_the_source(source, f"reading the {split} split", said or description):  # never the model's own
        records = source.records(split)
        if isinstance(records, Mapping | str | bytes):  # a dict's keys read as records of str (h433 F10)
            got = f"{type(source).__name__}.records({split!r}) returned a {type(records).__name__}"
            raise HeirloomError(f"{got}, not records one by one (a list, a generator)")
        for number, record in enumerate(records, start=1):
            if not is_record(record):  # one check a record: cheap on the hot path
                raise not_a_record(source, record, number)
            yield record
            pending += 1
            if pending == PROGRESS_EVERY:
                progress.advance(pending)
                pending = 0
    progress.advance(pending)


def is_record(record: Any) -> bool:
    """Whether ``record`` is one as the Source contract says: a dict or an attrs object."""
    return isinstance(record, dict) or attrs.has(type(record))


def not_a_record(source: Source, record: Any, number: int) -> HeirloomError:
    """The error for ``source``'s ``number``th record of a split that is no record (a list): the model that read
    it failed as if the bug were its own, naming the model's plugin, not the source's (checker h356 F2)."""
    spec, system = _spec_of(source)
    named = system.whose(spec) if spec is not None else type(source).__name__
    got = f"{type(record).__name__} {short(record)}"
    return HeirloomError(f"record {number} of {named} is a {got}, not a dict or attrs object (a plugin bug?)")


def _spec_of(source: Source) -> tuple[Any, Any]:
    """``(spec, system)`` of a started ``source`` (None, None: a plugin's start skipped setting ``ctx``)."""
    ctx = getattr(source, "ctx", None)  # set by Source.start, unless a plugin's start skipped it
    system = getattr(ctx, "system", None)
    specs = [spec for spec in getattr(system, "specs", ()) if (spec.kind, spec.name) == (ctx.kind, ctx.name)]
    return (specs[0], system) if specs else (None, None)


@contextlib.contextmanager
def blaming_the_source(source: Source, doing: str, description: str) -> Iterator[None]:
    """Errors raised inside as the source's, ``doing`` (``reading the test split``) what: its
    HeirloomError as SourceReadError, any other exception as a PluginBug naming it; a SourceReadError keeps
    its words (a test file's bad line, read by the train split's check of repeats, named the train split)."""
    try:
        yield
    except SourceReadError:
        raise
    except HeirloomError as exc:
        raise SourceReadError(f"{description}: {exc}") from None
    except Exception as exc:  # named with its plugin, as a bad record is (checker h433 F10)
        spec, system = _spec_of(source)
        named = system.whose(spec) if spec is not None else type(source).__name__
        raise PluginBug(f"{doing} of {named}") from exc


def source_splits(source: Source, source_name: str) -> list[str]:
    """``source.splits()``, what it raises the source's bug: train blamed the model that read it (checker h451 F1)."""
    with blaming_the_source(source, "listing the splits", f"listing the splits of source {source_name!r}"):
        listed = source.splits()
        names = None if isinstance(listed, str | bytes | Mapping) or not isinstance(listed, Iterable) else list(listed)
        if names is None or not all(isinstance(name, str) for name in names):  # "train" read as t, r, ... (v41 F6)
            raise HeirloomError(f"{type(source).__name__}.splits() returned {listed!r:.80}, not a list of split names")
        return names


def _plain(value: Any) -> Any:
    """A JSON-able stand-in for values ``json`` cannot encode, stable across runs."""
    if attrs.has(type(value)):
        return attrs.asdict(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if callable(getattr(value, "tolist", None)):  # numpy and torch: str() elides long arrays ("...")
        return value.tolist()
    return str(value)


def _canonical(record: Any) -> bytes:
    """One line of a record's canonical JSON (keys sorted; keys of several types by their repr)."""
    try:
        text = json.dumps(record, sort_keys=True, default=_plain, ensure_ascii=False)
    except TypeError:  # {1: ..., "a": ...} has no order: the same record must still give one line
        text = json.dumps(_keys_as_text(record), sort_keys=True, default=_plain, ensure_ascii=False)
    return text.encode() + b"\n"


def _key_text(key: Any) -> str:
    return key if isinstance(key, str) else f"\x00{type(key).__name__}:{key!r}"


def _keys_as_text(value: Any) -> Any:
    """``value`` with every non-text key as its type and repr (``1`` and ``"1"`` stay two keys)."""
    if attrs.has(type(value)):
        value = attrs.asdict(value)
    if isinstance(value, dict):
        return {_key_text(key): _keys_as_text(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_keys_as_text(item) for item in value]
    return value


def records_fingerprint(records: Iterable[Any]) -> str:
    """The fingerprint ``heirloom train`` records for the records a score was computed on
    (``SOURCE:validation``, ``SOURCE:test``): sha256 of their canonical JSON lines."""
    digest = hashlib.sha256()
    for _ in fingerprinting(records, digest):
        pass
    return digest.hexdigest()


def fingerprinting(records: Iterable[Any], digest: Any) -> Iterator[Any]:
    """Yield ``records`` while feeding their canonical JSON to ``digest``, so scoring a
    split and fingerprinting it take one pass over its records."""
    for record in records:
        digest.update(_canonical(record))
        yield record


def score(
    model: Any, source: Source, source_name: str, split: str, progress: Progress, description: str = "", who: str = ""
) -> Evaluation | None:
    """``model.evaluate`` on ``split`` of ``source_name``, with the fingerprint of exactly the records scored;
    None when the split has no records. ``who``: how errors name the model (default: its class). A source's
    error names it, as the train split's read does: the bar's words named no source of several."""
    digest = hashlib.sha256()
    said = f"reading the {split} split of {source_name}"
    said = f"{description}: {said}" if description else said
    description = description or f"scoring the model on the {split} split"
    records = fingerprinting(reading(source, split, progress, description, said), digest)
    first = next(records, None)
    if first is None:  # scores of nothing would read as a model that got everything wrong
        return None
    with one_prediction_each(model, who or type(model).__name__, split):
        report = model.evaluate(itertools.chain([first], records))
    named = f"{type(model).__name__}.evaluate()"
    if not isinstance(report, Report) or not isinstance(report.metrics, dict) or not isinstance(report.text, str):
        raise HeirloomError(f"{named} returned {short(report)}, not a heirloom.Report(metrics=a dict, text=a str)")
    canonical_json(finite(report.metrics), f"{named}'s metrics")  # what train refuses to store, eval refuses too
    for _ in records:  # a model that stopped reading early still gets the whole split hashed
        pass
    return Evaluation(split, digest.hexdigest(), report)


@contextlib.contextmanager
def one_prediction_each(model: Any, who: str, split: str) -> Iterator[None]:
    """``model.predict`` checked while its ``evaluate`` runs: a list of another length than its batch, zipped with the
    records (zip stops at the shorter), gave metrics of part of the split, or of misaligned pairs, as if whole; a map
    keyed by index zipped its keys, and None failed inside evaluate. A sequence, as a daemon's batched handler needs."""
    own = vars(model)  # the instance's: a frozen or slotted attrs class's too (the kind bases have no __slots__)
    before, predict = own.get("predict", _NONE), model.predict

    def checked(batch: Any, *args: Any, **kwargs: Any) -> Any:
        predictions = predict(batch, *args, **kwargs)
        if isinstance(predictions, Mapping | Set | str | bytes | bytearray) or not isinstance(predictions, Sized):
            got = "None" if predictions is None else f"{type(predictions).__name__} {short(predictions)}"
            raise HeirloomError(
                f"predict() of {who} returned {got}, not a list of one prediction per input, while evaluate() scored "
                f"the {split} split (a daemon refuses it from a batched route too), so no metrics were computed"
            )
        if isinstance(batch, Sized) and isinstance(predictions, Sized) and len(predictions) != len(batch):
            raise HeirloomError(
                f"predict() of {who} returned {len(predictions)} predictions for {len(batch)} inputs while evaluate() "
                f"scored the {split} split: it must return one per input, so no metrics were computed from them"
            )
        return predictions

    own["predict"] = checked
    try:
        yield
    finally:
        if before is _NONE:
            del own["predict"]
        else:
            own["predict"] = before


_NONE = object()
