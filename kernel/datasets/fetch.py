"""``fetch``: download a data set's files, check each against its sha256, put it in place.

Each file streams to a temp file beside its destination and is renamed only when its hash
(and its size, when the data set states one) is right, so a broken, tampered or cut-off
transfer leaves nothing. Fetches into one data root take turns (a lock file), so the temp
files a killed fetch left are swept by the next one and two fetches never download twice.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import socket
import tempfile
import time
import urllib.parse
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

import attrs

from heirloom.core.version import VERSION
from heirloom.datasets import DataError, DataFile, Dataset, Progress, problems
from heirloom.files import create_new, fsync_dir, irregular, temp_beside
from heirloom.links import broken_path

CHUNK = 1 << 20
#: A file whose size its data set does not state stops here (a server that never ends its
#: body, an archive member that inflates without end).
MAX_UNSIZED_BYTES = 4 << 30
#: A download slower than this (bytes per second) over a whole ``timeout`` is stopped: a
#: server trickling bytes would otherwise keep every single read within its timeout.
MIN_RATE = 1024
LOCK_NAME = ".heirloom-fetch.lock"
#: The temp files ``_place`` writes (``temp_beside``: 16 hex digits; or 8 letters, digits or ``_``, the ``mkstemp``
#: names of heirloom 0.2.0 and before).
_TEMP = re.compile(r"\..+\.(?:[a-z0-9_]{8}|[0-9a-f]{16})\.part\Z")


@attrs.define
class Fetched:
    """What ``fetch`` did for one data set."""

    folder: Path
    downloaded: list[str] = attrs.field(factory=list)
    present: list[str] = attrs.field(factory=list)
    #: One message per file or archive that could not be fetched (the others were).
    failed: list[str] = attrs.field(factory=list)
    #: The files still missing afterwards.
    missing: list[DataFile] = attrs.field(factory=list)


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

    A file already there with the right hash is kept; one with another hash is reported in
    ``failed`` unless ``force`` (then it is replaced), and so is a folder, a FIFO or a dangling
    link in a file's place, and a file that cannot be downloaded: the others are still
    fetched. DataError: a bad registration, or a data root that cannot be written.
    """
    if found := problems(name, dataset):
        raise DataError("; ".join(found))
    folder = root / name
    done = Fetched(folder)
    missing = _not_in_place(dataset.files, folder, force, done)
    if not missing:
        done.missing = [file for file in dataset.files if file.path not in done.present]
        return done
    created = not folder.exists()
    try:
        with _taking_turns(root, progress):
            _sweep(folder)
            for url, files in _by_url(_not_in_place(missing, folder, force, done)):
                try:
                    if files[0].member is None:
                        with _download(url, progress, f"{name}/{files[0].path}", timeout, files[0].size) as body:
                            _place(body, files[0], folder / files[0].path, url)
                        done.downloaded.append(files[0].path)
                    else:
                        archive = PurePosixPath(urllib.parse.urlsplit(url).path).name
                        _extract(url, files, folder, progress, f"{name}: {archive}", timeout, done)
                except DataError as exc:
                    done.failed.append(str(exc))
                except OSError as exc:  # this file's folder: read-only, full, a broken link: the others go on (h420 F3)
                    done.failed.append(_write_problem(exc, folder / files[0].path))
    except OSError as exc:  # the data root: read-only, full, not a folder
        raise DataError(_write_problem(exc, root)) from None
    finally:
        if created:
            _remove_empty(folder)
    done.missing = [file for file in dataset.files if file.path not in {*done.present, *done.downloaded}]
    return done


def _not_in_place(
    files: tuple[DataFile, ...] | list[DataFile], folder: Path, force: bool, done: Fetched
) -> list[DataFile]:
    """The files to download: those not in ``folder`` with their hash (noted in ``done``). One
    with another hash, or something else in its place, is noted in ``done.failed`` and left
    as it is: each is named, not only the first."""
    missing = []
    for file in files:
        target = folder / file.path
        digest = file_sha256(target) if target.is_file() else None
        if digest == file.sha256:
            done.present.append(file.path)
        elif digest is not None and not force:
            done.failed.append(
                f"{target}: sha256 {digest} is not the original's {file.sha256} "
                "(changed by hand, or another version): --force replaces it"
            )
        elif digest is None and (target.is_symlink() or target.exists()):  # a rename would replace or fail on it
            dangling = target.is_symlink() and not target.exists()
            there = f"is a symbolic link to {os.readlink(target)}, which does not exist" if dangling else ""
            done.failed.append(f"{target} {there or irregular(target) or 'is in the way'}: remove it, then fetch again")
        else:
            missing.append(file)
    return missing


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _by_url(files: list[DataFile]) -> list[tuple[str, list[DataFile]]]:
    """Files grouped by URL: an archive is downloaded once for all its members; a file that is its URL alone, each
    (two of one URL saved the first only, and said both downloaded: checker h420 F1)."""
    grouped: dict[tuple[str, str | None], list[DataFile]] = {}
    for file in files:
        grouped.setdefault((file.url, file.path if file.member is None else None), []).append(file)
    return [(url, group) for (url, _), group in grouped.items()]


