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


SECTIONS: dict[str, type] = {"system": SystemSettings}
