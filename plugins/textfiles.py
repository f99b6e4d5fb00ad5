"""Reading data files whose encoding is not declared: the published originals of older data
sets are latin-1 (MovieLens 100K, PhraseBank's lower agreement levels), and a copy re-saved by
an editor or a spreadsheet is usually UTF-8."""

from __future__ import annotations

from pathlib import Path


def read_text(path: str | Path) -> str:
    """The file's text as UTF-8, else latin-1 (which reads every byte). A latin-1 file is
    almost never valid UTF-8, so the first that decodes is the right one."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark (a spreadsheet's export) is no part of the text
    except UnicodeDecodeError:
        return raw.decode("latin-1")