@contextlib.contextmanager
def _taking_turns(root: Path, progress: Progress | None) -> Iterator[None]:
    """Hold the data root's fetch lock (a second fetch waits, then finds the files there)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_NAME, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress is not None:
                progress(f"waiting for another heirloom data fetch into {root}", None)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _sweep(folder: Path) -> None:
    """Remove the temp files of a fetch that was killed (SIGKILL, a power cut) in ``folder``."""
    if folder.is_dir():
        for path in folder.rglob(".*.part"):
            if _TEMP.match(path.name) and path.is_file():
                path.unlink(missing_ok=True)


def _remove_empty(folder: Path) -> None:
    """Folders a failed fetch created and left empty, deepest first (never a file)."""
    if not folder.is_dir():
        return
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            path.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


def _write_problem(exc: OSError, root: Path) -> str:
    where = exc.filename or root
    if why := broken_path(Path(where)):  # a bare "File exists" (checker h420 F5)
        return f"{where} {why}: remove it, then fetch again"
    hint = " (--to DIR puts the data elsewhere)" if exc.errno in (errno.EACCES, errno.EROFS, errno.ENOSPC) else ""
    return f"{where}: {exc.strerror or exc}{hint}"


def _extract(
    url: str, files: list[DataFile], folder: Path, progress: Progress | None, label: str, timeout: float, done: Fetched
) -> None:
    """Download the zip at ``url`` once (an unnamed temp file beside the data) and place each member, noting each in
    ``done``: one that fails is named and the others still placed (the first failure stopped the rest: h420 F2)."""
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
                    _extract_one(members, url, file, folder)
                    done.downloaded.append(file.path)
                except DataError as exc:
                    done.failed.append(str(exc))


def _extract_one(members: zipfile.ZipFile, url: str, file: DataFile, folder: Path) -> None:
    try:
        info = members.getinfo(str(file.member))
    except KeyError:
        raise DataError(f"{url}: the archive has no member {file.member!r}") from None
    wrong = info.file_size != file.size if file.size is not None else info.file_size > MAX_UNSIZED_BYTES
    if wrong:  # zipfile reads a member up to its stated size: checked before a byte is written
        raise DataError(f"{url}: {file.member} is {info.file_size} bytes; {_expected(file.size)}")
    try:
        with members.open(info) as body:
            _place(body, file, folder / file.path, f"{url} ({file.member})")
    except zipfile.BadZipFile as exc:
        raise DataError(f"{url}: {file.member} is damaged ({exc})") from None


def _expected(size: int | None) -> str:
    return (
        f"the data set says {size}"
        if size is not None
        else f"the limit for a file of unstated size is {_gib(MAX_UNSIZED_BYTES)}"
    )


def _gib(size: int) -> str:
    return f"{size / (1 << 30):g} GiB"


@contextlib.contextmanager
def _download(url: str, progress: Progress | None, label: str, timeout: float, size: int | None) -> Iterator[IO[bytes]]:
    """The response body of ``url``, advancing ``progress``; network errors become DataError."""
    import urllib.error  # only when downloading: it costs every ``import heirloom`` 20 ms
    import urllib.request

    class HttpRedirectsOnly(urllib.request.HTTPRedirectHandler):
        """urllib follows a redirect to ftp:// too: only http(s) is a download's place."""

        def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
            if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
                raise urllib.error.HTTPError(newurl, code, f"redirected to {newurl}, not http(s)", headers, fp)
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    request = urllib.request.Request(url, headers={"User-Agent": f"heirloom/{VERSION}"})
    try:
        response = urllib.request.build_opener(HttpRedirectsOnly).open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        offline = isinstance(reason, (socket.gaierror, ConnectionError, TimeoutError))
        hint = " (offline? copy the file in by hand and fetch again to check it)" if offline else ""
        raise DataError(f"{url}: {reason}{hint}") from None
    length = response.headers.get("Content-Length")
    advance = progress(label, size or (int(length) if length and length.isdigit() else None)) if progress else None
    with response:
        yield _Counted(response, advance, url, size, timeout)  # type: ignore[misc]


class _Counted:
    """A response body that reports progress, stops past the size it should have, and stops
    a transfer slower than MIN_RATE over a whole ``timeout``."""

    def __init__(self, body: Any, advance: Callable[[int], None] | None, url: str, size: int | None, timeout: float):
        self._read_some = getattr(body, "read1", body.read)  # what has arrived, not a full chunk
        self._advance, self._url, self._size, self._timeout = advance, url, size, timeout
        self._limit = size if size is not None else MAX_UNSIZED_BYTES
        self._read = 0
        self._window = (time.monotonic(), 0)

    def read(self, n: int = CHUNK) -> bytes:
        try:
            chunk = self._read_some(n)
        except (OSError, TimeoutError) as exc:
            raise DataError(f"{self._url}: the download broke off after {self._read} bytes ({exc})") from None
        self._read += len(chunk)
        if self._read > self._limit:
            raise DataError(f"{self._url}: over {self._limit} bytes ({self._read} read); {_expected(self._size)}")
        started, since = self._window[0], self._window[1] + len(chunk)
        if (elapsed := time.monotonic() - started) >= self._timeout:
            if since < MIN_RATE * elapsed:
                raise DataError(f"{self._url}: {since} bytes in the last {elapsed:.0f} s (under 1 KiB/s): stopped")
            self._window = (time.monotonic(), 0)
        else:
            self._window = (started, since)
        if self._advance is not None and chunk:
            self._advance(len(chunk))
        return chunk


def _place(body: Any, file: DataFile, target: Path, source: str) -> None:
    """Stream ``body`` to ``target`` through a synced temp file, renamed only if its hash
    (and its size, when stated) is right."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_beside(target, ".part")
    try:
        fd, digest, written = create_new(temp), hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as handle:
            while chunk := body.read(CHUNK):
                digest.update(chunk)
                handle.write(chunk)
                written += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        if digest.hexdigest() != file.sha256:
            raise DataError(f"{source}: sha256 {digest.hexdigest()} is not the original's {file.sha256}; nothing kept")
        if file.size is not None and written != file.size:
            raise DataError(f"{source}: {written} bytes with the right sha256, but the data set says {file.size}")
        os.chmod(temp, 0o644)
        try:
            os.replace(temp, target)
        except IsADirectoryError:
            raise DataError(f"{target}: a folder is where this file goes") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
