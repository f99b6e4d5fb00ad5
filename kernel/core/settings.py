"""Kernel-owned profile sections (not components): ``[system]``, ``[server]``, ``[store]``,
attrs classes validated like component tables, so the profile schema stays in one place."""

from __future__ import annotations

import re

import attrs

from heirloom.core.components import above, at_least, mebibytes, path_field

#: The longest duration setting, as ``--grace``'s: 1e10 s passed check, then overflowed a clock's arithmetic at start.
A_DAY_MAX = attrs.validators.le(86_400)


@attrs.define
class SystemSettings:
    """``[system]``: lifecycle limits for the components of a profile."""

    #: Seconds a component may take in ``start`` before the system gives up on it.
    start_timeout: float = attrs.field(default=120.0, validator=[above(0), A_DAY_MAX])
    #: Seconds a component may take in ``stop``.
    stop_timeout: float = attrs.field(default=30.0, validator=[above(0), A_DAY_MAX])


def endpoint_problem(address: str) -> str | None:
    """Why ``address`` is no ZeroMQ endpoint a daemon binds or a client connects to, or None."""
    if not address.startswith(("tcp://", "ipc://", "inproc://")):
        return f"{address!r} is not a tcp://, ipc:// or inproc:// address"
    port = address.rpartition(":")[2] if address.startswith("tcp://") else "0"
    return None if port == "*" or (port.isdigit() and int(port) <= 65535) else f"{address!r} needs a port 0-65535"


def _endpoints(instance: object, attribute: attrs.Attribute, value: list[str]) -> None:
    if problem := next(filter(None, map(endpoint_problem, value)), None):
        raise ValueError(f"'{attribute.name}': {problem}")


@attrs.define
class ServerSettings:
    """``[server]``: how ``heirloom serve`` listens and protects itself (CLI flags override)."""

    #: ZeroMQ endpoints the daemon binds (``tcp://HOST:PORT``, ``ipc:///path``).
    bind: list[str] = attrs.field(factory=lambda: ["tcp://127.0.0.1:5555"], validator=_endpoints)
    #: Worker processes behind a broker; 1 serves from the daemon process itself; 0 is a
    #: broker with no local worker, for workers on other hosts (``serve --worker-bind``).
    workers: int = attrs.field(default=1, validator=at_least(0))
    #: Seconds in-flight work may take to finish after SIGTERM/SIGINT.
    grace: float = attrs.field(default=30.0, validator=[above(0), A_DAY_MAX])
    #: Requests waiting per route; beyond it RESOURCE_EXHAUSTED is answered at once.
    max_queue: int = attrs.field(default=1024, validator=above(0))
    #: A batched request that finds the daemon idle (nothing else in flight or waiting) is computed on the I/O thread,
    #: sparing two thread hand-overs, when its route's last batch took at most this many ms; requests arriving
    #: meanwhile wait at most about that long. 0: always hand batched requests to the route's batcher thread.
    idle_inline_ms: float = attrs.field(default=5.0, validator=[at_least(0), attrs.validators.le(86_400_000)])
    #: Threads running non-inline, non-batched handlers.
    handler_threads: int = attrs.field(default=4, validator=above(0))
    #: Largest frame accepted (ZeroMQ's ``MAXMSGSIZE``, per frame; at most 1 TiB): a larger one disconnects its peer.
    max_message_bytes: int = attrs.field(default=64 << 20, validator=[above(0), attrs.validators.le(1 << 40)])
    #: MiB of large replies (64 KiB and up) held for one client that is not reading them;
    #: past it, that client's large replies are dropped (``_stats`` ``dropped_replies``).
    reply_backlog_mb: int = attrs.field(default=64, validator=mebibytes())
    #: MiB of large replies held for all clients together.
    reply_backlog_total_mb: int = attrs.field(default=256, validator=mebibytes())
    #: MiB of large requests (64 KiB and up) a broker holds for its workers until they answer.
    forward_backlog_mb: int = attrs.field(default=256, validator=mebibytes())
    #: Seconds between worker heartbeats; a worker silent for 3 of them is declared dead.
    heartbeat: float = attrs.field(default=1.0, validator=[above(0), A_DAY_MAX])
    #: Seconds between checks of the artifact store for a moved alias, and between re-reads of
    #: the Curve key folders (0: only on ``_reload``).
    reload_interval: float = attrs.field(default=2.0, validator=[at_least(0), A_DAY_MAX])
    #: Replies remembered for idempotency keys, so a retried write is not applied twice ...
    idempotency_cache: int = attrs.field(default=10_000, validator=above(0))
    #: ... within this many MiB of remembered replies (the oldest are forgotten first).
    idempotency_cache_mb: int = attrs.field(default=64, validator=mebibytes())
    #: Api routes (``recs.event``) that, under Curve, only ``--curve-admins`` keys may call.
    admin_routes: list[str] = attrs.field(factory=list)


