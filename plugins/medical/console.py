"""The medical console, for ``heirloom gateway``: find a patient, read the record summary,
and see what every patient route of the daemon says about the chosen encounter.

Mounted on a ``medical-records`` api (``summary``, ``search``, ``patients``). The ranked
answers come from every other route whose input takes ``patient`` and ``encounter``
(the profile's ``diagnosis.predict`` and ``treatment.recommend``, or a clinic's own), so
a profile that adds such a route gets it on the page without a change here.
"""

from __future__ import annotations

import contextlib
import re
from html import escape
from typing import Any
from urllib.parse import urlencode

import heirloom
from heirloom_plugins.medical.caution import FIELD
from heirloom_plugins.medical.summary import DIASTOLIC, SYSTOLIC

SHOWN_CODES = 10
SHOWN_PATIENTS = 20


def _text(value: Any) -> str:
    return escape("" if value is None else str(value))


def _patient_link(patient: str, label: str | None = None) -> str:
    return f"<a class='patient' href='?{escape(urlencode({'patient': patient}))}'>{_text(label or patient)}</a>"


def _form(query: str, limit: int | None, focus: bool) -> str:
    """The search box: ``maxlength`` is the search route's limit (the browser stops a longer query where it is
    typed), and it takes the focus only on the search page (on a patient's page a keyboard user goes on from the
    encounter list, not back to the box)."""
    bounds = (f" maxlength='{int(limit)}'" if limit else "") + (" autofocus" if focus else "")
    return (
        "<form method='get' class='find'><label>Find a patient "
        f"<input name='q' value='{escape(query)}' placeholder='a condition, a drug, a code or a patient id' "
        f"size='50'{bounds}></label> <button>Find</button></form>"
    )


def _search(request: heirloom.ConsoleRequest, query: str) -> str:
    """The patients matching ``query``, or a page of every patient; a refusal (a query over the search route's
    limit, an ``offset`` that is no count) is shown under the form, where the query can be corrected."""
    offset = request.query.get("offset", "0").strip()
    if not query and not re.fullmatch(r"[0-9]+", offset):
        return "<p class='error'>'offset' must be a whole number in digits, such as 20.</p>"
    try:  # an offset of any digits is past every patient at most: an empty page (checker h460 F3)
        return _matching(request, query) if query else _listing(request, min(int(offset), 2**31))
    except heirloom.RemoteError as error:
        return _error(error)


def _matching(request: heirloom.ConsoleRequest, query: str) -> str:
    hits = request.call("search", {"text": query, "k": SHOWN_PATIENTS})["patients"]
    rows = "".join(
        f"<tr><td>{_patient_link(hit['patient'])}</td><td class='number'>{hit['score']:.3f}</td>"
        f"<td>{_text('; '.join(m['display'] or m['code'] for m in hit.get('matches', [])))}</td></tr>"
        for hit in hits
    )
    head = "<tr><th>patient</th><th>score</th><th>matches</th></tr>"
    return _listed(f"Patients matching {_text(query)}", head, rows)


def _listing(request: heirloom.ConsoleRequest, offset: int) -> str:
    """A page of every patient, with links to the pages before and after it."""
    page = request.call("patients", {"offset": offset, "limit": SHOWN_PATIENTS})
    shown, total = page["patients"], page["total"]
    if offset and not shown:  # "No patient matches" and a link back to another empty page (checker v44 F9)
        at = max(0, total - 1) // SHOWN_PATIENTS * SHOWN_PATIENTS  # the paging's own last page (v45 F9)
        last = f"<a class='prev' rel='prev' href='?{escape(urlencode({'offset': at}))}'>"
        return f"<p>No patient at that offset: it is past the last ({total} patients). {last}the last page</a></p>"
    rows = "".join(
        f"<tr><td>{_patient_link(p['id'])}</td><td>{_text(p['gender'])}</td><td>{_text(p['birth_date'])}</td></tr>"
        for p in shown
    )
    head = "<tr><th>patient</th><th>gender</th><th>born</th></tr>"
    title = f"Patients {offset + 1} to {offset + len(shown)} of {total}" if shown else f"Patients (of {total})"
    links = [
        f"<a class='{rel}' rel='{rel}' href='?{escape(urlencode({'offset': at}))}'>{label}</a>"
        for rel, at, label, wanted in (
            ("prev", max(0, offset - SHOWN_PATIENTS), f"previous {SHOWN_PATIENTS}", offset > 0),
            ("next", offset + SHOWN_PATIENTS, f"next {SHOWN_PATIENTS}", offset + len(shown) < total),
        )
        if wanted
    ]
    paging = f"<p class='paging'>{' '.join(links)}</p>" if links else ""
    return _listed(title, head, rows) + paging


