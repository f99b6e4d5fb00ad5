"""Training records a person decided: a correction sent to a ``classify`` api's ``feedback`` (the
``feedback`` source marks it ``correction``), a support handoff's resolution (the ``handoffs`` source
marks it ``resolution``). The text-classifier and the encoder-classifier weigh such a record
``correction_weight`` or ``resolution_weight`` times in training, and after the fit predict each one
and warn, naming a few, when the new version answers it otherwise (``training.corrections``,
``training.resolutions``): a person fixed an answer, and a retrain that gives it again says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import heirloom

#: The record fields (true) that mark a person's decision, and what each kind is called.
CORRECTION = "correction"
RESOLUTION = "resolution"
#: kind -> (plural, what a person did, what a named one says, where the weight is measured)
KINDS = {
    CORRECTION: ("corrections", "corrected them", "corrected to", "docs/ITERATION.md"),
    RESOLUTION: ("resolutions", "resolved them", "resolved", "docs/SUPPORT.md"),
}
#: How many times a decided record counts in training by default: measured in docs/SUPPORT.md (resolutions)
#: and docs/ITERATION.md (corrections).
WEIGHT = 4
#: The most times one may count: each count is the record's row repeated in training, so a weight of
#: 10^18 passed ``profile check`` and made a list no memory holds (checker 277).
MOST_WEIGHT = 1000
#: How many records a warning that this version answers otherwise names.
SHOWN = 5
#: The record field naming the new intent a person resolved a text to that waits for ``accept_intent`` (the
#: ``handoffs`` source): such a record trains nothing (its ``label`` is ``out_of_scope``), it is only checked.
WAITS_FOR = "waits_for"


def weight(instance: Any, attribute: Any, value: int) -> None:
    """attrs validator of a ``correction_weight`` or ``resolution_weight``: 1 to MOST_WEIGHT."""
    if not 1 <= value <= MOST_WEIGHT:
        raise ValueError(f"'{attribute.name}' must be between 1 and {MOST_WEIGHT}, got {value!r}")


def kind_of(record: Any) -> str | None:
    """``correction`` or ``resolution`` when a person decided ``record``'s label, else None."""
    for kind in KINDS:
        value = record.get(kind) if isinstance(record, Mapping) else getattr(record, kind, None)
        if value is True:
            return kind
    return None


def waits_for(record: Any) -> str | None:
    """The new intent a person resolved ``record``'s text to that waits for ``accept_intent``, else None."""
    value = record.get(WAITS_FOR) if isinstance(record, Mapping) else getattr(record, WAITS_FOR, None)
    return value if isinstance(value, str) and value else None


def repeats(kinds: list[str | None], weights: Mapping[str, int]) -> list[int]:
    """How many times each record counts: its kind's weight, 1 for a record nobody decided."""
    return [weights[kind] if kind is not None else 1 for kind in kinds]


def repeated(indices: Iterable[int], counts: list[int]) -> list[int]:
    """``indices``, each ``counts[i]`` times (a decided record counts its kind's weight)."""
    return [i for i in indices for _ in range(counts[i])]


