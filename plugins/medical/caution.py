"""No drug is selected for a patient with an allergy the allergy filter cannot read.

The filter (``safety.py``) withholds what the allergies it reads rule out; one it cannot read
(``safety.unread``: ``rxnorm:723`` without a display, a SNOMED CT code it does not ship) rules
nothing out, so a drug of its class could be *selected*: penicillin V at 0.729 for a patient whose
amoxicillin allergy was coded by RxNorm alone. No filter can promise safety against what it cannot
read, so such an answer keeps its ranking and probabilities, selects nothing and says why
(``FIELD``). One rule for the shipped model (``evaluate`` scores what is served), the treatment api
after any model's answer, the console and ``heirloom medical drug``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: The treatment reply's key that says why no drug is selected (null when the decision stands).
FIELD = "selection_withheld"
#: Its text: the same on every answer it is on, the console's and ``heirloom medical drug``'s.
WHY = (
    "no drug is selected: an allergy the filter cannot read (unread_allergies) may rule out any drug ranked "
    "here; check each against it before prescribing"
)


def why_unselected(unread_allergies: Sequence[str]) -> str | None:
    """Why no drug is selected for a patient with ``unread_allergies`` (``safety.unread``), or None."""
    return WHY if unread_allergies else None


def unselected(codes: list[dict[str, Any]], unread_allergies: Sequence[str]) -> list[dict[str, Any]]:
    """``codes`` (ranked drugs) as they are, none ``selected`` when ``unread_allergies`` lists one."""
    return [{**item, "selected": False} for item in codes] if unread_allergies else codes