def _listed(title: str, head: str, rows: str) -> str:
    if not rows:
        return f"<h2>{title}</h2><p>No patient matches.</p>"
    return f"<h2>{title}</h2><table class='patients'><thead>{head}</thead><tbody>{rows}</tbody></table>"


def _entries(title: str, css: str, items: list[dict[str, Any]], columns: list[str]) -> str:
    if not items:
        return f"<h3>{title}</h3><p class='{css} none'>none recorded</p>"
    rows = "".join(
        "<tr>" + "".join(f"<td>{_text(_cell(item, column))}</td>" for column in columns) + "</tr>" for item in items
    )
    head = "".join(f"<th>{escape(column)}</th>" for column in columns)
    return f"<h3>{title}</h3><table class='{css}'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _cell(item: dict[str, Any], column: str) -> Any:
    value = item.get(column)
    if column == "display":
        return value or item.get("code")  # FHIR's display is optional: a code-only entry is named by its code
    if column == "value":
        return _measurement(item)
    if column == "flags":
        return ", ".join(value or [])
    if isinstance(value, str) and len(value) > 10 and value[4:5] == "-" and "T" in value:
        return value[:10]  # a date
    return value


#: The order a panel's components are shown in: blood pressure is read systolic over diastolic.
_COMPONENT_ORDER = {SYSTOLIC: 0, DIASTOLIC: 1}


def _quantity(value: Any, unit: str | None) -> str:
    number = f"{value:.1f}" if isinstance(value, float) else str(value)
    return f"{number} {unit}" if unit and isinstance(value, int | float) and not isinstance(value, bool) else number


def _measurement(item: dict[str, Any]) -> str | None:
    """An observation's value with its unit (an integer's too); without a value, a panel's components
    (blood pressure ``120/80 mm[Hg]``), whose values the summary keeps there."""
    if item.get("value") is not None:
        return _quantity(item["value"], item.get("unit"))
    parts = sorted(
        (p for p in item.get("components") or [] if p.get("value") is not None),
        key=lambda p: _COMPONENT_ORDER.get(p.get("code"), len(_COMPONENT_ORDER)),
    )
    if not parts:
        return None
    units = {p.get("unit") for p in parts}
    if len(units) > 1:
        return "; ".join(_quantity(p["value"], p.get("unit")) for p in parts)
    shown, unit = "/".join(_quantity(p["value"], None) for p in parts), units.pop()
    return f"{shown} {unit}" if unit else shown


def _summary(summary: dict[str, Any]) -> str:
    facts = (
        f"<p class='facts'><strong>{_text(summary['patient'])}</strong>: {_text(summary.get('gender'))}, "
        f"born {_text(summary.get('birth_date'))}, age {_text(summary.get('age_at_last_event'))} at the last event"
        + (", deceased" if summary.get("deceased") else "")
        + "</p>"
    )
    medications = summary.get("medications") or {}
    return (
        facts
        + _entries("Problems", "problems", summary.get("problems", []), ["display", "status", "onset", "end"])
        + _entries("Current medications", "medications", medications.get("current", []), ["display", "date"])
        + _entries("Allergies", "allergies", summary.get("allergies", []), ["display", "status"])
        + _entries("Latest vitals", "vitals", summary.get("vitals", []), ["display", "value", "date", "flags"])
        + _entries("Latest labs", "labs", summary.get("labs", []), ["display", "value", "date", "flags"])
    )


def _encounters(summary: dict[str, Any], chosen: str) -> str:
    options = "".join(
        f"<option value='{_text(e['id'])}'{' selected' if e['id'] == chosen else ''}>"
        f"{_text(str(e.get('date', ''))[:10])} {_text(e.get('display'))}</option>"
        for e in summary.get("encounters", [])
    )
    return (
        f"<form method='get' class='encounter'><input type='hidden' name='patient' value='{_text(summary['patient'])}'>"
        f"<label>Encounter <select name='encounter'>{options}</select></label> "
        "<button>Predict</button></form>"
    )


def patient_routes(request: heirloom.ConsoleRequest) -> list[str]:
    """Other apis' routes that take ``{'patient', 'encounter'}``: the ranked answers to show."""
    found = []
    for name, entry in request.routes.items():
        fields = ((entry.get("input") or {}).get("properties") or {}).keys()
        if not name.startswith(f"{request.api}.") and {"patient", "encounter"} <= set(fields):
            found.append(name)
    return sorted(found)