def check(
    decided: list[tuple[str, str, str]],
    answers: list[str],
    progress: heirloom.Progress,
    weights: Mapping[str, int],
    shown_as: Mapping[str, str] | None = None,
    left_out: Sequence[tuple[str, str, str]] = (),
    why: str = "",
) -> dict[str, dict[str, int]]:
    """Per kind, how many of the decided records ``(text, label, kind)`` the new version answers
    otherwise (``answers``, in the same order), logged with a warning naming a few; ``shown_as``
    renames an answer in the warning (an out-of-scope label: "handed off"). Decided records the
    model left out of training (``left_out``, ``why``) are named apart and counted as ``left_out``:
    never "answered as a person resolved them" (an emoji resolved ``slow_speed`` and left out was)."""
    found: dict[str, dict[str, int]] = {}
    for kind, (plural, did, verb, docs) in KINDS.items():
        mine = [(text, label, answer) for (text, label, k), answer in zip(decided, answers, strict=True) if k == kind]
        gone = [(text, label) for text, label, k in left_out if k == kind]
        if not mine and not gone:
            continue
        otherwise = [(text, label, answer) for text, label, answer in mine if answer != label]
        found[plural] = {"checked": len(mine), "answered_otherwise": len(otherwise)}
        if gone:
            found[plural]["left_out"] = len(gone)
            named = "; ".join(f"{text[:60]!r} {verb} {label}" for text, label in gone[:SHOWN])
            more = " ..." if len(gone) > SHOWN else ""
            progress.log(f"warning: {len(gone)} {plural} left out of training because {why}: {named}{more}")
        if not mine:
            continue
        if not otherwise:
            progress.log(f"{plural}: all {len(mine)} in the training data are answered as a person {did}")
            continue
        named = "; ".join(
            f"{text[:60]!r} {verb} {label}, now {(shown_as or {}).get(answer, answer)}"
            for text, label, answer in otherwise[:SHOWN]
        )
        progress.log(
            f"warning: this version answers {len(otherwise)} of the {len(mine)} {plural} in its training data "
            f"otherwise than the person who {did}: {named}"
            + (" ..." if len(otherwise) > SHOWN else "")
            + f"; check this version before serving it, and raise the model's {kind}_weight "
            f"({weights[kind]} now) or add training texts like them ({docs})"
        )
    return found


def check_out_of_scope(
    decided: list[tuple[str, str, str]], answers: list[str], out_of_scope: str, progress: heirloom.Progress
) -> None:
    """Log how many records a person decided ``out_of_scope`` (``(text, label, kind)``; they train nothing)
    the new version answers in scope, no handoff, naming a few: "all answered as resolved" hid them. Kept out
    of the version's metadata: each new "none of them" would then store a copy of the same weights."""
    if not decided:
        return
    inside = [(text, kind, answer) for (text, _, kind), answer in zip(decided, answers, strict=True)]
    inside = [(text, kind, answer) for text, kind, answer in inside if answer != out_of_scope]
    if not inside:
        progress.log(f"{out_of_scope} decisions: all {len(decided)} in the training data are handed off")
        return
    named = "; ".join(
        f"{text[:60]!r} {KINDS[kind][2]} {out_of_scope}, now {answer}" for text, kind, answer in inside[:SHOWN]
    )
    named += " ..." if len(inside) > SHOWN else ""
    progress.log(
        f"warning: this version answers {len(inside)} of the {len(decided)} texts a person decided {out_of_scope} "
        f"in scope, not handed off: {named}; they train nothing (no weight helps them): check this "
        "version before serving it, and the decisions that taught the intents they now get (docs/SUPPORT.md)"
    )


def check_waiting(waiting: list[tuple[str, str]], answers: list[str], out_of_scope: str, progress: Any) -> None:
    """Log how many texts a person resolved to a new intent that waits for ``accept_intent`` (``(text, intent)``;
    they train nothing) the new version answers in scope, no handoff, naming a few: such a customer got a known
    intent's confident answer, and the waiting intent no more handoffs to collect (checker h333 F2)."""
    if not waiting:
        return
    inside = [(text, intent, answer) for (text, intent), answer in zip(waiting, answers, strict=True)]
    inside = [(text, intent, answer) for text, intent, answer in inside if answer != out_of_scope]
    if not inside:
        progress.log(f"waiting new intents: all {len(waiting)} texts resolved to one are handed off")
        return
    named = "; ".join(f"{text[:60]!r} waits for {intent}, now {answer}" for text, intent, answer in inside[:SHOWN])
    named += " ..." if len(inside) > SHOWN else ""
    progress.log(
        f"warning: this version answers {len(inside)} of the {len(waiting)} texts a person resolved to a new "
        f"intent waiting for accept_intent in scope, not handed off: {named}; they train nothing until the intent "
        "is accepted: check this version before serving it, or accept the intent and train again (docs/SUPPORT.md)"
    )
