"""Reading data files: files whose encoding is not declared (the published originals of older
data sets are latin-1: MovieLens 100K, PhraseBank's lower agreement levels; a copy re-saved by
an editor or a spreadsheet is usually UTF-8), and CSV files with a header, whose malformed rows
are errors naming the file and the line."""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import itertools
import json
import logging
import os
import re
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import attrs

import heirloom

log = logging.getLogger("heirloom.data")

#: Characters no text holds (C1 controls): bytes 0x80-0x9F of a Windows-1252 file (curly quotes,
#: dashes) read as latin-1, which trained as invisible characters ("The company\x92s profit").
_C1_CONTROLS = re.compile("[\u0080-\u009f]")
#: The same in a file of another encoding, but U+0085 (NEL), which a UTF-8 file may hold as itself: there such a
#: character is a Windows-1252 text once read as latin-1, then saved (its "\x93quoted\x94" words trained as such).
_C1_SAVED = re.compile("[\u0080-\u0084\u0086-\u009f]")
#: Python's name of latin-1 (``latin-1``, ``l1``...), the encoding that reads 0x80-0x9F as those
#: characters (a UTF-8 file may hold one, U+0085, as itself: cp1252, as advised, garbled its accents).
LATIN_1 = "iso8859-1"
#: One-byte encodings that read a UTF-8 file without an error, each accent as two or three characters ("Ã©"
#: for "é"): those the docs advise for older exports. A text in one of them is almost never valid UTF-8.
_ONE_BYTE = (LATIN_1, "cp1252")
#: Byte-order marks of the encodings a spreadsheet's "Unicode text" is in, longest first (UTF-32's
#: little-endian mark begins with UTF-16's).
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


#: Encodings that read a byte-order mark as text (U+FEFF), by Python's codec name: the mark's name, and the
#: encoding to set instead, which reads the mark as the mark.
_MARKED = {
    "utf-8": ("UTF-8", '"utf-8-sig" (the default: UTF-8 with or without the mark)'),
    **{
        f"utf-{bits}-{end}": (f"UTF-{bits}", f'"utf-{bits}" (it reads the mark and the byte order it gives)')
        for bits in (16, 32)
        for end in ("le", "be")
    },
}


def repeats_header(row: dict[str | None, Any]) -> bool:
    """Whether a CSV row (``csv_rows``') holds its header's names: files joined with ``cat``, each with its header
    (and byte-order mark)."""
    return all((row[column] or "").strip().lstrip("\ufeff") == column for column in row if column is not None)


#: What a line of NUL bytes only most likely is, and what to do.
NUL_PADDING = "the line is NUL bytes only: a file padded or cut short (by a crash, a full disk)? Remove them"


def _wide_encoding(start: bytes) -> str | None:
    """``utf-32`` or ``utf-16`` for a file starting with that byte-order mark, else None."""
    return next((name for bom, name in _WIDE_BOMS if start.startswith(bom)), None)


def bomless_wide(head: bytes) -> str | None:
    """``utf-32le``, ``utf-32be``, ``utf-16le`` or ``utf-16be`` (names Python and iconv both know) for a file whose
    first bytes are such text without a byte-order mark (a spreadsheet's "Unicode text" saved without one): a
    character of three NUL bytes beside another byte, or two characters each a NUL byte beside another (which no
    other text holds), else None. UTF-32 was not told apart: its header read as NUL-filled column names (v23 F6)."""
    if _wide_encoding(head) or len(head) < 4:
        return None
    if head[0] and not any(head[1:4]):
        return "utf-32le"
    if head[3] and not any(head[0:3]):
        return "utf-32be"
    if head[1] == head[3] == 0 and head[0] and head[2]:
        return "utf-16le"
    return "utf-16be" if head[0] == head[2] == 0 and head[1] and head[3] else None


def _bomless_remedy(name: str, start: bytes, encoding: str, setting: str) -> str | None:
    """What to say of a file (``name``) starting with ``start`` read as ``encoding``: UTF-16 without a byte-order
    mark read as another encoding (its columns were 't\\x00e\\x00x\\x00t\\x00', h347 F1), or a file without
    the mark that ``encoding`` (utf-16, utf-32) needs (Python's words named no file, h347 F2); None: neither."""
    wide, codec = bomless_wide(start), codecs.lookup(encoding).name
    if codec not in ("utf-16", "utf-32") or _wide_encoding(start):
        if not wide or codec == codecs.lookup(wide).name:
            return None
        return (
            f'{name} looks like {wide.upper()} text without a byte-order mark: set the source\'s {setting!r} = "{wide}"'
        )
    said = f"{setting!r} {encoding!r} reads a file starting with a byte-order mark, and {name} has none"
    if wide:
        return f'{said}: it looks like {wide.upper()} text without one: set {setting!r} = "{wide}"'
    return (
        f"{said}, nor the NUL bytes of UTF-16 text (UTF-8?); one {setting!r} reads all of a source's files: convert "
        f"the {encoding.upper()} ones to UTF-8 (iconv -f {encoding} -t utf-8) and unset {setting!r}"
    )


