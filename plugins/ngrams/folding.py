"""Text folded to what a reader takes it to say, for scripts whose writing varies where the
meaning does not: compatibility forms (full-width Latin, half-width katakana, Arabic
presentation forms) as their plain letters, the marks Arabic and Hebrew write only
sometimes (harakat, niqqud, cantillation) and the tatweel that stretches a word left out,
format characters (bidi marks an RTL keyboard adds) left out, digits of every script
as ASCII digits, a typesetter's apostrophes (U+2019, U+2018, U+02BC, U+201B) as ', and the
ligatures œ and æ as oe and ae (French wires write them in l'action and manœuvre where users
type the plain ones: h400 F1). Indic vowel signs stay: there a mark is part of the word.
"""

from __future__ import annotations

import functools
import sys
import unicodedata

import heirloom


@functools.cache
def translation_table() -> dict[int, str | None]:
    """``str.translate`` table: every decimal digit as its ASCII digit, format characters removed, apostrophes
    and the two ligatures as typed on a plain keyboard."""
    table: dict[int, str | None] = {ord(mark): "'" for mark in "\u2018\u2019\u02bc\u201b"}
    table |= {ord(ligature): plain for ligature, plain in {"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE"}.items()}
    for code in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(code))
        if category == "Nd" and code > 0x7F:
            table[code] = str(unicodedata.digit(chr(code)))
        elif category == "Cf":
            table[code] = None
    return table


def folded(text: str) -> str:
    """``text`` in NFKC, without optional marks, tatweel and format characters, digits in ASCII."""
    if text.isascii():
        return text
    return heirloom.OPTIONAL_MARKS.sub("", unicodedata.normalize("NFKC", text)).translate(translation_table())
