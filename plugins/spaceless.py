"""Words of scripts written without spaces between them (Han, kana, Thai, Lao, Myanmar, Khmer).

There a run of letters is a whole phrase: taken as one word, ``味噌ラーメン`` shared nothing with
``大盛り味噌ラーメン``. Its words are taken two characters at a time, the bigrams CJK search
engines index. Shared by the text plugin (near-duplicate checks) and the recommender (item
titles), which import nothing of each other.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata

#: Runs of the scripts written without spaces.
SPACELESS = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\uff65-\uff9f\U00020000-\U0003134f]+"  # half-width katakana too
)


@functools.cache
def letter_runs() -> re.Pattern[str]:
    """Runs of letters, digits and combining marks: ``\\w`` leaves the marks out, and an Indic
    vowel sign is part of its word ("काम", work, compared equal to "कम", less); a Thai one too
    (กิน and กัน, to eat and to prevent, were both ก and น)."""
    planes = itertools.chain(range(0x20000), range(0xE0000, 0xE1000))  # where marks are (planes 2, 3: ideographs)
    marks = (chr(code) for code in planes if unicodedata.category(chr(code)).startswith("M"))
    return re.compile(f"[\\w{re.escape(''.join(marks))}]+")


def words_of(run: str) -> list[str]:
    """The words of a run of letters: itself, but two characters at a time where it is written
    without spaces (a sentence of Chinese is one run: cut in halves, it shared no word)."""
    words, end = [], 0
    for match in SPACELESS.finditer(run):
        words.extend(filter(None, [run[end : match.start()]]))
        chars = match.group()
        words.extend(chars[i : i + 2] for i in range(max(1, len(chars) - 1)))
        end = match.end()
    return [*words, *filter(None, [run[end:]])]
