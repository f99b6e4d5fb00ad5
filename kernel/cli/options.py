"""Click options that more than one command defines the same way (the kernel's and plugins').

Plugins take them from :mod:`heirloom.options`, the public face of this module.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any, TypeVar

import click

from heirloom.core.settings import endpoint_problem
from heirloom.links import broken_path, first_broken
from heirloom.wire.transport import loopback

F = TypeVar("F", bound=Callable[..., object])


#: ``--set KEY.PATH=VALUE`` (repeatable), given to the command as ``overrides``: what
#: ``Kernel.resolve(profile, overrides)`` takes.
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY.PATH=VALUE",
    help="Override a value, typed by the schema (repeatable): --set models.sentiment.epochs=3",
)


class ProfileRef(click.ParamType):
    """A PROFILE (a name or a ``.toml`` path), refusing ``""`` (an unset variable in a script):
    the loader read it as the working directory, "not a profile: a folder", naming nothing."""

    name = "profile"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "":
            named = f"{param.opts[0]} PROFILE" if isinstance(param, click.Option) else "PROFILE"
            said = "give a profile name (heirloom profiles lists them) or a .toml path"
            raise click.UsageError(f"{named} is empty: {said}", ctx)
        return value


#: The type of every argument or option naming a profile: ``@click.argument("profile", type=PROFILE)``.
PROFILE = ProfileRef()


def existing_file(name: str, help: str) -> Callable[[F], F]:
    """An option naming a file that must exist, as a Path: a key (``--curve-secret``), a tokens file."""
    return click.option(name, type=a_path(exists=True, dir_okay=False), help=help)


def existing_folder(name: str, help: str) -> Callable[[F], F]:
    """An option naming a folder that must exist, as a Path: a folder of keys (``--curve-clients``)."""
    return click.option(name, type=a_path(exists=True, file_okay=False), help=help)


def listen_options(default_port: int) -> Callable[[F], F]:
    """``--host``, ``--port`` and ``--allow-host`` of a command that serves HTTP (``heirloom
    gateway``, ``heirloom ui``); ``answered_hosts(host, allowed_hosts)`` reads the last."""
    host = click.option(
        "--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface)."
    )
    port = click.option(
        "--port", default=default_port, show_default=True, type=click.IntRange(0, 65535), help="HTTP port."
    )
    allow = click.option(
        "--allow-host",
        "allowed_hosts",
        multiple=True,
        metavar="NAME",
        callback=_host_names,
        help="A Host header name to answer besides loopback ones (repeatable; '*': any). Default: on a loopback "
        "--host, loopback names only (against DNS rebinding); on another address, any.",
    )

    def decorate(command: F) -> F:
        return host(port(allow(command)))

    return decorate


#: A host name (letters, digits, '-', dots) or an IP address, as --allow-host takes it.
HOST_NAME = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*|[0-9a-f:.]+")


def _host_names(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """``--allow-host`` values lower-cased, an absolute name's final dot dropped, IPv6 brackets
    removed; a value that could never equal a Host name (a port, a scheme, a pattern) is a usage error."""
    names = []
    for value in values:
        name = value.strip().lower().removesuffix(".").removeprefix("[").removesuffix("]")
        if name != "*" and not HOST_NAME.fullmatch(name):
            raise click.BadParameter(f"{value!r} is not a host name (no port, scheme or pattern; '*' allows any)")
        names.append(name)
    return tuple(names)


class GivenPath(click.Path):
    """click.Path, as a Path, refusing ``""`` (an unset variable in a script): ``Path("")`` is
    the working directory, so ``keys new ""`` wrote keys there and ``data fetch --to ""`` fetched there.
    Where a folder is needed it refuses a device, FIFO or socket too: click refuses only a regular file,
    so ``data list --to /dev/null`` listed an empty folder and ``keys new FIFO`` failed late, exit 1."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "":
            folder = "a folder, '.' for this one" if self.dir_okay else ""
            what = " or ".join(filter(None, ["a file" if self.file_okay else "", folder]))
            self.fail(f"is empty (an unset variable?): name {what}", param, ctx)
        if self.exists and (why := broken_path(Path(value))):  # click said "does not exist" of a link loop
            self.fail(f"{click.format_filename(value)!r} {why}", param, ctx)
        if not self.file_okay and (why := _no_folder_there(Path(value))):  # "File exists", exit 1 (h426 F3)
            self.fail(why, param, ctx)
        path = super().convert(value, param, ctx)
        if not self.file_okay and path.exists() and not path.is_dir():
            self.fail(f"{click.format_filename(path)!r} is a device, FIFO or socket, not a folder", param, ctx)
        return path


