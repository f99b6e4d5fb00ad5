"""Click options for plugin commands (``heirloom_register_commands``) that the kernel's own
commands share, so the same option reads the same in every ``--help``.

- ``listen_options(default_port)``: ``--host`` (default 127.0.0.1), ``--port`` and
  ``--allow-host`` of a command that serves HTTP, as ``heirloom gateway`` and ``heirloom
  ui`` do; ``answered_hosts(host, allowed_hosts)`` is the set of Host names to answer
  besides loopback ones (``loopback(name)``), None for any; ``host_refusal(headers, hosts)``
  says why a request's Host (from its ASGI headers) is not one of them, and ``host_guard(app, hosts)`` wraps
  an ASGI app to answer such requests 400 (DNS rebinding); ``url_host(host)`` brackets an
  IPv6 address for a URL;
  ``bound_socket(host, port)`` binds the port before anything loads, for the server to take
  over (``uvicorn.Server(config).run(sockets=[sock])``), or says "cannot listen on
  HOST:PORT: ..." (exit 1; exit 2 where HOST names no address of this machine);
  ``check_listenable(host, port)`` checks alone.
- ``existing_file(name, help)``, ``existing_folder(name, help)``: an option naming a file
  (a key, a tokens file) or a folder (of keys) that must exist, given to the command as a
  ``Path``, as ``heirloom serve --curve-secret`` and ``heirloom gateway --tokens`` are.
- ``a_path(exists=, file_okay=, dir_okay=, writable=)``: the type of any other path option or
  argument: click.Path giving a ``Path``, with ``""`` (an unset variable in a script) a usage
  error, where ``Path("")`` would be the working directory.
- ``log_options``: ``--log-format`` and ``--log-level`` of a command that runs a daemon;
  ``configure_logs(level, fmt)`` sends heirloom's log lines to stderr that way.
- ``ADDRESS``: the type of a ZeroMQ endpoint option (``--connect``: tcp://, ipc:// or
  inproc://), as ``heirloom call --connect`` and ``heirloom gateway --connect`` take.
- ``set_option``: ``--set KEY.PATH=VALUE`` (repeatable) of a command that takes a profile,
  given as ``overrides`` for ``Kernel.resolve(profile, overrides)``, as every kernel command
  and ``heirloom gateway PROFILE`` take it.
- ``PROFILE``: the type of an argument or option naming a profile (a name or a ``.toml``
  path), refusing ``""`` with "PROFILE is empty: ..." (exit 2), as every kernel command's
  PROFILE and ``heirloom gateway PROFILE`` take it.
- ``echo(text)``: a line of a command's output to stdout, as the kernel's commands print theirs: a write that
  fails says ``error: cannot write the output to stdout: REASON`` (``stdout is closed`` under ``>&-``), exit 1,
  or exits 141 when a pipe's reader went away, where ``click.echo`` wrote nothing, exit 0, under ``>&-``.
- ``SECONDS``: the type of a duration option (a finite number of seconds, 0 < s <= a day),
  as ``heirloom call --timeout`` and ``heirloom gateway --timeout`` take.
"""

from heirloom.cli.common import echo
from heirloom.cli.logs import configure as configure_logs
from heirloom.cli.options import (
    ADDRESS,
    PROFILE,
    SECONDS,
    a_path,
    answered_hosts,
    bound_socket,
    check_listenable,
    existing_file,
    existing_folder,
    host_guard,
    host_refusal,
    listen_options,
    log_options,
    loopback,
    set_option,
)
from heirloom.wire.exporter import url_host

__all__ = [
    "ADDRESS",
    "PROFILE",
    "SECONDS",
    "a_path",
    "answered_hosts",
    "bound_socket",
    "check_listenable",
    "configure_logs",
    "echo",
    "existing_file",
    "existing_folder",
    "host_guard",
    "host_refusal",
    "listen_options",
    "log_options",
    "loopback",
    "set_option",
    "url_host",
]