def _encoding_remedy(setting: str, encoding: str, raw: bytes, at: int | None = None) -> str:
    """What to do about a CSV file (its bytes ``raw``, as far as known) that is not in the ``encoding`` the
    source's ``setting`` names: UTF-8's "utf-8-sig" when the bytes are UTF-8 text (a UTF-8 file read as cp1252
    stops at the closing quote "\u201d", whose last byte cp1252 lacks: it was told to set "cp1252", h347 F9),
    else a one-byte encoding, never the one set; ``at``: the byte the encoding cannot read, whose character is said."""
    if codecs.lookup(encoding).name != "utf-8" and raw[:1] and not raw.isascii():
        try:
            codecs.getincrementaldecoder("utf-8-sig")().decode(raw)  # not final: the bytes may end mid-character
        except UnicodeDecodeError:
            pass
        else:
            said = ""
            if at is not None:  # the character that byte is part of: back to its first byte
                first = next(i for i in range(at, max(at - 4, -1), -1) if i == 0 or not 0x80 <= raw[i] < 0xC0)
                said = f" ({codecs.getincrementaldecoder('utf-8')().decode(raw[first : first + 4])[:1]!r} there)"
            return f'the bytes are UTF-8 text{said}: set the source\'s {setting!r} = "utf-8-sig" (UTF-8, the default)'
    if guesses := guessed_encodings(raw, encoding):
        return (
            f"set the source's {setting!r} to the file's encoding: its bytes read as "
            f"{' or '.join(map(repr, guesses))} (charset-normalizer's guess: check a few texts with heirloom data show)"
        )
    if codecs.lookup(encoding).name == "cp1252":  # it reads all but 0x81, 0x8D, 0x8F, 0x90 and 0x9D
        return f'set the source\'s {setting!r} (e.g. "latin-1", which reads every byte)'
    return f'set the source\'s {setting!r} (e.g. "cp1252" for a Windows export, else "latin-1")'


#: The bytes of a file an encoding is guessed from, and how many guesses are said.
GUESS_BYTES, GUESSES = 1 << 20, 3
#: ``(file, encoding)`` pairs ``_warn_of_another_script`` looked at in this process: each is said once.
_LOOKED_AT: set[tuple[str, str]] = set()


def _warn_of_another_script(path: str | Path, fd: int, encoding: str, setting: str) -> None:
    """A warning when a file read as latin-1 or cp1252 (which read every byte, or nearly) is, by its bytes, text of
    another encoding and not of these: an Arabic cp1256 file set to "cp1252" trained on the wrong letters, scored
    well on them, and answered real Arabic at chance (checker h442 F1)."""
    if (str(path), encoding) in _LOOKED_AT:
        return
    _LOOKED_AT.add((str(path), encoding))
    head = os.pread(fd, GUESS_BYTES, 0)
    if head.isascii():
        return
    found = guessed_encodings(head)
    if found and not set(found) & set(_ONE_BYTE):
        log.warning(
            "%s: read as %s, its bytes read as %s text (charset-normalizer's guess): if heirloom data show prints "
            "its texts garbled, set the source's %r to the file's encoding",
            path, encoding, " or ".join(found), setting,
        )  # fmt: skip


def guessed_encodings(raw: bytes, failed: str | None = None) -> list[str]:
    """The encodings ``raw`` most likely is, best first, ``failed`` (the one that could not read it) left out:
    charset-normalizer's guess, cp1252 first, and one that reads the bytes as cp1252 does is called so (a Windows
    export's curly quote guessed "cp1250" or "mac_iceland"). An Arabic cp1256 file was told to try "cp1252" or
    "latin-1", which read every byte as the wrong letters; a Japanese cp932 one went round between them (h442 F1-2)."""
    import charset_normalizer

    sample = raw[:GUESS_BYTES]
    windows = _decoded(sample, "cp1252")
    named = [
        "cp1252" if windows is not None and _decoded(sample, match.encoding) == windows else match.encoding
        for match in charset_normalizer.from_bytes(sample)
    ]
    left_out = codecs.lookup(failed).name if failed else None
    found = [name for name in dict.fromkeys(codecs.lookup(n).name for n in named) if name != left_out]
    return sorted(found, key=lambda name: name != "cp1252")[:GUESSES]  # the usual Windows export first


def _decoded(raw: bytes, encoding: str) -> str | None:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        return None


def _wide_remedy(name: str, setting: str | None, fixed: str = "") -> str:
    """What to do about a file in ``name`` (utf-16, utf-32) read as another encoding: set
    ``setting``; without one (None), ``fixed`` says why the source reads only its own encoding."""
    if setting is None:
        return f"it starts with a {name.upper()} byte-order mark; {fixed}: convert it (iconv -f {name} -t utf-8)"
    return f'it starts with a {name.upper()} byte-order mark: set the source\'s {setting!r} = "{name}"'


def _utf8_read_as(text: str, encoding: str) -> str | None:
    """The first run of non-ASCII characters of ``text`` when they all are UTF-8 bytes read as ``encoding``, a
    one-byte encoding ("Ã©"), else None: a UTF-8 test file read as latin-1 was scored on such texts, silently."""
    if text.isascii() or codecs.lookup(encoding).name not in _ONE_BYTE:
        return None
    try:
        text.encode(encoding).decode("utf-8")
    except UnicodeError:
        return None
    return re.findall("[^\x00-\x7f]+", text)[0]


def _utf8_remedy(run: str, encoding: str, setting: str) -> str:
    """What to do about a UTF-8 file read as ``encoding``, whose ``run`` of characters shows it."""
    return (
        f"{run!r}, the UTF-8 bytes of {run.encode(encoding).decode('utf-8')!r} read as {encoding}: the file is UTF-8 "
        f'text; set the source\'s {setting!r} = "utf-8-sig" (and convert its other files to UTF-8: iconv -f '
        f"{encoding} -t utf-8)"
    )


def normal_label(label: str) -> str:
    """A label as a source reads it: without surrounding spaces, in Unicode NFC (a decomposed "café" is the composed
    one), as written otherwise."""
    return unicodedata.normalize("NFC", label.strip())


