"""Why a symbolic link leads to no file: said in the link's own terms (what the user wrote), where
"no such file" named the link's target or nothing at all; and what a profile's path that leads to none says."""

from __future__ import annotations

import difflib
import errno
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

FETCH = "`heirloom data fetch {}` (add --accept-license if asked)"  # a license gate is no second refusal


def broken_link(path: Path) -> str:
    """``is a symbolic link loop`` or ``links to X, which does not exist`` when ``path`` is a
    symbolic link that leads to no file; "" when it is no link or leads to one."""
    if not path.is_symlink() or path.exists():
        return ""
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop"
    return f"links to {os.readlink(path)}, which does not exist"


def broken_path(path: Path) -> str:
    """:func:`broken_link`'s words for ``path`` itself, else ``passes through a symbolic link loop`` when a folder
    above it is one (``under/x -> ../under/x``, a store at ``under/x/store``: v12 F3); "" when neither."""
    if why := broken_link(path):
        return why
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "passes through a symbolic link loop"
    return ""


def linked(path: Path) -> str:
    """``PATH is a symbolic link (...)`` where a file heirloom keeps must be the file itself (a store's index: a link
    planted there had the index written outside the store, unsaid, checker h426 F5); "" otherwise."""
    return f"{path} is a symbolic link (never used through one: put the file itself there)" * path.is_symlink()


def first_broken(*paths: Path) -> str:
    """``PATH WHY`` (:func:`broken_path`) of the first of ``paths`` that is broken, or ""."""
    return next((f"{path} {why}" for path in paths if (why := broken_path(path))), "")


def checked_path(written: str, path: Path) -> tuple[bool, str]:
    """Whether ``path`` exists, and why it is no name a file can have (``written`` as the profile wrote it, its secrets
    hidden), or "": a part over 255 bytes, the whole over 4,096, or a folder it cannot search (EACCES). Asking whether
    it exists raised, and the command stopped at a bare ``error: File name too long: ...``, naming neither the file nor
    the key, hiding every other problem (h365 F1)."""
    try:
        return path.exists(), ""
    except OSError as exc:
        said = f"path {written[:60]}{'...' * (len(written) > 60)}: {exc.strerror}"
        if exc.errno != errno.ENAMETOOLONG:
            return False, said
        longest, whole = max(len(os.fsencode(part)) for part in path.parts), len(os.fsencode(path))
        return False, f"{said} (its longest part is {longest} bytes, the whole {whole}: 255 and 4,096 at most)"


def broken_profile(ref: str, folders: Iterable[Path], shown: Callable[[Path], str]) -> str:
    """Why ``ref`` leads to no profile when it is a broken link (``it is a symbolic link loop``) or, a name,
    when the first ``NAME.toml`` of ``folders`` (the search path) is one (``profiles/x.toml links to ...``,
    where "no such profile" hid the file it found); "" when neither is."""
    if why := broken_link(Path(ref)):
        return f"it {why}"
    by_name = [] if "/" in ref or os.sep in ref or ref.endswith(".toml") else [f / f"{ref}.toml" for f in folders]
    return next((f"{shown(link)} {why}" for link in by_name if (why := broken_link(link))), "")


def missing_path(written: str, link: Path, path: Path, root: Path, datasets: Callable[[], Iterable[str]]) -> str:
    """What a profile's path that leads to no file says: ``written`` (as the profile wrote it, ``link`` unresolved)
    when it is a broken symbolic link, where its resolved target, ``path``, was said not to exist (checker 305 F3);
    under the data ``root``, :func:`fetch_hint`'s data set to fetch."""
    if why := broken_link(link):
        return f"path {written} {why}"
    if not path.is_relative_to(root):
        return f"path does not exist: {path}"
    hint = fetch_hint(path, root, datasets, close=True)
    return f"path does not exist: {path} (data root {root}{_whence(root)}{hint})"


def _whence(root: Path) -> str:
    """What is wrong with the data ``root`` itself, or "": a newcomer who forgot or mistyped HEIRLOOM_DATA was told
    only to fetch a data set they had (checker h429 F4)."""
    unset = not os.environ.get("HEIRLOOM_DATA")
    if root.is_dir():
        return ", the home's, as HEIRLOOM_DATA is not set" if unset else ""
    fix = "HEIRLOOM_DATA is not set; set it to the folder holding the data sets" if unset else "from HEIRLOOM_DATA"
    return f", which does not exist: {fix}"


def fetch_hint(path: Path, root: Path, datasets: Callable[[], Iterable[str]], *, close: bool = False) -> str:
    """``; a public data set? `heirloom data fetch NAME` ...`` when ``path`` is in (or is) the folder of one of
    ``datasets`` under the data ``root``; with ``close``, else the data set closest to the folder's name (a typo's
    `heirloom data fetch financial-phrasebnk` then failed, F12); else ""."""
    if not path.is_relative_to(root):
        return ""
    name = next(iter(path.relative_to(root).parts), "")  # a data set's folder, or a file in one
    known = list(datasets()) if name and not Path(name).suffix else []
    if name in known:
        return f"; a public data set? {FETCH.format(name)}"
    near = difflib.get_close_matches(name, known, 1) if close else []
    return "".join(f"; did you mean the data set {c!r}? {FETCH.format(c)}" for c in near)


def cut_short(
    paths: Iterable[Path], root: Path, datasets: Callable[[], Mapping[str, Sequence[tuple[Any, Any]]]], said: str
) -> str:
    """``in banking77/, train.csv is 0 bytes, not 1,234 (cut short or changed?): `heirloom data fetch banking77` ...``
    for each of ``datasets`` (``name -> [(plugin, data set)]``) whose folder under the data ``root`` holds (or is)
    one of ``paths``, of the files there that what was ``said`` names and that are of another size than the set
    states (v14 F5: a problem naming a file half-copied named no fetch; v27 F3: nor a file no problem names)."""
    found: dict[str, list[str]] = {}
    for path in paths:
        name = next(iter(path.relative_to(root).parts), "") if path.is_relative_to(root) else ""
        entries = datasets().get(name, ()) if name else ()
        if len(entries) == 1 and hasattr(type(dataset := entries[0][1]), "cut_short"):
            whys = found.setdefault(name, [])
            cut = dataset.cut_short(root / name, path).items()
            whys += [
                why for file, why in cut if why not in whys and re.search(rf"\b{re.escape(Path(file).name)}\b", said)
            ]
    fetch = "(cut short or changed?): " + FETCH
    return "; ".join(f"in {name}/, {'; '.join(whys)} {fetch.format(name)}" for name, whys in found.items() if whys)


def found_in(name: str, folders: Iterable[Path], near: Path | None, skip: Path | None) -> Path | None:
    """The file ``name`` finds in ``near`` (an extending file's folder), then in ``folders`` in order, each file once,
    at its first place (a folder listed twice skipped a layer: checker v23 F2); never ``skip`` (the extending file),
    and where ``skip`` is in ``folders`` only one further on than its place (two shadowing layers: h403 F2)."""
    found: dict[Path, Path] = {}
    for candidate in (folder / name for folder in folders):
        if candidate.exists():
            found.setdefault(Path(os.path.realpath(candidate)), candidate)
    if skip in (real := list(found)):
        return next((found[path] for path in real[real.index(skip) + 1 :]), None)
    nearby = [near / name] if near is not None else []
    return next((c for c in [*nearby, *found.values()] if c.exists() and Path(os.path.realpath(c)) != skip), None)