#: A project, model or component name: it becomes a file or folder name (store refs,
#: feedback logs), so ASCII letters, digits, '_', '.', '-', not starting with '.', at most 100.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")
#: An alias (store/refs.py's rule, here so a profile's ``inherit`` is checked without a store): a letter first.
ALIAS_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,99}")
#: A ref as store/refs.py reads it: ``@latest`` is the newest; another case of it is a reserved alias, refused.
REF_PATTERN = re.compile(
    rf"{NAME_PATTERN.pattern}/{NAME_PATTERN.pattern}(@([0-9]+|latest|(?!(?i:latest)$){ALIAS_PATTERN.pattern}))?"
    r"|pretrained:[A-Za-z0-9_.-]+|served"
)
SELECTOR_PATTERN = re.compile(r"^([0-9]+|[A-Za-z][A-Za-z0-9_-]*)$")
#: Metadata of a kernel key that ``""`` unsets: the tree holds None there, shown ``not set`` (checker 307 F2).
UNSETS = "heirloom_empty_unsets"


def _optional_match(pattern: re.Pattern[str], expected: str) -> dict:
    """``attrs.field`` arguments: None by default; ``""`` unsets (TOML has no null); else ``pattern``."""

    def check(instance: object, attribute: attrs.Attribute, value: str | None) -> None:
        if value is not None and not pattern.fullmatch(value):  # match's $ let "production\n" through
            raise ValueError(f"'{attribute.name}' must be {expected}, got {value!r}")

    return {"default": None, "converter": lambda value: value or None, "validator": check, "metadata": {UNSETS: True}}


@attrs.define
class ComponentKeys:
    """Keys the kernel reads in every component table (the rest is the component's own)."""

    #: The component type, as a plugin registered it.
    use: str
    #: ``false`` drops the component (typically one a parent profile defined).
    enabled: bool = True
    #: Seconds ``start`` may take; overrides ``[system] start_timeout``.
    start_timeout: float | None = attrs.field(default=None, validator=attrs.validators.optional([above(0), A_DAY_MAX]))


@attrs.define
class ModelKeys(ComponentKeys):
    """Keys the kernel reads in a model table: where its weights come from."""

    #: Warm-start ``heirloom train`` from this artifact: ``project/model@version-or-alias``, ``pretrained:NAME``, or
    #: ``served``: this model's own served version when there is one (continuous training; the first train fits from
    #: scratch). ``""`` (TOML has no null) or ``--set models.NAME.inherit=null`` switches off an ``inherit`` that an
    #: extended profile set: the model trains from scratch.
    inherit: str | None = attrs.field(
        **_optional_match(
            REF_PATTERN,
            "project/model, project/model@N or @ALIAS (a letter, then up to 99 letters, digits, '-' or '_'), "
            'pretrained:NAME, served, ""',
        )
    )
    #: Which stored version ``serve``/``eval`` use: a version number or an alias (default, or ``""``: the latest).
    serve: str | None = attrs.field(**_optional_match(SELECTOR_PATTERN, 'a version or alias, or "" for the latest'))


@attrs.define
class StoreSettings:
    """``[store]``: where ``heirloom train`` keeps artifacts (``HEIRLOOM_STORE`` overrides it)."""

    #: The store folder (a relative one: from the file that set it, as every path); default ``HEIRLOOM_HOME/store``.
    path: str | None = path_field(must_exist=False, default=None)


SECTIONS: dict[str, type] = {"system": SystemSettings, "server": ServerSettings, "store": StoreSettings}
