"""How record analysis is evaluated: its answers checked against the source's resources.

For each patient of the evaluated split, ``record.summary`` must list exactly the
patient's Conditions (code, display and onset), mark active exactly those whose clinical
status is active (recurrence, relapse), list as current exactly the drugs whose latest
MedicationRequest or MedicationStatement is active (on-hold, draft), and list every
allergy; an event the data leaves without a code counts too (the summary lists it with
code null: a drug the record does not name is still one the patient takes). What is one
entry is decided here from the resources alone (code and display, as a clinician tells
two allergies apart; a coded drug by its code, named by the latest display the record
gives it), and every entry the summary lists is counted, not a set of its
codes: truth keyed by code as the summary was let an allergy the summary dropped score 1.0.
``record.search`` by a condition's or a drug's name must return the patients who have
it, within the first as many results as there are such patients (R-precision, so
precision and recall are equal). Each check counts true positives, false positives and
misses; ``counts_metrics`` turns them into one table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from typing import Any

from heirloom_plugins.medical.summary import in_time_order

#: The statuses of a current prescription (its latest MedicationRequest or Statement).
CURRENT = ("active", "on-hold", "draft")
#: ``(tp, fp, fn)`` of one check.
Counts = tuple[int, int, int]


def _compare(expected: set[Any], found: Collection[Any]) -> Counts:
    """A listed entry that is not expected, or listed twice, is a false positive."""
    hits = expected & set(found)
    return len(hits), len(found) - len(hits), len(expected - hits)


def _add(total: Counts, more: Counts) -> Counts:
    return total[0] + more[0], total[1] + more[1], total[2] + more[2]


def _latest_status(record: Any, kind: str) -> dict[tuple[str | None, str | None], str | None]:
    """Each drug's latest status: a coded drug is its code, named by the latest display the record
    gives it (a prescription may leave it out); a code-less one is its text."""
    status: dict[tuple[str | None, str | None], str | None] = {}
    named = {e.code: e.display for e in record.timeline if e.kind == kind and e.code and e.display}
    for _, event in in_time_order(record):  # an undated prescription at its visit, as the summary places it
        if event.kind == kind:
            status[(event.code, named.get(event.code, event.display) if event.code else event.display)] = event.status
    return status


def summary_checks(records: Iterable[Any], summary: Callable[[str], dict[str, Any]]) -> dict[str, Counts]:
    """The summary of each record against the record's own events."""
    totals: dict[str, Counts] = defaultdict(lambda: (0, 0, 0))
    for record in records:
        answer = summary(record.id)
        conditions = [e for e in record.timeline if e.kind == "condition"]
        checks = {
            "problem list": (
                {(e.code, e.display, e.date) for e in conditions},
                [(p["code"], p["display"], p["onset"]) for p in answer["problems"]],
            ),
            "active problems": (  # one condition active at two onsets is one active problem
                {(e.code, e.display) for e in conditions if e.status in ("active", "recurrence", "relapse")},
                list({(p["code"], p["display"]) for p in answer["problems"] if p["status"] == "active"}),
            ),
            "current medications": (
                {drug for drug, status in _latest_status(record, "medication").items() if status in CURRENT},
                [(m["code"], m["display"]) for m in answer["medications"]["current"]],
            ),
            "allergies": (
                {(e.code, e.display) for e in record.timeline if e.kind == "allergy"},
                [(a["code"], a["display"]) for a in answer["allergies"]],
            ),
        }
        for name, (expected, found) in checks.items():
            totals[name] = _add(totals[name], _compare(expected, found))
    return dict(totals)


def search_checks(
    records: Iterable[Any], everyone: dict[str, Any], search: Callable[[str, int], list[str]]
) -> dict[str, Counts]:
    """Search by the name of each condition and drug the evaluated patients have."""
    holders: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record in everyone.values():
        for event in record.timeline:
            if event.kind in ("condition", "medication") and event.display:
                holders[(event.kind, event.display)].add(record.id)
    wanted = {
        (e.kind, e.display) for r in records for e in r.timeline if e.kind in ("condition", "medication") and e.display
    }
    totals = {"search by condition": (0, 0, 0), "search by medication": (0, 0, 0)}
    for kind, display in sorted(wanted):
        expected = holders[(kind, display)]
        found = set(search(display, len(expected)))
        name = f"search by {kind}"
        totals[name] = _add(totals[name], _compare(expected, found))
    return totals
