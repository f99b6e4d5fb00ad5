"""Code systems by their short names, shared by the plugins that read coded records: the FHIR source
writes a coding as ``system:code`` by these names (``rxnorm:723``), and the medical plugin's formulary
reads allergy codes written so. One table, so the two never disagree about how a record carries a code.
"""

from __future__ import annotations

import re
import unicodedata

#: Short names for the code systems the data uses; other systems keep ``system|code``.
SYSTEMS = {
    "http://snomed.info/sct": "snomed",
    "http://loinc.org": "loinc",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "rxnorm",
    "http://hl7.org/fhir/sid/cvx": "cvx",
    "http://hl7.org/fhir/sid/icd-10-cm": "icd10cm",
    "http://hl7.org/fhir/sid/icd-10": "icd10",
}
#: The same systems by their HL7 OIDs, as records converted from CDA name them (``urn:oid:...``).
OIDS = {
    "2.16.840.1.113883.6.96": "snomed",
    "2.16.840.1.113883.6.1": "loinc",
    "2.16.840.1.113883.6.88": "rxnorm",
    "2.16.840.1.113883.12.292": "cvx",
    "2.16.840.1.113883.6.90": "icd10cm",
    "2.16.840.1.113883.6.3": "icd10",
}
#: SNOMED CT named with its edition (``http://snomed.info/sct/731000124108``, the US one).
SNOMED_EDITION = re.compile(r"http://snomed\.info/sct/\d+(?:/version/\d+)?")


def short_system(system: str) -> str | None:
    """The short name of a code system (``SYSTEMS``), by its URL (a trailing ``/`` or SNOMED's
    edition path too) or its OID: a penicillin allergy coded ``urn:oid:2.16.840.1.113883.6.96``
    was not read as SNOMED's, and the drugs it rules out were recommended."""
    system = system.rstrip("/")
    if system.startswith("urn:oid:"):
        return OIDS.get(system.removeprefix("urn:oid:"))
    return "snomed" if SNOMED_EDITION.fullmatch(system) else SYSTEMS.get(system)


#: What a code with a control or invisible character should be instead (``code_mistake``).
CODE_REMEDY = "write the code as records carry it"


#: Unicode's Bidi_Control characters (marks, embeddings, overrides, isolates): invisible, they reorder
#: what a screen shows, so ``Allergy to`` + U+202E + ``nillicinep`` shows "Allergy to penicillin" to a
#: clinician while the allergy filter reads "nillicinep" (checker h319 F2).
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def hidden_character(
    where: str,
    text: str,
    remedy: str,
    categories: tuple[str, ...] = ("Cc", "Cf"),
    kept: str = "",
    refused: str = "",
) -> str | None:
    """The mistake of a name, code or text that holds a control or invisible character (of ``categories``,
    but ``kept``'s, or of ``refused``), else None: the formulary file's names, and the rules below."""
    if text.isprintable():  # no control, format or separator character but the space: the usual text, fast
        return None
    hidden = next((c for c in text if (unicodedata.category(c) in categories and c not in kept) or c in refused), None)
    if hidden is None:
        return None
    return f"{where}: {text!r} holds the control or invisible character U+{ord(hidden):04X}: {remedy}"


#: Whitespace FHIR's code type forbids (``[^\s]+(\s[^\s]+)*``), and its uri type anywhere, in a code as records
#: carry it: at either end, beside the system's name (``icd10cm: I10``, ``http://.../icd-10-cm |I10``), two in a row,
#: or anywhere in a system's URL (``http://snomed .info/sct|123``: v13 F5).
PADDED_CODE = re.compile(r"^\s|\s$|[:|]\s|\s[:|]|\s\s|^[^|\s]*\s[^|]*\|")


def code_mistake(where: str, code: str) -> str | None:
    """Why ``code`` is no code a record carries (a control or invisible character: a NUL, a BEL, a
    zero-width space; whitespace FHIR's code type forbids: ``PADDED_CODE``), else None. One rule for the fhir
    source reading a file, an inline record on a medical route and the formulary file: a code the source read
    with a NUL became a label of its own, which the route then refused as input, and so did ``"I10 "``, padded
    as fixed-width exports write codes, beside ``"I10"`` (checker h361 F2)."""
    if PADDED_CODE.search(code):
        said = "has a space at an end, in or beside its system, or two in a row, which FHIR's code and uri types forbid"
        return f"{where}: {code!r} {said}: strip them"
    return hidden_character(where, code, CODE_REMEDY)


def display_mistake(where: str, display: str) -> str | None:
    """Why ``display`` is no text to show a clinician (a control character: a NUL, a BEL; or a bidi
    control, ``BIDI_CONTROLS``: a screen would show other words than the ones read), else None. A
    display is free text: tabs and line breaks pass (FHIR's strings allow them), and so do the other
    invisible format characters (Synthea writes a zero-width space in some displays)."""
    return hidden_character(where, display, "write the text as it prints", ("Cc",), "\t\n\r", BIDI_CONTROLS)
