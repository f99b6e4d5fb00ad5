"""Public data sets a plugin names, so ``heirloom data fetch NAME`` can put them where
profiles look (``${data}/NAME/...``) and prove they are the bytes its figures came from.

Every file carries the sha256 of the original: a changed upstream, a proxy's error page or
a truncated transfer is refused rather than trained on. Files already in place are hashed,
not downloaded again, so ``fetch`` also checks a copy made by hand (offline machines).
The download itself is :mod:`heirloom.datasets.fetch`.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import attrs

from heirloom.core.errors import HeirloomError

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")

#: ``progress(description, total_bytes_or_None)`` returns ``advance(n_bytes)``.
Progress = Callable[[str, int | None], Callable[[int], None]]


class DataError(HeirloomError):
    """A data set could not be fetched or checked: the message names the file or URL."""


@attrs.frozen
class DataFile:
    """One file of a data set."""

    #: Where it goes, relative to the data set's folder (``train.csv``, ``bundles/a.json``).
    path: str
    #: An http(s) or file URL: of the file itself, or of the zip archive that holds it.
    url: str
    #: The sha256 (hex) of the file's bytes (of the member, for a file inside an archive).
    sha256: str
    #: Its size in bytes, if known: a download that grows past it is stopped, and a file of
    #: another size is refused.
    size: int | None = None
    #: Its name inside the zip archive at ``url``; None when ``url`` is the file.
    member: str | None = None


@attrs.frozen
class Dataset:
    """A data set a plugin registers with ``heirloom_register_datasets``: ``register(name, Dataset(...))``.

    ``name`` is its folder under the data root; profiles refer to its files as ``${data}/name/path``.
    """

    title: str
    #: One line: the license and what it allows (``CC BY 4.0: cite the paper``).
    license: str
    files: tuple[DataFile, ...] = attrs.field(converter=tuple)
    #: Where a person reads about it (paper, project page).
    homepage: str = ""
    #: Its license restricts use (research only, non-commercial): downloading needs an explicit yes.
    accept_license: bool = False

    @property
    def size(self) -> int:
        """Bytes of the files whose size is known."""
        return sum(file.size or 0 for file in self.files)

    def cut_short(self, folder: Path, under: Path) -> dict[str, str]:
        """``{"train.csv": "train.csv is 0 bytes, not 1,234"}`` for each of its files in ``folder`` at or under
        ``under`` that lies there at another size than it states (a copy cut off or changed: a data problem named no
        fetch otherwise, v14 F5); none for a file missing (said elsewhere), unsized or whole."""
        there = [(file, folder / file.path) for file in self.files]
        return {
            file.path: f"{file.path} is {at.stat().st_size:,} bytes, not {file.size:,}"
            for file, at in there
            if (at == under or under in at.parents) and at.is_file() and not present(at, file.size)
        }

    @classmethod
    def from_manifest(cls, text: str) -> Dataset:
        """A data set from a JSON manifest (``{"title", "license", "files": [{...}], ...}``),
        the form plugins ship long file lists in."""
        data: dict[str, Any] = json.loads(text)
        files = tuple(DataFile(**file) for file in data.pop("files"))
        return cls(files=files, **data)


def present(path: Path, size: int | None) -> bool:
    """Whether ``path`` is a file of the expected size (cheap; ``fetch`` checks the hash)."""
    return path.is_file() and (size is None or path.stat().st_size == size)


def problems(name: str, dataset: Any) -> list[str]:
    """What is wrong with a registration (a plugin's mistake), each naming the file; [] if none."""
    if not isinstance(dataset, Dataset):
        return [f"{name}: registered {type(dataset).__name__}, not a heirloom.Dataset"]
    rule = "a data set name is a lower-case letter or digit, then those, '.', '_' or '-'"
    found = [] if _NAME.match(name) else [f"{name!r}: {rule}"]
    seen: dict[PurePosixPath, str] = {}
    for file in dataset.files:
        where = f"{name}/{file.path}"
        found += _path_problems(where, file.path, seen)
        if not _SHA256.match(file.sha256):
            found.append(f"{where}: sha256 must be 64 lower-case hex digits")
        if file.size is not None and (not isinstance(file.size, int) or file.size < 0):
            found.append(f"{where}: size must be a number of bytes, 0 or more: {file.size!r}")
        if problem := _url_problem(file.url):
            found.append(f"{where}: {problem}: {file.url!r}")
    return found


def _path_problems(where: str, written: str, seen: dict[PurePosixPath, str]) -> list[str]:
    """A file path must stay inside the data set's folder, and name one file no other path names."""
    path = PurePosixPath(written)
    if not path.parts or path.is_absolute() or ".." in path.parts or written.endswith("/") or "\\" in written:
        return [f"{where}: a relative path of a file inside the data set's folder, without '..'"]
    if _CONTROL_OR_SPACE.search(written.replace(" ", "")):
        return [f"{where}: a path without control characters"]
    if path in seen:
        return [f"{where}: the same file as {seen[path]!r}"]
    clash = next((other for known, other in seen.items() if known in path.parents or path in known.parents), None)
    seen[path] = written
    return [f"{where}: a file cannot also be the folder of {clash!r}"] if clash else []


def _url_problem(url: str) -> str | None:
    if _CONTROL_OR_SPACE.search(url):
        return "a url without spaces or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        return "not a url"
    if parts.scheme in ("http", "https") and parts.hostname:
        return None
    if parts.scheme == "file" and parts.path.startswith("/"):
        return None
    return "url must be an absolute http, https or file url"
