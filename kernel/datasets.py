"""Public data sets a plugin names, so ``heirloom data fetch NAME`` can put them where
profiles look (``${data}/NAME/...``) and prove they are the bytes its figures came from.

Every file carries the sha256 of the original: a changed upstream, a proxy's error page or
a truncated transfer is refused rather than trained on. Files already in place are hashed,
not downloaded again, so ``fetch`` also checks a copy made by hand (offline machines).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import urllib.parse
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Any

import attrs

from heirloom.core.errors import HeirloomError
from heirloom.core.fsutil import fsync_dir
from heirloom.core.version import VERSION

CHUNK = 1 << 20
#: A download whose size no file states stops here (a server that never ends its body).
MAX_UNSIZED_BYTES = 4 << 30
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")

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
    #: Its size in bytes, if known: a download that grows past it is stopped.
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
    #: Its license restricts use (research only, non-commercial): fetching needs an explicit yes.
    accept_license: bool = False

    @property
    def size(self) -> int:
        """Bytes of the files whose size is known."""
        return sum(file.size or 0 for file in self.files)

    @classmethod
    def from_manifest(cls, text: str) -> Dataset:
        """A data set from a JSON manifest (``{"title", "license", "files": [{...}], ...}``),
        the form plugins ship long file lists in."""
        data: dict[str, Any] = json.loads(text)
        files = tuple(DataFile(**file) for file in data.pop("files"))
        return cls(files=files, **data)


def problems(name: str, dataset: Any) -> list[str]:
    """What is wrong with a registration (a plugin's mistake), each naming the file; [] if none."""
    if not isinstance(dataset, Dataset):
        return [f"{name}: registered {type(dataset).__name__}, not a heirloom.Dataset"]
    found = [] if _NAME.match(name) else [f"{name!r}: a data set name is lower-case letters, digits, '.', '_', '-'"]
    seen: set[str] = set()
    for file in dataset.files:
        where = f"{name}/{file.path}"
        parts = PurePosixPath(file.path).parts
        if not parts or PurePosixPath(file.path).is_absolute() or ".." in parts or "\\" in file.path:
            found.append(f"{where}: a path inside the data set's folder, without '..'")
        if file.path in seen:
            found.append(f"{where}: listed twice")
        seen.add(file.path)
        if not _SHA256.match(file.sha256):
            found.append(f"{where}: sha256 must be 64 lower-case hex digits")
        if urllib.parse.urlsplit(file.url).scheme not in ("http", "https", "file"):
            found.append(f"{where}: url must be http, https or file: {file.url!r}")
    return found


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@attrs.define
class Fetched:
    """What ``fetch`` did for one data set."""

    folder: Path
    downloaded: list[str] = attrs.field(factory=list)
    present: list[str] = attrs.field(factory=list)


def fetch(
    name: str,
    dataset: Dataset,
    root: Path,
    *,
    force: bool = False,
    timeout: float = 30.0,
    progress: Progress | None = None,
) -> Fetched:
    """Put every file of ``dataset`` in ``root/name``, checked against its sha256.

    A file already there with the right hash is kept; one with another hash is a DataError
    unless ``force`` (then it is replaced). Each file is written to a temp file and renamed,
    so an interrupted fetch leaves whole, checked files or none.
    """
    if found := problems(name, dataset):
        raise DataError("; ".join(found))
    folder = root / name
    done = Fetched(folder)
    missing: dict[str, list[DataFile]] = {}
    for file in dataset.files:
        target = folder / file.path
        digest = file_sha256(target) if target.is_file() else None
        if digest == file.sha256:
            done.present.append(file.path)
            continue
        if digest is not None and not force:
            raise DataError(
                f"{target}: sha256 {digest} is not the original's {file.sha256} "
                "(changed by hand, or another version): --force replaces it"
            )
        missing.setdefault(file.url, []).append(file)
    for url, files in missing.items():
        try:
            if files[0].member is None:
                with _download(url, progress, f"{name}/{files[0].path}", timeout, files[0].size) as body:
                    _place(body, files[0], folder / files[0].path, url)
            else:
                archive = PurePosixPath(urllib.parse.urlsplit(url).path).name
                _extract(url, files, folder, progress, f"{name}: {archive}", timeout)
        except OSError as exc:  # the data root: read-only, full, a folder where a file goes
            raise DataError(
                f"{exc.filename or folder}: {exc.strerror or exc} (--to DIR puts the data elsewhere)"
            ) from None
        done.downloaded.extend(file.path for file in files)
    return done


def _extract(
    url: str, files: list[DataFile], folder: Path, progress: Progress | None, label: str, timeout: float
) -> None:
    """Download the zip at ``url`` once (beside the data, never kept) and place each member."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder, prefix=".heirloom-archive-") as archive:
        with _download(url, progress, label, timeout, None) as body:
            while chunk := body.read(CHUNK):
                archive.write(chunk)
        try:
            members = zipfile.ZipFile(archive)
        except zipfile.BadZipFile as exc:
            raise DataError(f"{url}: not a zip archive ({exc})") from None
        with members:
            for file in files:
                try:
                    info = members.getinfo(str(file.member))
                except KeyError:
                    raise DataError(f"{url}: the archive has no member {file.member!r}") from None
                if file.size is not None and info.file_size != file.size:
                    raise DataError(f"{url}: {file.member} is {info.file_size} bytes, the original {file.size}")
                try:
                    with members.open(info) as body:
                        _place(body, file, folder / file.path, f"{url} ({file.member})")
                except zipfile.BadZipFile as exc:
                    raise DataError(f"{url}: {file.member} is damaged ({exc})") from None


@contextmanager
def _download(url: str, progress: Progress | None, label: str, timeout: float, size: int | None) -> Iterator[IO[bytes]]:
    """The response body of ``url``, advancing ``progress``; network errors become DataError."""
    import urllib.error  # only when downloading: it costs every ``import heirloom`` 20 ms
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": f"heirloom/{VERSION}"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"{url}: {reason} (offline? copy the file in by hand and fetch again to check it)") from None
    length = response.headers.get("Content-Length")
    advance = progress(label, size or (int(length) if length and length.isdigit() else None)) if progress else None
    with response:
        yield _Counted(response, advance, url, size)


class _Counted:
    """A response body that reports progress and stops past the size it should have."""

    def __init__(self, body: IO[bytes], advance: Callable[[int], None] | None, url: str, size: int | None):
        self._body, self._advance, self._url = body, advance, url
        self._limit = size if size is not None else MAX_UNSIZED_BYTES
        self._read = 0

    def read(self, n: int = CHUNK) -> bytes:
        try:
            chunk = self._body.read(n)
        except (OSError, TimeoutError) as exc:
            raise DataError(f"{self._url}: the download broke off after {self._read} bytes ({exc})") from None
        self._read += len(chunk)
        if self._read > self._limit:
            raise DataError(f"{self._url}: more than the {self._limit} bytes expected")
        if self._advance is not None and chunk:
            self._advance(len(chunk))
        return chunk


def _place(body: Any, file: DataFile, target: Path, source: str) -> None:
    """Stream ``body`` to ``target`` through a synced temp file, renamed only if its hash is right."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as handle:
            while chunk := body.read(CHUNK):
                digest.update(chunk)
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        if digest.hexdigest() != file.sha256:
            raise DataError(f"{source}: sha256 {digest.hexdigest()} is not the original's {file.sha256}; nothing kept")
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