def _no_folder_there(path: Path) -> str:
    """Why no folder can be made at ``path``: it or a folder above it is a link to nothing, or what is above is a file;
    "" otherwise (mkdir said "File exists" of a dangling link, "Not a directory" of a file above, exit 1)."""
    if why := first_broken(*(path, *path.parents)):
        return why
    above = next((folder for folder in path.parents if folder.exists() and not folder.is_dir()), None)
    return f"{click.format_filename(above)} is a file, not a folder" if above is not None else ""


#: Bytes a file name may have on the file systems heirloom runs on (ext4, xfs, btrfs, tmpfs...).
NAME_MAX = 255


def too_long(name: str) -> str:
    """A name too long for a file, cut as every error cuts it (300 letters printed whole filled the screen)."""
    return f"{os.strerror(errno.ENAMETOOLONG)}: {name[:80]}{'...' * (len(name) > 80)} ({len(name)} characters)"


def too_long_part(path: str) -> str:
    """The part of ``path`` too long for a file name (the 300 letters of ``<300 a's>/x``, not ``x``: checker h409
    F3), else the whole path (each part short, all together past the system's limit)."""
    longest = max(Path(path).parts or [path], key=lambda part: len(os.fsencode(part)))
    return longest if len(os.fsencode(longest)) > NAME_MAX else path


#: What a name of one of the process's open descriptors resolves to through /proc.
_DESCRIPTOR = re.compile(r"/proc/(?:self|thread-self|\d+)(?:/task/\d+)?/fd/\d+")


def own_descriptor(path: Path) -> bool:
    """Whether ``path`` names one of this process's open descriptors (``/dev/stdout``, ``/dev/fd/3``,
    ``/proc/self/fd/1``): a file put there by a rename replaced ``/dev/stdout`` itself, for the whole host."""
    try:
        folder = os.path.realpath(path.parent)
        target = os.readlink(path) if path.is_symlink() else ""
    except (OSError, ValueError):
        return False
    return bool(_DESCRIPTOR.fullmatch(f"{folder}/{path.name}") or _DESCRIPTOR.fullmatch(target))


def output_file(path: Path | None) -> Path | None:
    """An option's file that a command writes after its work (``eval --html``, ``feedback export -o``), checked
    as it is parsed: a usage error (exit 2) before the work, where the failed write after it was exit 1 (checker
    307 F6): a name too long for a file, or a folder that is not there; and, as the file is put in place by a
    rename (a link there is replaced), ``/dev/stdout`` and its like. None and ``-`` (stdout) pass."""
    if path is None or str(path) == "-":
        return path
    if own_descriptor(path):
        raise click.BadParameter(
            f"{path} is an open descriptor of this process, not a file: the file is put in place by a rename, "
            f"which would replace {path} itself; name a file"
        )
    try:
        os.lstat(path)
    except OSError as exc:  # not there is what a new file is; a too long name (or folder name) is no file at all
        if exc.errno == errno.ENAMETOOLONG:
            raise click.BadParameter(too_long(too_long_part(str(path)))) from None
    if not path.parent.is_dir():
        problem = "is a file, not a folder" if path.parent.is_file() else "does not exist"
        raise click.BadParameter(f"{path}: the folder {path.parent} {problem}")
    return path


def a_path(*, exists: bool = False, file_okay: bool = True, dir_okay: bool = True, writable: bool = False) -> GivenPath:
    """The type of every path option and argument: ``GivenPath`` giving a ``Path``."""
    return GivenPath(exists=exists, file_okay=file_okay, dir_okay=dir_okay, writable=writable, path_type=Path)


def answered_hosts(listen: str, allowed: tuple[str, ...]) -> frozenset[str] | None:
    """The Host names besides loopback ones that a server listening on ``listen`` answers
    (``--allow-host``); None: any, when it listens beyond loopback and none is given. A page
    whose own name resolves to 127.0.0.1 (DNS rebinding) is same-origin to the browser, but
    its requests carry that name."""
    if "*" in allowed or not (allowed or loopback(listen)):
        return None
    return frozenset(allowed)  # normalised by the option's callback


#: A Host header: a name or a bracketed IPv6 address, then an optional port (RFC 9110 7.2).
_HOST_HEADER = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s@/\\:\[\]?#%]+)(?::([0-9]{1,5}))?\Z")


def host_refusal(headers: Iterable[tuple[bytes, bytes]], hosts: frozenset[str] | None) -> str | None:
    """Why a request (its ASGI ``headers``) is not for a loopback name nor one of ``hosts``
    (``answered_hosts``; None: any), or None. Two Host headers are refused; none is allowed
    (HTTP/1.0 may send none, browsers always send one)."""
    if hosts is None:
        return None
    values = [value for key, value in headers if key == b"host"]
    if len(values) > 1:
        return "more than one Host header"
    return _name_refusal(values[0].decode("latin-1"), hosts) if values else None


