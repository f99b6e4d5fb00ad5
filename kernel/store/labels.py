"""Labels a client sends for a model to learn (feedback, a person's resolution of a handoff):
one the served model knows, or a new one only where the api allows new labels.

Shared by every api with such a route (``heirloom.check_label``), so a typo (``data_plan_upgrad``)
or a hostile label (``pwned \\u202e<script>``) is refused the same way everywhere, with the closest
known label; and by the readers of the logs those routes write, so a label edited into a log by
hand is held to the rules the route applied (store layer: the logs are read here).
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import attrs

from heirloom.suggest import did_you_mean

#: The longest label accepted.
MAX_LABEL_CHARS = 200
#: How many known labels a refusal lists (125 made a 7,351-character message, mostly cut).
LABELS_LISTED = 20
#: What check_label enforces of a label's length and surrounding spaces, as JSON-schema keywords
#: for a request field's ``metadata={"schema": heirloom.LABEL_SCHEMA}`` (``_routes`` states them;
#: its other rules are code).
LABEL_SCHEMA = MappingProxyType({"minLength": 1, "maxLength": MAX_LABEL_CHARS, "pattern": r"^\S(?:.*\S)?$"})
#: Unicode categories that print nothing: control, format (zero-width, BOM, bidi overrides).
INVISIBLE = frozenset({"Cc", "Cf"})
#: Unicode categories no label may hold: the invisible ones, line and paragraph separators,
#: unassigned, private use, surrogates.
UNPRINTABLE = INVISIBLE | {"Zl", "Zp", "Cn", "Co", "Cs"}
#: Characters that print as nothing though Unicode calls them letters or symbols (Hangul
#: fillers, the braille blank): a text of only these is blank, and no label may hold one.
FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_NOTHING = INVISIBLE | {"Mn", "Me"}
#: Marks written only sometimes: Arabic harakat, Quranic annotation marks and the superscript
#: alef; Hebrew points and cantillation; the tatweel (U+0640), which only lengthens a stroke; variation
#: selectors (an emoji's U+FE0F: "lob \u2764\ufe0f" and "lob \u2764" were two classes, unsaid: h442 F3).
#: Two labels that differ by these print as one word to their readers.
OPTIONAL_MARKS = re.compile(
    "[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e8\u06ea-\u06ed\u0591-\u05bd\u05bf\u05c1\u05c2"
    "\u05c4\u05c5\u05c7\u0640\ufe00-\ufe0f\U000e0100-\U000e01ef]"
)
#: Letters of other scripts that print as a Latin one (a label wholly in them looks Latin):
#: Cyrillic, Greek, Armenian, Cherokee, Coptic, small capitals, dotless i and j and IPA letters, as
#: Unicode's confusables pair them.
_LOOKALIKES = str.maketrans(
    "\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0455\u0456\u0458\u04bb\u0501\u051b\u051d\u04cf\u043a\u0475\u04af"
    "\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0423\u0405\u0406\u0408"
    "\u03bf\u03bd\u03c1\u03b9\u03ba\u03c5\u03c7\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f"
    "\u03a1\u03a4\u03a5\u03a7\u1d04\u1d0f\u1d20\u1d21\u1d22\ua731\u1d1c\u0261\u0251\u0585\u057d\u0578"
    "\u13df\u13aa\u13da\u13bb\u13a0\u13ac\u13b3\u13de\u13e2\u13a2\u13d9"
    "\u1d00\u0299\u1d05\u1d07\ua730\u0262\u029c\u026a\u1d0a\u1d0b\u029f\u1d0d\u0274\u1d18\u0280\u1d1b\u028f\u0131\u0237"
    "\u2c81\u2c93\u2c95\u2c9f\u2ca3\u2ca5\u2cad",
    "aeopcyxsijhdqwlkvyABEKMHOPCTXYSIJovpikuxABEZHIKMNOPTYXcovwzsugaounCASHDEWLPTVabdefghijklmnprtyijaikopcx",
)
#: Scripts with letters that print alike (Latin a, Cyrillic U+0430, Greek U+03B1): no word of a label mixes them.
LOOKALIKE_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC"})


def blank(text: str) -> bool:
    """Whether ``text`` prints as nothing: spaces, invisible characters, fillers, and combining
    marks with nothing to combine with (a lone variation selector)."""
    return all(char.isspace() or char in FILLERS or unicodedata.category(char) in _NOTHING for char in text)


@functools.cache
def visible_pattern() -> str:
    """A JSON-schema ``pattern`` a text matches when it holds a character ``blank`` does not
    pass over: no space, control, format (zero-width, bidi) or filler character of the Basic
    Multilingual Plane, so ``_routes`` refuses what the route refuses (``\\S`` took
    ``"\\u200b\\u200b"``). What it leaves to the route would take thousands of characters: a text of
    only combining marks, or of format characters past U+FFFF (tags), matches and is refused there."""
    ranges, start = [], None
    for code in range(0x10001):  # one past the plane, to close the last range
        nothing = code < 0x10000 and (chr(code) in FILLERS or unicodedata.category(chr(code)) in INVISIBLE)
        if nothing and start is None:
            start = code
        elif not nothing and start is not None:
            ranges.append(f"\\u{start:04x}" + (f"-\\u{code - 1:04x}" if code - 1 > start else ""))
            start = None
    return "[^\\s" + "".join(ranges) + "]"


def unprintable(text: str) -> str | None:
    """The first character of ``text`` that prints as nothing or is no text (UNPRINTABLE, FILLERS),
    or None: a label or an id holding one prints like another (``a\\u0000b``, ``\\u200b``)."""
    return next((char for char in text if char in FILLERS or unicodedata.category(char) in UNPRINTABLE), None)


@functools.lru_cache(maxsize=4096)  # every known label, at every feedback request
def printed_form(label: str) -> str:
    """What a reader of ``label`` sees: NFKC, without the marks written only sometimes, with
    letters that print as Latin ones read as those (a Cyrillic "cash" is "cash")."""
    return OPTIONAL_MARKS.sub("", unicodedata.normalize("NFKC", label)).translate(_LOOKALIKES)


def _lookalike_scripts(word: str) -> set[str]:
    """Which of LOOKALIKE_SCRIPTS the letters of ``word`` are written in (a letter Python's
    unicodedata has no name for, a Tangut ideograph, is in none of them)."""
    return {script for char in word if (script := unicodedata.name(char, "").partition(" ")[0]) in LOOKALIKE_SCRIPTS}


def label_problem(
    label: str, known: Sequence[str], field: str, *, allow_new: bool = False, pattern: str | None = None
) -> str | None:
    """What is wrong with ``label`` (``field`` names it) for a model predicting ``known``, or None:
    blank, longer than MAX_LABEL_CHARS, surrounding spaces or an unprintable character, not in
    Unicode NFC (it prints like its composed form), or new where new labels are not allowed
    (``allow_new``) or do not match ``pattern`` in full."""
    if blank(label):
        return f"'{field.rpartition('.')[2]}' is blank"
    if label != label.strip() or unprintable(label) is not None:
        return (
            f"label {label[:MAX_LABEL_CHARS]!r} has surrounding spaces or an invisible or control character "
            "(a label that prints like another would become a class of its own)"
        )
    if len(label) > MAX_LABEL_CHARS:
        return f"a label is at most {MAX_LABEL_CHARS} characters; got {len(label)}"
    if label in known:
        return None
    if twin := next((k for k in known if printed_form(k) == printed_form(label)), None):
        return (  # decomposed vs composed, a no-break or ideographic space, full-width letters
            f"label {label!r} prints as {twin!r} (another Unicode form, optional marks, look-alike letters): "
            f"send it as {json.dumps(twin)} (as JSON writes it)"  # not ascii()'s \\xe9: no client reads it (h380 F4)
        )
    words = re.findall(r"[^\W\d_]+", unicodedata.normalize("NFKC", label))  # "TNF-alpha" is two words
    if mixed := next((word for word in words if len(_lookalike_scripts(word)) > 1), None):
        return (  # "negative" with a Cyrillic U+0435 for its e became a class printed as "negative"
            f"label {label!r}: the word {mixed!a} mixes {' and '.join(sorted(_lookalike_scripts(mixed)))} letters, "
            "which print alike (a label that looks like another would become a class of its own)"
        )
    if (composed := unicodedata.normalize("NFC", label)) != label:  # "café" as e + a combining accent
        return (
            f"label {label!r} is not in Unicode NFC: it prints as {composed!r}"
            + (", a label the model predicts" if composed in known else "")
            + " but would become a class of its own; send it composed"
        )
    if allow_new and (pattern is None or re.fullmatch(pattern, label)):
        return None
    close = did_you_mean(label, known)  # only for a refusal (it costs per label known); case aside: OUT_OF_SCOPE
    unknown = f"label {label!r} is not one the model predicts"
    if not allow_new:
        listed = ", ".join(known[:LABELS_LISTED]) + (
            f" and {len(known) - LABELS_LISTED} more" if len(known) > LABELS_LISTED else ""
        )
        return f"{unknown}{close} (labels: {listed})"
    return f"{unknown}, and a new label must match {pattern!r}{close}"


def label_pattern(instance: Any, attribute: attrs.Attribute, value: str | None) -> None:
    """attrs validator of an api's new-label pattern: None, or a regular expression."""
    if value is None:
        return
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"'{attribute.name}' is not a regular expression: {exc}") from None