def normal_setting(label: Any) -> Any:
    """attrs converter: a setting naming one label (a monitor's ``label``), read as ``normal_label`` (a text; any
    other value is left for validation to refuse). In decomposed form it was refused with "did you mean 'négatif'?",
    naming what looked like the value typed (h400 F2)."""
    return normal_label(label) if isinstance(label, str) else label


def normal_labels(labels: list[str]) -> list[str]:
    """attrs converter: a setting's labels (``labels = [...]``) read as the data's are (``normal_label``): an entry
    typed in decomposed form (macOS, a pasted file name) or with a space matched no record, and its class was left
    out of training, the warning saying "'café' (did you mean 'café'?)" (h347 F5)."""
    return [normal_setting(label) for label in labels]


def read_text(path: str | Path) -> str:
    """The file's text as UTF-8, else latin-1 (which reads every byte). A latin-1 file is
    almost never valid UTF-8, so the first that decodes is the right one. UTF-16 or UTF-32
    (a spreadsheet's "Unicode text"), with a byte-order mark or NUL bytes throughout, is read as
    such: latin-1 read it as text with a NUL between letters, and a model trained on that (h388 F1)."""
    raw = heirloom.read_regular(path)
    if wide := _wide_encoding(raw[:4]):
        try:
            return raw.decode(wide).removeprefix("\ufeff")
        except UnicodeDecodeError as exc:
            said = f"{path}: starts as {wide.upper()} text, but is no such text ({exc.reason} at byte {exc.start}; a "
            raise heirloom.HeirloomError(f"{said}byte lost or added before it shifts every character after)") from None
    if (padded := len(raw) - len(raw.rstrip(b"\0"))) >= 4:  # UTF-32 text ends in 3 at most (v21 F3, v22 F3)
        said = "NUL bytes, as a file padded or cut short (by a crash, a full disk) does: remove them"
        raise heirloom.HeirloomError(f"{path}: ends in {padded:,} {said}")
    if _nul_thick(raw):  # no text of UTF-8 or latin-1 holds NULs so thickly: UTF-16 or 32 without its mark (v20 F1)
        readable = []
        for encoding in ("utf-32-le", "utf-32-be", "utf-16-le", "utf-16-be"):
            with contextlib.suppress(UnicodeDecodeError):
                readable += [text] if "\0" not in (text := raw.decode(encoding)) and _aligned(text) else []
        if readable:  # UTF-16BE read as LE decodes too, as CJK: the reading with the most ASCII is the one
            return max(readable, key=lambda text: sum(char < "\x80" for char in text[:4096]))
        said = "but reads cleanly as neither (a byte lost or added shifts every character after it): save it as UTF-8"
        raise heirloom.HeirloomError(f"{path}: NUL bytes throughout, as in UTF-16 or UTF-32 text, {said}")
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark (a spreadsheet's export) is no part of the text
    except UnicodeDecodeError:
        if b"\0" in raw:  # UTF-16 of Greek or Chinese without its mark: too few NULs to be thick (v21 F2)
            line = raw[: raw.index(b"\0")].count(b"\n") + 1
            said = "a NUL byte in a file that is no UTF-8: UTF-16 or UTF-32 without a byte-order mark? Save it as UTF-8"
            raise heirloom.HeirloomError(f"{path}:{line}: {said}") from None
        return raw.decode("latin-1")


def _nul_thick(raw: bytes) -> bool:
    """Whether a quarter or more of the first 4 KiB of ``raw`` are NUL bytes, as in UTF-16 or UTF-32 text of
    Latin letters, and in no UTF-8 or latin-1 text."""
    return raw[:4096].count(0) * 4 >= len(raw[:4096]) > 0


def _aligned(text: str) -> bool:
    """Whether ``text``, read as UTF-16 or UTF-32 without a byte-order mark, is no misreading: a byte lost or added
    turns each ASCII letter after it into a character ending in a NUL byte ('a' is U+6100), and the reading with the
    most ASCII still won, its lines before that byte merged into one record of the next's label (checker v21 F1); one
    stray byte at each end misread the first and last letters alone, a private-use character and a label of 'neutral'
    glued to a Gurmukhi letter (v22 F1). Such traces refuse the reading: an error, never a garbled record."""
    misread = sum(1 for char in text if not ord(char) & 0xFF and 0x20 <= ord(char) >> 8 < 0x7F)
    if misread >= 8 and misread * 50 >= len(text):
        return False
    if any(unicodedata.category(char) in ("Co", "Cn", "Cs") for char in text):
        return False
    return not any(_glued(a, b) or _glued(b, a) for a, b in itertools.pairwise(text))


def _glued(letter: str, other: str) -> bool:
    """Whether an ASCII letter touches a letter of a script far from Latin, with no space between (``neutralਊ``)."""
    return letter.isascii() and letter.isalpha() and ord(other) > 0x24F and other.isalpha()


def known_encoding(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    """attrs validator: ``value`` names a text encoding Python has."""
    try:
        "".encode(value)  # codecs.lookup also knows rot13, hex, base64: no text encodings
    except LookupError:
        raise ValueError(f"'{attribute.name}' {value!r} is no text encoding Python knows (utf-8, latin-1...)") from None


def one_character(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    """attrs validator: ``value`` is one character (a CSV delimiter)."""
    if len(value) != 1:
        raise ValueError(f"'{attribute.name}' must be one character, got {value!r}")


#: Delimiters a one-column header may hold: another than the source's (a ',' test file beside
#: a ';' train file was told "did you mean 'text,intent'?").
OTHER_DELIMITERS = (",", ";", "\t", "|")


def close_column(
    column: str, header: Sequence[str], taken: Sequence[str] = (), delimiter_setting: str = "delimiter"
) -> str:
    """``; did you mean 'Rating'?`` for a column the header has in another case or spelling
    (never one another setting names: ``label`` for a missing ``intent``, not ``text``), or,
    for a header read as one column, the delimiter it holds, to set as ``delimiter_setting``
    (the setting of that file's delimiter: ``items_delimiter`` for a ratings-csv items file)."""
    if len(header) == 1 and (held := [d for d in OTHER_DELIMITERS if d in header[0]]):
        return f"; the header reads as one column: set {delimiter_setting} = {held[0]!r}?"
    free = [name for name in header if name not in taken]
    close = [name for name in free if name.casefold() == column.casefold()] or difflib.get_close_matches(
        column, free, 1
    )
    return f"; did you mean {close[0]!r}?" if close else ""


@contextlib.contextmanager
def decoding(path: str | Path, encoding: str, *, setting: str | None = "encoding", fixed: str = "") -> Iterator[None]:
    """A file that is not ``encoding`` text is an error naming it and the line, not a
    traceback (the line is found again in the raw bytes: the reader decodes ahead), and what
    to do, worked out from its bytes then. ``setting``: the source's setting that names the
    file's encoding (None: it has none, and ``fixed`` says why not)."""
    try:
        yield
    except UnicodeDecodeError:
        raw = heirloom.read_regular(path)
        try:
            raw.decode(encoding)
        except UnicodeDecodeError as exc:  # its object: the bytes it decoded (utf-8-sig's without the BOM)
            data, at, byte = exc.object, exc.start, exc.object[exc.start : exc.start + 1]
            line = data[:at].decode(encoding, errors="replace").count("\n") + 1  # UTF-16 has 0x0A in others
        else:  # pragma: no cover - the same bytes decoded in one piece
            raise
        if wide := _wide_encoding(raw[:4]):
            remedy = _wide_remedy(wide, setting, fixed)
        else:
            remedy = fixed if setting is None else _encoding_remedy(setting, encoding, data, at)
        raise heirloom.HeirloomError(
            f"{path}:{line}: not {encoding} text (byte {byte!r} cannot be decoded); {remedy}"
        ) from None
    except UnicodeError:  # the decoder's own: "UTF-16 stream does not start with BOM"
        with open(regular_file(path), "rb") as handle:
            start = handle.read(4)
        said = _bomless_remedy(str(path), start, encoding, setting or "encoding")
        if said is None:  # pragma: no cover - no other codec error
            raise
        raise heirloom.HeirloomError(said) from None


@attrs.frozen
class FileSettings:
    """The names of the source settings that give one file's encoding and delimiter, for errors that say what
    to set: the source's own (``encoding``, ``delimiter``), or one file's (a ratings-csv catalogue's
    ``items_encoding`` and ``items_delimiter``)."""

    encoding: str = "encoding"
    delimiter: str = "delimiter"


#: A file read with the source's own ``encoding`` and ``delimiter``.
SOURCE_FILE = FileSettings()


def csv_rows(
    path: str | Path,
    required: Sequence[str],
    *,
    delimiter: str = ",",
    encoding: str = "utf-8-sig",
    named: FileSettings = SOURCE_FILE,
) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, row)`` for each row of a CSV file with a header (RFC-4180 quoting; the
    line is the row's first, for a quoted value that spans lines). The header must name every
    ``required`` column; a row must have as many fields as the header (a short row, or a long
    one whose unquoted value holds the delimiter, is an error naming its line); bytes that are
    not ``encoding`` text are an error naming their line and the source's setting that names the
    encoding (``named``: that and the delimiter's, for a header read as one column). A row maps every
    header column."""
    setting = named.encoding
    fd = regular_file(path)
    start = os.pread(fd, 4, 0)
    if bomless_wide(start) and (said := _bomless_remedy(f"{path}:1", start, encoding, setting)):
        os.close(fd)  # read as another encoding, its header was 't\x00e\x00x\x00t\x00'
        raise heirloom.HeirloomError(said)
    one_byte = codecs.lookup(encoding).name == LATIN_1  # bytes 0x80-0x9F read as C1 controls: a Windows file?
    misread = codecs.lookup(encoding).name in _ONE_BYTE  # a UTF-8 file can be read so without an error
    if misread:
        _warn_of_another_script(path, fd, encoding, setting)
    with open(fd, newline="", encoding=encoding) as handle:
        lines = _BoundedLines(handle, path)
        reader = csv.DictReader(lines, delimiter=delimiter, strict=True)  # strict: a quote inside quotes is doubled
        with decoding(path, encoding, setting=setting), _csv_errors(path, reader):
            columns = reader.fieldnames = [name.strip() for name in reader.fieldnames or []]  # ' Rating ' is 'Rating'
            lines.fields = len(columns)
            twice = sorted({name for name in columns if columns.count(name) > 1 and name in required})
            if twice:  # a row would keep the last column of that name, silently
                raise heirloom.HeirloomError(f"{path}: the header names column {twice[0]!r} more than once")
            missing = [c for c in required if c not in columns]
            if missing:
                hint = close_column(missing[0], columns, required, named.delimiter)
                raise heirloom.HeirloomError(
                    f"{path}: no column {', '.join(map(repr, missing))}{hint} (columns: {listed(columns)})"
                )
            before = ended = reader.line_num  # the last line of the header, then of each row
            for row, open_at_end in _rows_strictly(path, reader, encoding):
                before, ended = ended, reader.reader.line_num
                began = _first_line_of(row, before, ended)
                fields = len(columns) - list(row.values()).count(None) + len(row.get(None, ()))
                blank = fields == 1 < len(columns) and not "".join(_texts(row)).strip()  # a line of spaces
                if blank and not open_at_end:  # one that opens a quote left open is said below
                    continue
                if open_at_end:  # first: a row it swallowed has too few fields, and a short row's hint misleads
                    # its last value holds the file's last break, if the file ends with one
                    began = _first_line_of(row, before, ended, _texts(row)[-1].endswith(("\r", "\n")))
                    lines = f"{began}-{ended}" if began < ended else f"{began}"
                    raise heirloom.HeirloomError(
                        f"{path}:{lines}: a quote opened on line {began} is never closed "
                        "(the rest of the file would be one value)"
                    )
                if fields != len(columns):  # DictReader pads a short row with None, keeps the rest
                    spans, stray = began < ended, fields < len(columns) and lines.last_cr and not lines.header_cr
                    lines = f"{began}-{ended}" if spans else f"{ended}"
                    texts = "".join(_texts(row))
                    hint = (
                        NUL_PADDING  # said as a delimiter problem (h388 F7)
                        if "\0" in texts and not texts.strip("\0\r\n")
                        else f"a quote opened on line {began} may be unclosed"
                        if spans
                        else "a carriage return (\\r) in an unquoted text ended the row there: quote the text or "
                        "remove the \\r"  # a database dump's mixed line ends, said as a delimiter problem (h347 F11)
                        if stray
                        else f"quote a text that holds {delimiter!r}"
                    )
                    raise heirloom.HeirloomError(
                        f"{path}:{lines}: the row has {fields} fields, the header {len(columns)} ({hint})"
                    )
                # before the C1 check: UTF-8's curly quotes read as latin-1 hold C1 controls
                for column in required if misread else ():
                    if run := _utf8_read_as(row[column] or "", encoding):
                        raise heirloom.HeirloomError(
                            f"{path}:{began}: the {column!r} column holds {_utf8_remedy(run, encoding, setting)}"
                        )
                _refuse_control_characters(path, began, row, required, encoding, setting, one_byte)
                yield began, row  # the line an editor shows the row on: a quoted value may span lines


class _BoundedLines:
    """The physical lines of a CSV file, for the csv module, each refused (an error naming ``path:line``) once it
    runs past what a line can hold, before it is read whole: the header, ``HEADER_CHARS``; a row, once ``fields``
    (the header's) is set, ``row_chars(fields)``. A 200 MB line of short fields was split into 100 million strings
    (2.6 GB) before its "row has N fields" error (checker h318)."""

    def __init__(self, handle: Any, path: str | Path) -> None:
        self.handle, self.path, self.line, self.fields = handle, path, 0, 0
        #: Whether the header's line, and the last line read, end in a lone carriage return (an old Mac's line end,
        #: or a stray one in a text: a database dump's mixed line ends).
        self.header_cr = self.last_cr = False

    def __iter__(self) -> _BoundedLines:
        return self

    def __next__(self) -> str:
        limit = row_chars(self.fields) if self.fields else HEADER_CHARS
        text = self.handle.readline(limit + 1)  # a break ends a line: \n, \r\n or a lone \r (newline="")
        if not text:
            raise StopIteration
        self.line += 1
        self.last_cr = text.endswith("\r")  # newline="": a "\r\n" ends the line as one
        self.header_cr = self.header_cr if self.fields else self.last_cr
        if len(text) > limit:
            held = (
                f"more than a row of the header's {self.fields} field(s) holds (each cell at most "
                f"{csv.field_size_limit():,} characters): a longer text (split it), a row of far too many fields, "
                "or no CSV text"
                if self.fields
                else "more than a header holds: is it a CSV file?"
            )
            raise heirloom.HeirloomError(
                f"{self.path}:{self.line}: the line runs past {limit:,} characters (not read further), {held}"
            )
        return text


#: The most characters a CSV file's header line may hold, its line break included (as ``PROBE_BYTES``).
HEADER_CHARS = 1 << 20


def row_chars(fields: int) -> int:
    """The most characters a physical line of a row of ``fields`` fields may hold, its line break included: each
    cell at the csv module's limit, every character a doubled quote, quoted, and a delimiter after it."""
    return fields * (2 * csv.field_size_limit() + 3) + 2


def _rows_strictly(path: str | Path, reader: csv.DictReader, encoding: str) -> Iterator[tuple[dict[Any, Any], bool]]:
    """``(row, open_at_end)`` for each row of a strict ``reader``: a quote inside a quoted value that is
    not doubled (``"he said "hi" to me"`` read as ``he said hi" to me``) is an error naming the line
    and the column. A quote left open to the end of the file, which the strict reader refuses
    unsaid, yields the rest of the file read as that value (a quote left open in the last
    column swallowed 195 rows into one text), with ``open_at_end``: the caller says which lines."""
    ended = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "expected after" in str(exc):  # "',' expected after '\"'": a quoted value closed early
                raise _early_close(path, reader, encoding, ended) from None
            if str(exc) != "unexpected end of data":
                raise
            rest = _lines_after(path, encoding, ended)
            *_, row = csv.DictReader(rest, reader.fieldnames, delimiter=reader.reader.dialect.delimiter)
            yield row, True
            return
        ended = reader.line_num
        yield row, False


def regular_file(path: str | Path) -> int:
    """A read-only descriptor of ``path``, refused unless a regular file: a FIFO would block
    the reader, a device (/dev/zero) never end; the error says which it is (a socket read as missing)."""
    try:
        return heirloom.open_regular(Path(path))
    except heirloom.NotRegularFile as exc:
        raise heirloom.HeirloomError(f"{path} {exc.strerror}") from None


def _lines_after(path: str | Path, encoding: str, line: int, last: int | None = None) -> list[str]:
    """The file's lines after ``line`` (to ``last``), split where the csv module counts a line: at a break."""
    with open(path, newline="", encoding=encoding) as handle:
        return list(itertools.islice(handle, line, last))


def _early_close(path: str | Path, reader: csv.DictReader, encoding: str, ended: int) -> heirloom.HeirloomError:
    """The error for a quoted value whose closing quote the delimiter or a line end does not follow,
    in the row after line ``ended``: it names the column and the value, which may have run on
    from a quote left open on an earlier line."""
    delimiter, columns, last = reader.reader.dialect.delimiter, reader.fieldnames or [], reader.reader.line_num
    lines = _lines_after(path, encoding, ended, last)
    blank = next(n for n, line in enumerate(lines) if line.strip("\r\n"))  # blank lines before the row
    text, column, at, end = "".join(lines[blank:]), 0, 0, 0
    while at < len(text):  # RFC 4180: a quoted value starts with a quote, and "" inside it is one
        if text[at] != '"':  # unquoted: a quote inside is a character
            end = min((i for i in (text.find(d, at) for d in (delimiter, "\r", "\n")) if i >= 0), default=len(text))
        else:
            end = text.index('"', at + 1) + 1
            while text.startswith('"', end):  # doubled: the value goes on
                end = text.index('"', end + 1) + 1
            if text[end : end + 1] not in (delimiter, "\r", "\n", ""):
                break
        column, at = column + 1, end + 1
    opened = ended + 1 + blank + len(_BREAK.findall(text[:at]))
    value, then = text[at:end], _BREAK.split(text[end : end + 12])[0]
    where = f"the {columns[column]!r} column" if column < len(columns) else f"field {column + 1} (past the header's)"
    located = f"{path}:{opened}-{last}" if opened < last else f"{path}:{last}"
    cut = value if len(value) <= 60 else f"{value[:28]}...{value[-28:]}"
    unclosed = f", or the quote opened on line {opened} is never closed" if opened < last else ""
    return heirloom.HeirloomError(
        f"{located}: the quoted value of {where}, {cut!r}, ends before {then!r}: a quote inside a quoted value "
        f'must be doubled (""){unclosed}'
    )


def _refuse_control_characters(
    path: str | Path,
    line: int,
    row: dict[Any, Any],
    columns: Sequence[str],
    encoding: str,
    setting: str,
    one_byte: bool,
) -> None:
    """An error naming the column whose value holds a C1 control character, which no text holds: read
    as latin-1, the file is in another encoding (Windows-1252); read as another, it holds one already."""
    for column in columns:
        if found := (_C1_CONTROLS if one_byte else _C1_SAVED).search(row[column] or ""):
            said = (
                f"{path}:{line}: the {column!r} column holds the control character U+{ord(found[0]):04X}, which no text"
            )
            if one_byte:
                remedy = f'the file is not {encoding} text (a Windows export? set the source\'s {setting!r} = "cp1252")'
            else:  # the bytes were read right: the text itself was garbled before it was saved
                remedy = (
                    "a Windows-1252 text once read as latin-1 and saved so, its curly quotes and dashes made "
                    "invisible: repair its texts (in Python, text.encode('latin-1').decode('cp1252'))"
                )
            raise heirloom.HeirloomError(f"{said} holds: {remedy}")


#: The decoding error handler that reads undecodable bytes as a lone surrogate, which no text
#: a codec decodes holds (U+FFFD, the usual stand-in, and NUL are characters a header may hold).
UNREADABLE = "heirloom-unreadable"
codecs.register_error(UNREADABLE, lambda exc: ("\udcff", exc.end))  # type: ignore[arg-type,return-value]
#: A line break as the csv module counts lines: ``\r\n``, ``\n`` or a lone ``\r``.
_BREAK = re.compile(r"\r\n|\r|\n")


def _texts(row: dict[Any, Any]) -> list[str]:
    """A DictReader row's values, a long row's rest (under None) too, without a short row's None padding."""
    return [v for v in [*row.values(), *row.get(None, ())] if isinstance(v, str)]


def _first_line_of(row: dict[Any, Any], before: int, last: int, open_to_the_end: bool = False) -> int:
    """The line a row ending on line ``last`` began on, the row before it ending on line ``before``
    (blank lines may come between): a quoted value may span lines, and end with a break. A value
    left open to the end of the file holds the file's last break too, which starts no line."""
    breaks = sum(len(_BREAK.findall(value)) for value in _texts(row))
    return max(before + 1, last - breaks + open_to_the_end)


def _json_object(line: str) -> bool:
    """Whether ``line`` is a JSON object: the first line of a JSON-lines file."""
    try:
        return isinstance(json.loads(line.strip().removeprefix("\ufeff")), dict)
    except (ValueError, RecursionError):
        return False


def _first_line(handle: BinaryIO, encoding: str, limit: int = 1 << 20) -> str:
    """The first line of a file, decoded (unreadable bytes as lone surrogates) without decoding what
    follows it: a text reader decodes 8 KiB ahead, so a later row's bad byte failed the header
    check; a byte-level line split UTF-16's newline in two."""
    decoder = codecs.getincrementaldecoder(encoding)(errors=UNREADABLE)
    text = ""
    while "\n" not in text and len(text) < limit:
        chunk = handle.read(4096)
        text += decoder.decode(chunk, final=not chunk)
        if not chunk:
            break
    return text.split("\n", 1)[0]


#: The bytes a CSV file's header and first row must end in for ``profile check`` to read them (as the jsonl
#: probe's first line): a file without a line break, 300 MB of NUL bytes, was read whole, twice its size in memory.
PROBE_BYTES = 1 << 20
_BYTE_BREAK = re.compile(rb"\r\n|\r|\n")


def first_row_in_reach(path: str | Path) -> None:
    """HeirloomError naming the line when the file's header and first row (blank lines before it aside)
    do not end in its first PROBE_BYTES; a file that ends there is in reach."""
    with open(regular_file(path), "rb") as raw:
        head = raw.read(PROBE_BYTES)
        if not raw.read(1):
            return
    lines = _BYTE_BREAK.split(head)[:-1]  # those that end in it; the last runs on past it
    if len(lines) > 1 and any(line.strip() for line in lines[1:]):
        return
    raise heirloom.HeirloomError(
        f"{path}:{len(lines) + 1}: the line does not end in the file's first MiB ({PROBE_BYTES:,} bytes), where "
        "a CSV file's header and first row must: is it a CSV file?"
    )


def _split(header: str, delimiter: str) -> list[str]:
    """A header line's column names with ``delimiter`` (none where the csv module refuses it)."""
    try:
        return [name.strip() for name in next(csv.reader([header], delimiter=delimiter), [])]
    except csv.Error:
        return []


def listed(columns: Sequence[str]) -> str:
    """A header's columns for a message, cut short when a file has thousands."""
    text = ", ".join(columns) or "none: the file is empty"
    return text if len(text) <= 300 else f"{text[:300]}... ({len(columns)} columns)"


@contextlib.contextmanager
def _csv_errors(path: str | Path, reader: Any) -> Iterator[None]:
    """A row the csv module refuses (a field past its 131,072-character limit, a NUL byte)
    is an error naming its line, not a traceback."""
    try:
        yield
    except csv.Error as exc:
        said = str(exc)
        if said.startswith("field larger than field limit"):  # Python's words, which name no limit a user set
            said = (
                f"a cell is longer than {csv.field_size_limit():,} characters: split such a text (if the file "
                "has none, a quote left open made many lines one cell)"
            )
        raise heirloom.HeirloomError(f"{path}:{reader.line_num + 1}: {said}") from None  # the line it was reading


@attrs.define(kw_only=True, slots=False)
class CsvFormat:
    """The settings of a source that reads CSV files (a mixin: ``class MySource(heirloom.Source,
    CsvFormat)``), and :meth:`csv_rows` with them."""

    #: The character between fields.
    delimiter: str = attrs.field(default=",", validator=one_character)
    #: The files' text encoding (``utf-8-sig`` reads UTF-8 with or without a byte-order mark).
    encoding: str = attrs.field(default="utf-8-sig", validator=known_encoding)

    def delimiter_named(self, setting: str) -> str:
        """The delimiter the source's ``setting`` names: ``delimiter``, or a setting of one file's
        own (``items_delimiter``) that is ``delimiter`` when unset (None)."""
        return getattr(self, setting) or self.delimiter

    def encoding_named(self, setting: str) -> str:
        """The encoding the source's ``setting`` names: ``encoding``, or a setting of one file's
        own (``items_encoding``) that is ``encoding`` when unset (None)."""
        return getattr(self, setting) or self.encoding

    def check_columns(
        self,
        path: str | None,
        columns: dict[str, str],
        named: FileSettings = SOURCE_FILE,
        optional: dict[str, str] | None = None,
    ) -> None:
        """ValueError naming the setting (``'text_column' 'text' is not a column of
        train.csv (columns: ...)``) when ``path``'s header lacks a column ``columns`` maps a
        setting to: ``profile check`` says so, before a train reads the data, and so a header
        that is not text of the encoding ``named`` gives. A file that cannot be read is the
        reading's to report. ``optional`` columns may be absent, but not present in another case:
        a header of ``Genres`` lost every item's genres without a word (checker 303). ``named`` also
        gives the file's delimiter (``items_delimiter``: a ';' ratings export beside a ',' catalogue)."""
        if path is None:
            return
        setting = named.encoding
        encoding = self.encoding_named(setting)
        try:
            fd = heirloom.open_regular(Path(path))  # not one (a FIFO): the reading's to report
            with open(fd, "rb") as handle:
                start = handle.read(4)
                if said := _bomless_remedy(Path(path).name, start, encoding, setting):
                    raise ValueError(said)
                handle.seek(0)
                first = _first_line(handle, encoding)
        except OSError:
            return
        if (wide := _wide_encoding(start)) and not codecs.lookup(encoding).name.startswith(wide):
            raise ValueError(f"{Path(path).name} is not {encoding} text: {_wide_remedy(wide, setting)}")
        if "\udcff" in first:  # bytes of the header the encoding cannot read
            with open(path, "rb") as handle:
                raw = handle.readline(HEADER_CHARS)
            said = f"the header of {Path(path).name} is not {encoding} text: {_encoding_remedy(setting, encoding, raw)}"
            raise ValueError(said)
        if run := _utf8_read_as(first, encoding):  # "did you mean 'CatÃ©gorie'?"
            raise ValueError(f"the header of {Path(path).name} holds {_utf8_remedy(run, encoding, setting)}")
        try:
            header = next(csv.reader([first], delimiter=self.delimiter_named(named.delimiter)), [])
        except csv.Error:
            return
        header = [name.strip() for name in header]
        if twice := sorted({column for column in columns.values() if header.count(column) > 1}):  # read said so
            raise ValueError(f"the header of {Path(path).name} names column {twice[0]!r} more than once")
        folded = {name.casefold() for name in header}
        cased = {s: c for s, c in (optional or {}).items() if c not in header and c.casefold() in folded}
        missing = [(setting, column) for setting, column in {**columns, **cased}.items() if column not in header]
        if not missing:
            return
        if first.startswith("\ufeff") and (mark := _MARKED.get(codecs.lookup(encoding).name)):  # "'\ufefftext'?"
            name, fixed = mark  # utf-16le read a UTF-16 file's mark as text too (checker v9 F3)
            raise ValueError(
                f"'{missing[0][0]}' {missing[0][1]!r} is not a column of {Path(path).name}: the file starts with a "
                f"{name} byte-order mark, which {encoding!r} reads as part of the first column's name: set the "
                f"source's {setting!r} = {fixed}"
            )
        (setting, column), *others = missing  # the first leads (the error's key path), the others follow
        if _json_object(first):  # a jsonl file named where a CSV file belongs: its "columns" were JSON
            raise ValueError(
                f"'{setting}' {column!r} is not a column of {Path(path).name}: it holds JSON lines (its first line "
                "is a JSON object), not CSV with a header; name the CSV file, or read this one with a jsonl source"
            )
        hints = [close_column(column, header, list(columns.values()), named.delimiter) for _, column in missing]
        nor = [
            f"'{s}' {c!r}" + (f" ({h.removeprefix('; ')})" if h and h != hints[0] else "")  # one delimiter hint
            for (s, c), h in zip(others, hints[1:], strict=True)
        ]
        said = f"{' Nor' if hints[0] else '; nor'} {'is' if len(nor) == 1 else 'are'} {', '.join(nor)}" if nor else ""
        raise ValueError(
            f"'{setting}' {column!r} is not a column of {Path(path).name}{hints[0]}{said} (columns: {listed(header)})"
        )

    def check_one_encoding(self, paths: Sequence[str]) -> None:
        """ValueError when ``paths`` (read with one ``encoding``) are UTF-16 or UTF-32 text beside files that are not:
        no setting reads them all, so the advice is to convert the wide ones. A UTF-8 ``train`` beside a UTF-16
        ``test`` was first told to set ``encoding = "utf-16"``, which failed on ``train`` next (h388 F10)."""
        kinds = {}
        for path in paths:
            try:
                with open(heirloom.open_regular(Path(path)), "rb") as handle:
                    start = handle.read(4)
            except OSError:  # a file that cannot be read: the reading's to report
                continue
            kinds[Path(path).name] = _wide_encoding(start) or bomless_wide(start)
        wide = sorted({kind for kind in kinds.values() if kind})
        if not wide or len(set(kinds.values())) == 1:
            return
        narrow = [name for name, kind in kinds.items() if not kind]
        said = ", ".join(f"{name} is {kind.upper()} text" for name, kind in kinds.items() if kind)
        if narrow:
            said += f" while {', '.join(narrow)} {'is' if len(narrow) == 1 else 'are'} not"
        utf8 = codecs.lookup(self.encoding).name in ("utf-8", "utf-8-sig")  # else set: it would read them otherwise
        unset = "" if utf8 else " and unset 'encoding'"  # utf-32-le too: the advice then misread UTF-8 (v24 F2)
        convert = "; ".join(f"iconv -f {kind} -t utf-8" for kind in wide)
        raise ValueError(
            f"{said}, and one 'encoding' ({self.encoding!r}) reads all of a source's files: convert the "
            f"{'/'.join(kind.upper() for kind in wide)} ones to UTF-8 ({convert}){unset}"
        )

    def check_delimiters(self, paths: Sequence[str], columns: Sequence[str]) -> None:
        """ValueError at ``delimiter`` when the headers of ``paths`` have ``columns`` only with different delimiters
        (a ';' Excel export beside ',' files): the column error named one file at a time and its delimiter, so each
        fix brought the other error back (checker h359 F2). One delimiter serves all of a source's files."""
        headers = {Path(path).name: header for path in paths if (header := self._header(path)) is not None}
        fits = {
            name: [d for d in (self.delimiter, *OTHER_DELIMITERS) if set(columns) <= set(_split(header, d))]
            for name, header in headers.items()
        }
        if len(fits) < 2 or not all(fits.values()) or set.intersection(*(set(found) for found in fits.values())):
            return  # a column missing whatever the delimiter, or one that serves all: the column check's to say
        used = list(dict.fromkeys(found[0] for found in fits.values()))

        def reads(header: str, delimiter: str) -> str:
            split = _split(header, delimiter)
            return f"as {'one column' if len(split) == 1 else 'columns ' + listed(split)} with {delimiter!r}"

        each = "; ".join(f"{name} reads {', '.join(reads(headers[name], d) for d in used)}" for name in fits)
        most = max(used, key=lambda d: sum(found[0] == d for found in fits.values()))
        others = ", ".join(name for name, found in fits.items() if found[0] != most)
        then = "" if most == self.delimiter else f"; then set delimiter = {most!r}"
        raise ValueError(
            f"'delimiter' {self.delimiter!r} does not read all of the source's files: they use different delimiters "
            f"({each}), and one delimiter serves all of a source's files. Convert {others} to {most!r}-separated "
            f"(save it again as CSV with that delimiter){then}"
        )

    def _header(self, path: str) -> str | None:
        """The first line of ``path`` in the source's encoding, None where it cannot be read (the reading's to say)."""
        try:
            with open(heirloom.open_regular(Path(path)), "rb") as handle:
                first = _first_line(handle, self.encoding)
        except (OSError, LookupError, UnicodeError):  # UTF-16 without a BOM too: the column check says how to read it
            return None
        return None if "\udcff" in first else first.removeprefix("\ufeff")

    def csv_rows(
        self, path: str | Path, required: Sequence[str], named: FileSettings = SOURCE_FILE
    ) -> Iterator[tuple[int, dict[str, str]]]:
        """:func:`csv_rows` of ``path`` with the delimiter and the encoding this source's settings ``named``
        give."""
        return csv_rows(
            path,
            required,
            delimiter=self.delimiter_named(named.delimiter),
            encoding=self.encoding_named(named.encoding),
            named=named,
        )