@functools.lru_cache(maxsize=256)
def _name_refusal(host: str, hosts: frozenset[str]) -> str | None:
    """``host_refusal`` of one Host value: clients send the same few, so each is parsed once."""
    match = _HOST_HEADER.match(host)
    if match is None or int(match[2] or 0) > 65535:
        return f"Host {host[:200]!r} is not a host name"
    name = match[1].removeprefix("[").removesuffix("]").removesuffix(".")  # a name's absolute form is the name
    if name.lower() in hosts or loopback(name):
        return None
    return f"Host {host[:200]!r} is not a name this server answers (--allow-host adds one)"


ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


def host_guard(app: ASGIApp, hosts: frozenset[str] | None) -> ASGIApp:
    """``app`` (ASGI) answering 400 to a request whose ``Host`` ``host_refusal`` refuses;
    ``hosts`` None: any Host (a server listening beyond loopback with no ``--allow-host``)."""
    if hosts is None:
        return app

    async def guarded(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and (why := host_refusal(scope["headers"], hosts)):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            headers = [(b"content-type", b"text/plain; charset=utf-8")]
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": why.encode()})
            return
        await app(scope, receive, send)

    return guarded


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` for the server to take over
    (``uvicorn.Server(config).run(sockets=[sock])``), so no other process can take the port
    while the server loads (connections wait in the backlog meanwhile). Naming the address when
    it cannot listen: a UsageError (exit 2) where the host names nothing or no address of this
    machine, else a ClickException (exit 1: the port in use)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise _cannot_listen(host, port, exc, exc.errno == socket.EAI_NONAME) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        sock.bind((host, port))
        sock.listen()  # bound alone, another SO_REUSEADDR socket could still bind the port on Linux
    except OSError as exc:
        sock.close()
        raise _cannot_listen(host, port, exc, exc.errno == errno.EADDRNOTAVAIL) from None
    return sock


class Failure(click.ClickException):
    """Exit 1 saying ``error: ...``, as serve's ``cannot bind`` does (click's own reads ``Error:``: h383 F6)."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


def _cannot_listen(host: str, port: int, exc: OSError, names_nothing: bool) -> click.ClickException:
    said = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return click.UsageError(f"{said} (--host names no address of this machine)") if names_nothing else Failure(said)


def check_listenable(host: str, port: int) -> None:
    """``bound_socket``'s check alone (the socket is closed again): for a server that can
    only bind by itself."""
    bound_socket(host, port).close()


def log_options(command: F) -> F:
    """``--log-format`` and ``--log-level`` of a command that runs a daemon (``heirloom serve``,
    ``heirloom worker``, ``heirloom gateway PROFILE``); pass them to ``logs.configure``."""
    log_format = click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Log lines as text or as JSON objects.",
    )
    log_level = click.option(
        "--log-level",
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        callback=_daemon_log_level,
        help="Least severe log line written [default: the global --log-level when given before the command, "
        "else INFO].",
    )
    return log_format(log_level(command))


def _daemon_log_level(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    """A daemon logs INFO by default (its start, drains, swaps); ``heirloom --log-level X
    serve`` asks for X, which a command's own --log-level then overrides."""
    if value is not None:
        return value
    root = ctx.find_root()
    given = root.get_parameter_source("log_level") not in (None, click.core.ParameterSource.DEFAULT)
    return root.params["log_level"] if given else "INFO"


class Seconds(click.FloatRange):
    """A duration option: a number of seconds above 0 and at most a day. click's FloatRange
    lets ``nan`` through (every comparison with it is false) and ``inf``, which then break
    the deadline arithmetic of a client or a drain; it is one for its range in ``--help``
    (``[0<x<=86400]``, unsaid before: h383 F4)."""

    name = "seconds"
    LIMIT = 86_400.0

    def __init__(self) -> None:
        super().__init__(min=0, max=int(self.LIMIT), min_open=True)

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not 0 < seconds <= self.LIMIT:
            self.fail(f"{value!r} is not between 0 (excluded) and {self.LIMIT:g} seconds", param, ctx)
        return seconds


SECONDS = Seconds()


class Address(click.ParamType):
    """A ZeroMQ endpoint option (``--connect``): ``tcp://HOST:PORT``, ``ipc:///path`` or
    ``inproc://name``; a bare ``HOST:PORT`` is a usage error, not ZeroMQ's traceback."""

    name = "address"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        address = str(value)
        if (problem := endpoint_problem(address)) is not None:
            self.fail(f"{problem} (e.g. tcp://127.0.0.1:5555)", param, ctx)
        scheme, _, rest = address.partition("://")
        host, _, port = rest.rpartition(":") if scheme == "tcp" else (rest, "", "")
        if host in ("", "*") or port == "*":  # what a daemon binds, not an address to reach
            self.fail(
                f"{address!r} names no {'host and port' if scheme == 'tcp' else 'path'} to connect to", param, ctx
            )
        return address


ADDRESS = Address()
