"""Text folded to what a reader takes it to say, for scripts whose writing varies where the
meaning does not: compatibility forms (full-width Latin, half-width katakana, Arabic
presentation forms) as their plain letters, the marks Arabic and Hebrew write only
sometimes (harakat, niqqud, cantillation) and the tatweel that stretches a word left out,
format characters (bidi marks an RTL keyboard adds) left out, and digits of every script
as ASCII digits. Indic vowel signs stay: there a mark is part of the word.
"""

from __future__ import annotations

import functools
import sys
import unicodedata

import heirloom


@functools.cache
def translation_table() -> dict[int, str | None]:
    """``str.translate`` table: every decimal digit as its ASCII digit, format characters removed."""
    table: dict[int, str | None] = {}
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