def _ranked(route: str, answer: dict[str, Any]) -> str:
    codes = answer.get("codes", [])[:SHOWN_CODES]
    with_answers = any("answers" in item for item in codes)
    rows = "".join(
        f"<tr class='{'selected' if item.get('selected') else ''}'><td>{_text(item.get('display'))}</td>"
        f"<td><code>{_text(item.get('code'))}</code></td>"
        f"<td class='number probability'>{item.get('probability', 0):.3f}</td>"
        f"<td><span class='bar' style='width:{min(1.0, float(item.get('probability', 0))) * 8:.2f}rem'></span></td>"
        f"<td>{'✓' if item.get('selected') else ''}</td>"
        + (
            f"<td>{_text('; '.join(a.get('display') or a['code'] for a in item.get('answers', [])))}</td>"
            if with_answers
            else ""
        )
        + "</tr>"
        for item in codes
    )
    head = "<th>name</th><th>code</th><th>probability</th><th>bar</th><th>selected</th>" + (
        "<th>answers</th>" if with_answers else ""
    )
    title = escape(route)
    version = _text(answer.get("version"))
    return (
        f"<section class='ranked' data-route='{title}'><h3>{title} <small>({version})</small></h3>"
        f"<table class='ranked'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        f"{_allergy_notes(answer)}</section>"
    )


def _allergy_notes(answer: dict[str, Any]) -> str:
    """Why no drug is selected, what the safety filter withheld, and the allergies it could not read,
    which a person must check the drugs against: the page showed none, only the drugs it let through."""
    unread = answer.get("unread_allergies") or []
    blocked = answer.get("blocked") or []
    listed = "; ".join(f"<span class='allergy'>{_text(allergy)}</span>" for allergy in unread)
    why = answer.get(FIELD)
    notes = f"<p class='unselected'><strong>{_text(why)}</strong></p>" if why else ""
    notes += (
        "<p class='unread'><strong>Allergies the safety filter could not read: check every drug against "
        f"them.</strong> {listed}</p>"
        if unread
        else ""
    )
    if blocked:
        rows = "".join(
            f"<tr data-code='{_text(b.get('code'))}'><td>{_text(b.get('display'))}</td>"
            f"<td><code>{_text(b.get('code'))}</code></td><td>{_text('; '.join(b.get('allergies') or []))}</td></tr>"
            for b in blocked
        )
        notes += (
            "<table class='blocked'><caption>Withheld for an allergy</caption><thead><tr><th>name</th><th>code</th>"
            f"<th>allergies</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return notes


def _error(error: heirloom.RemoteError, where: str = "") -> str:
    return f"<p class='error'>{escape(where)}{_text(error.code)}: {_text(error.message)}</p>"


def render(request: heirloom.ConsoleRequest) -> str:
    query = request.query.get("q", "").strip()
    patient = request.query.get("patient", "").strip()
    route = request.routes.get(f"{request.api}.search") or {}
    limit = ((route.get("input") or {}).get("properties") or {}).get("text", {}).get("maxLength")
    summary = None
    if not patient and query:  # a known patient id is that patient (the search index holds no ids)
        with contextlib.suppress(heirloom.RemoteError):  # not an id: a search
            summary, patient = request.call("summary", {"patient": query}), query
    if not patient:
        return _form(query, limit, focus=True) + _search(request, query)
    html = _form(query, limit, focus=False)
    try:
        summary = summary or request.call("summary", {"patient": patient})
    except heirloom.RemoteError as error:
        return html + _error(error) + _listing(request, 0)
    encounter = request.query.get("encounter") or (summary.get("encounters") or [{}])[0].get("id", "")
    sections = []
    for route_name in patient_routes(request):
        try:
            answer = request.call_route(route_name, {"patient": patient, "encounter": encounter or None})
            sections.append(_ranked(route_name, answer))
        except heirloom.RemoteError as error:
            sections.append(_error(error, f"{route_name}: "))
    return (
        html
        + "<div class='record'><h2>Record</h2>"
        + _summary(summary)
        + "</div><div class='answers'><h2>Diagnoses and treatments</h2>"
        + _encounters(summary, encounter)
        + "".join(sections)
        + "</div>"
    )


CONSOLE = heirloom.Console(
    title="Medical records",
    routes=("summary", "search", "patients"),
    render=render,
    description="Find a patient; their record summary, ranked diagnoses and treatments with probabilities.",
)
