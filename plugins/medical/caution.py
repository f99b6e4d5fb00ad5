"""No drug is selected for a patient with an allergy the allergy filter cannot read.

The filter (``safety.py``) withholds what the allergies it reads rule out; one it cannot read
(``safety.unread``: ``rxnorm:723`` without a display, a SNOMED CT code it does not ship) rules
nothing out, so a drug of its class could be *selected*: penicillin V at 0.729 for a patient whose
amoxicillin allergy was coded by RxNorm alone. No filter can promise safety against what it cannot
read, so such an answer keeps its ranking and probabilities, selects nothing and says why
(``FIELD``). One rule for the shipped model (``evaluate`` scores what is served), the treatment api
after any model's answer, the console and ``heirloom medical drug``.

And how an answer quotes the displays it names (``quoted``): a drug's reasons and the allergies that
withhold it. Each drug quotes them again, so a display quoted whole multiplies a request's size by the
drugs ranked. The allergies the filter cannot read are on an answer once, listed whole (``listed``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, overload

#: The treatment reply's key that says why no drug is selected (null when the decision stands).
FIELD = "selection_withheld"
#: Its text: the same on every answer it is on, the console's and ``heirloom medical drug``'s.
WHY = (
    "no drug is selected: an allergy the filter cannot read (unread_allergies) may rule out any drug ranked "
    "here; check each against it before prescribing"
)
#: How much of a display an answer quotes: each drug quotes its reasons and the allergies that withhold it
#: again, so one 9 MB display of a broken export made a 75 MB answer, over the daemon's frame limit
#: (checker 295 F3), and a 0.9 MB allergy a 9 MB one (checker h319 F1).
MAX_QUOTED_CHARS = 300


@overload
def quoted(display: str) -> str: ...
@overload
def quoted(display: None) -> None: ...
def quoted(display: str | None) -> str | None:
    """A display as an answer quotes it: its first ``MAX_QUOTED_CHARS`` characters, ``...`` marking a cut."""
    return display if display is None or len(display) <= MAX_QUOTED_CHARS else display[:MAX_QUOTED_CHARS] + "..."


def quoted_all(displays: Iterable[str]) -> list[str]:
    """Displays as a blocked drug lists them (``blocked[].allergies``, repeated per drug): each ``quoted``,
    once, in order; ``quoted`` keeps a quote as it is, so a list quoted twice reads the same."""
    return sorted({quoted(display) for display in displays})


def first_of(items: list[str], limit: int, more: str) -> list[str]:
    """The first ``limit`` of ``items``, then ``"N {more} past the first {limit}"`` when there were more: what an
    answer lists of an unbounded list (4,348 outside allergies made a 330 KB summary)."""
    left = len(items) - limit
    return [*items[:limit], *([f"{left} {more} past the first {limit}"] if left > 0 else [])]


def listed(displays: Iterable[str]) -> list[str]:
    """The allergies an answer's ``unread_allergies`` lists: each whole, once, in order. The list a person checks
    the drugs against, on the answer once (no drug repeats it): quoted, two allergies alike in their first
    ``MAX_QUOTED_CHARS`` characters ("... and sulfa", "... and aspirin") were listed as one, neither substance
    named (checker v4 F1)."""
    return sorted(set(displays))


def why_unselected(unread_allergies: Sequence[str]) -> str | None:
    """Why no drug is selected for a patient with ``unread_allergies`` (``safety.unread``), or None."""
    return WHY if unread_allergies else None


def unselected(codes: list[dict[str, Any]], unread_allergies: Sequence[str]) -> list[dict[str, Any]]:
    """``codes`` (ranked drugs) as they are, none ``selected`` when ``unread_allergies`` lists one."""
    return [{**item, "selected": False} for item in codes] if unread_allergies else codes
