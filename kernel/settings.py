"""Kernel-owned profile sections (not components): ``[system]``.

Each section is an attrs class validated like a component table. Sections added by
later subsystems (``[server]``, ``[store]``) register here too, so the profile schema
stays in one place.
"""

from __future__ import annotations

import attrs


def _positive(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if value <= 0:
        raise ValueError(f"'{attribute.name}' must be > 0, got {value!r}")


@attrs.define
class SystemSettings:
    """``[system]``: lifecycle limits for the components of a profile."""

    #: Seconds a component may take in ``start`` before the system gives up on it.
    start_timeout: float = attrs.field(default=120.0, validator=_positive)
    #: Seconds a component may take in ``stop``.
    stop_timeout: float = attrs.field(default=30.0, validator=_positive)


def _endpoints(instance: object, attribute: attrs.Attribute, value: list[str]) -> None:
    for address in value:
        if not address.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(
                f"'{attribute.name}' entries must be tcp://, ipc:// or inproc:// addresses, got {address!r}"
            )


@attrs.define
class ServerSettings:
    """``[server]``: how ``heirloom serve`` listens and protects itself (CLI flags override)."""

    #: ZeroMQ endpoints the daemon binds (``tcp://HOST:PORT``, ``ipc:///path``).
    bind: list[str] = attrs.field(factory=lambda: ["tcp://127.0.0.1:5555"], validator=_endpoints)
    #: Worker processes behind a broker; 1 serves from the daemon process itself.
    workers: int = attrs.field(default=1, validator=_positive)
    #: Seconds in-flight work may take to finish after SIGTERM/SIGINT.
    grace: float = attrs.field(default=30.0, validator=_positive)
    #: Requests waiting per route; beyond it RESOURCE_EXHAUSTED is answered at once.
    max_queue: int = attrs.field(default=1024, validator=_positive)
    #: Threads running non-inline, non-batched handlers.
    handler_threads: int = attrs.field(default=4, validator=_positive)
    #: Largest message (all frames) the transport accepts; larger ones are dropped by ZeroMQ.
    max_message_bytes: int = attrs.field(default=64 << 20, validator=_positive)
    #: Seconds between worker heartbeats; a worker silent for 3 of them is declared dead.
    heartbeat: float = attrs.field(default=1.0, validator=_positive)
    #: Replies remembered per idempotency key, so a retried write is not applied twice.
    idempotency_cache: int = attrs.field(default=10_000, validator=_positive)


SECTIONS: dict[str, type] = {"system": SystemSettings, "server": ServerSettings}
